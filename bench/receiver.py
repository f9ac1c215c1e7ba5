"""The peer section's webhook receiver: one bare Trio HTTP/1.1 server that both pagerd's webhook
channel and Alertmanager's `webhook_configs` post to, answering 200 at once and keeping, for each
POST, when it arrived and which services it paged.

    .venv/bin/python bench/receiver.py      # prints its port, then serves until killed

- `POST /pagerd`: a pagerd webhook page (its body's `service`).
- `POST /am`: an Alertmanager webhook notification (the `service` label of each firing alert).
- `POST` anything else: answered, not kept (a sink, to measure the load generator itself).
- `GET /count`: how many services were paged so far; `GET /repeats`: how many of those POSTs
  carried an `Idempotency-Key` already received (pagerd's retry of a page whose outcome it had
  not recorded: a receiver that honours the key pages nobody for it); `GET /records`: every
  `[time, path, [service, ...]]` kept; `GET /reset`: forget them (not the keys seen).

No keep-alive limits, no timeouts, no checks: it serves a benchmark on loopback, nothing else.
"""

from __future__ import annotations

import contextlib
import json
import sys
import time
from typing import Any

import trio

OK = b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n"


class Receiver:
    def __init__(self) -> None:
        self.records: list[tuple[float, str, list[str]]] = []
        self.count = 0
        self.keys: set[bytes] = set()
        self.repeats = 0

    def keep(self, path: str, body: bytes, key: bytes | None) -> None:
        at = time.time()
        if key is not None:
            self.repeats += key in self.keys
            self.keys.add(key)
        message: Any = json.loads(body)
        if path == "/pagerd":
            services = [message["service"]]
        else:
            services = [
                alert["labels"].get("service", "")
                for alert in message["alerts"]
                if alert["status"] == "firing"
            ]
        self.records.append((at, path, services))
        self.count += len(services)

    def answer(self, path: str) -> bytes:
        if path == "/count":
            body = str(self.count).encode()
        elif path == "/repeats":
            body = str(self.repeats).encode()
        elif path == "/records":
            body = json.dumps(self.records).encode()
        elif path == "/reset":
            self.records, self.count, self.repeats = [], 0, 0
            body = b"ok"
        else:
            return b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n"
        return b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n%s" % (len(body), body)

    async def handle(self, stream: trio.SocketStream) -> None:
        buffer = bytearray()
        async with stream:
            while True:
                while (end := buffer.find(b"\r\n\r\n")) < 0:
                    data = await stream.receive_some(65536)
                    if not data:
                        return
                    buffer += data
                head = bytes(buffer[:end])
                del buffer[: end + 4]
                lines = head.split(b"\r\n")
                method, path = lines[0].split(b" ")[:2]
                length, key = 0, None
                for line in lines[1:]:
                    name, _, value = line.partition(b":")
                    name = name.strip().lower()
                    if name == b"content-length":
                        length = int(value)
                    elif name == b"idempotency-key":
                        key = value.strip()
                while len(buffer) < length:
                    data = await stream.receive_some(65536)
                    if not data:
                        return
                    buffer += data
                body = bytes(buffer[:length])
                del buffer[:length]
                where = path.decode()
                if method == b"POST":
                    if where in ("/pagerd", "/am"):
                        self.keep(where, body, key)
                    await stream.send_all(OK)
                else:
                    await stream.send_all(self.answer(where))


async def main() -> None:
    receiver = Receiver()
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    print(listeners[0].socket.getsockname()[1], flush=True)

    async def guarded(stream: trio.SocketStream) -> None:
        # The sender may go away mid-request.
        with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
            await receiver.handle(stream)

    await trio.serve_listeners(guarded, listeners)


if __name__ == "__main__":
    try:
        trio.run(main)
    except KeyboardInterrupt:
        sys.exit(0)
