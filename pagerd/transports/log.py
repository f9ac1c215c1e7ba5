"""The `log` transport: each notification appended to a JSON-lines file, fsync'd.

It is the transport of the quick start and of dry runs, and what tests read to see who was paged.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

from pager.domain import Notify
from pager.messages import short
from pager.timefmt import isoformat
from pagerd.offload import Offload


def record(n: Notify, at: float) -> dict[str, object]:
    return {
        "time": isoformat(at),
        "id": n.id,
        "service": n.service,
        "incident": n.incident_id,
        "round": n.round,
        "level": n.level,
        "channel": n.target.channel,
        "target": n.target.address,
        "message": short(n),
        "alert": n.message,
        "opened_at": isoformat(n.opened_at),
    }


class LogTransport:
    def __init__(self, path: Path, offload: Offload) -> None:
        self.path = path
        self._offload = offload

    async def deliver(self, notifications: Sequence[Notify], at: float) -> None:
        data = b"".join(
            json.dumps(record(n, at), ensure_ascii=False).encode() + b"\n" for n in notifications
        )
        await self._offload(lambda: self._append(data))

    def _append(self, data: bytes) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
        start = os.fstat(fd).st_size
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        except OSError:
            # Disk full half-way: cut back, so the next attempt does not start mid-line.
            os.ftruncate(fd, start)
            raise
        finally:
            os.close(fd)
