"""Several real `pagerd` nodes on one PostgreSQL database, for the end-to-end and torture tests
of a cluster (issue 17 §3).

Each node is a process of its own (`tests.processes.Pagerd`) with its own folder, state
directory and socket, and reaches the database through its own `TcpProxy`, so that a test can
cut one node from PostgreSQL (`drop`, `stall`) while the others and the test itself still reach
it directly. Leases are short (`lease_ttl`, 2 s by default) so that failovers take seconds.
Every page goes to one webhook receiver on loopback (`Receiver`), which records it with its
idempotency key, the node that sent it (each node's channel sends an `X-Node` header) and when
it arrived: the one place a test counts pages.

Nothing here waits for the machine's speed: waits are for conditions (`wait_for`), bounded.
"""

from __future__ import annotations

import contextlib
import json
import signal
import socket
import time
from collections import Counter
from collections.abc import Callable, Collection, Iterator
from pathlib import Path
from typing import Any

import attrs
import psycopg
from psycopg import conninfo

from pager.shards import shard_of
from tests.processes import Pagerd, pager, wait_for
from tests.servers import HttpServer
from tests.tcpproxy import TcpProxy

LEASE_TTL = 2.0

# Two levels; the first pages at once, the second after `ack_timeout` unacknowledged. Each
# level's target is its own path of the receiver.
POLICY = """
[policies.fast]
{repeat}
[[policies.fast.levels]]
targets = ["webhook:{url}/first"]
ack_timeout = "{ack_timeout}"
[[policies.fast.levels]]
targets = ["webhook:{url}/second"]
ack_timeout = "{ack_timeout}"
"""

NODE = """
[daemon]
socket = "pager.sock"
state_dir = "state"

[storage]
backend = "postgresql"
dsn = "{dsn}"
pool_size = 4
connect_timeout = "2s"
statement_timeout = "3s"

[cluster]
node_name = "{name}"
lease_ttl = "{lease_ttl_ms}ms"

[delivery]
workers = 0

[channels.webhook]
transport = "webhook"
timeout = "2s"
concurrency = 16
rate_limit = "1000/s"
burst = 1000
retry_initial = "100ms"
retry_max = "500ms"
headers = {{ "X-Node" = "{name}" }}
"""


@attrs.frozen
class Page:
    """One request the receiver took: a page, as its recipient's provider sees it."""

    id: str
    """The notification's id: service#incident/round/level/target."""
    key: str
    """Its idempotency key (the id and the origin of the run that decided it)."""
    node: str
    """The node that sent it."""
    at: float
    """When it arrived (wall clock)."""
    path: str


class Receiver:
    """The webhook receiver every node pages: an `HttpServer` on loopback, read as pages."""

    def __init__(self, server: HttpServer) -> None:
        self.server = server
        self.url = server.url

    def pages(self) -> list[Page]:
        with self.server.lock:
            requests = list(self.server.requests)
        return [
            Page(
                r.json()["id"],
                r.headers.get("idempotency-key", ""),
                r.headers.get("x-node", ""),
                r.received_at,
                r.path,
            )
            for r in requests
        ]

    def of(self, service: str) -> list[Page]:
        """The pages of `service`'s incidents, in arrival order."""
        return [p for p in self.pages() if p.id.startswith(f"{service}#")]

    def counts(self) -> Counter[str]:
        """How many times each notification arrived."""
        return Counter(p.id for p in self.pages())

    def wait(self, predicate: Callable[[list[Page]], bool], within: float, what: str) -> None:
        wait_for(lambda: predicate(self.pages()), within, what)


def ask(sock: Path, request: dict[str, Any], timeout: float = 15.0) -> dict[str, Any]:
    """One request on `sock`, its reply (the protocol's JSON line)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
        conn.settimeout(timeout)
        conn.connect(str(sock))
        conn.sendall(json.dumps(request).encode() + b"\n")
        buffer = b""
        while not buffer.endswith(b"\n"):
            data = conn.recv(65536)
            if not data:
                raise ConnectionError(f"{sock}: closed without a reply to {request}")
            buffer += data
    reply: dict[str, Any] = json.loads(buffer)
    return reply


class Node:
    """One pagerd node: its folder, its proxy to PostgreSQL, its process."""

    def __init__(self, name: str, folder: Path, proxy: TcpProxy, config: str) -> None:
        self.name = name
        self.folder = folder
        self.proxy = proxy
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "pager.toml").write_text(config)
        self.socket = folder / "pager.sock"
        self.daemon = Pagerd(folder / "pager.toml", self.socket, folder / "pagerd.log")
        self.paused = False
        self.ready = False
        """Started and answering (set by `start`), not killed or stopped since."""

    @property
    def running(self) -> bool:
        proc = self.daemon.proc
        return proc is not None and proc.poll() is None

    def start(self) -> None:
        self.daemon.start(ready_within=30.0)
        self.paused = False
        self.ready = True

    def kill(self) -> None:
        """`kill -9`."""
        if self.paused:
            self.resume()  # SIGKILL works on a stopped process, but a clean record is simpler
        self.ready = False
        self.daemon.kill()

    def pause(self) -> None:
        """SIGSTOP: the process sleeps, its connections and leases untouched, its clock not."""
        assert self.daemon.proc is not None
        self.daemon.proc.send_signal(signal.SIGSTOP)
        self.paused = True

    def resume(self) -> None:
        assert self.daemon.proc is not None
        self.daemon.proc.send_signal(signal.SIGCONT)
        self.paused = False

    def terminate(self) -> int:
        """A clean stop (SIGTERM): the node releases its leases."""
        self.ready = False
        return self.daemon.terminate(within=30.0)

    def ask(self, request: dict[str, Any], timeout: float = 15.0) -> dict[str, Any]:
        return ask(self.socket, request, timeout)

    def pager(self, *args: str) -> Any:
        return pager(self.socket, *args)

    def log(self) -> str:
        return self.daemon.stderr()


class Cluster:
    """`nodes` pagerd nodes (not started) on the database `dsn`, paging `receiver`."""

    def __init__(
        self,
        folder: Path,
        dsn: str,
        receiver: Receiver,
        services: list[str],
        nodes: int = 3,
        lease_ttl: float = LEASE_TTL,
        ack_timeout: str = "2s",
        repeat: int = 0,
        policy: str = POLICY,
        extra: str = "",
    ) -> None:
        self.folder = folder
        self.dsn = dsn
        self.receiver = receiver
        self.services = services
        self.lease_ttl = lease_ttl
        self.ack_timeout = ack_timeout
        self.repeat = repeat
        self.policy = policy
        self.extra = extra
        params = conninfo.conninfo_to_dict(dsn)
        self.upstream = (str(params.get("host", "127.0.0.1")), int(str(params.get("port", 5432))))
        self.nodes: list[Node] = []
        self.used: set[str] = set()
        for k in range(nodes):
            self.add(f"node-{k + 1}")

    def add(self, name: str) -> Node:
        """A new node (not started)."""
        proxy = TcpProxy(self.upstream)
        dsn = conninfo.make_conninfo(
            self.dsn, host="127.0.0.1", port=str(proxy.port), connect_timeout="2"
        )
        policy = self.policy.format(
            url=self.receiver.url, ack_timeout=self.ack_timeout, repeat=f"repeat = {self.repeat}"
        )
        config = NODE.format(dsn=dsn, name=name, lease_ttl_ms=round(self.lease_ttl * 1000))
        config += policy + self.extra
        config += "".join(f'[services.{s}]\npolicy = "fast"\n' for s in self.services)
        node = Node(name, self.folder / name, proxy, config)
        self.nodes.append(node)
        return node

    def node(self, name: str) -> Node:
        return next(n for n in self.nodes if n.name == name)

    def start(self) -> None:
        """Start every node, one after the other: at once, on two cores, their starts (and
        `pager ping`'s) slow each other past the readiness checks' patience."""
        for node in self.nodes:
            node.start()

    def close(self) -> None:
        for node in self.nodes:
            if node.paused:
                node.resume()
            node.daemon.stop()
            node.proxy.close()

    # What the database says, read directly (not through any node's proxy).

    def query(self, sql: str, *params: Any) -> list[tuple[Any, ...]]:
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            return conn.execute(sql, params).fetchall()

    def owner(self, service: str) -> str | None:
        """The node whose lease on `service`'s shard is live now (by the database's clock)."""
        rows = self.query(
            "SELECT owner FROM leases WHERE shard = %s AND expires_at > now()", shard_of(service)
        )
        return rows[0][0] if rows else None

    def epoch(self, service: str) -> int:
        return int(self.query("SELECT epoch FROM leases WHERE shard = %s", shard_of(service))[0][0])

    def held(self) -> Counter[str]:
        """How many shards each node holds now."""
        return Counter(
            row[0]
            for row in self.query("SELECT owner FROM leases WHERE expires_at > now()")
            if row[0] is not None
        )

    def wait_owned(self, within: float = 15.0, by: set[str] | None = None) -> None:
        """Until every shard is held, by the nodes `by` only if given (all running ones if
        not)."""
        names = by if by is not None else {n.name for n in self.nodes if n.running}

        def settled() -> bool:
            rows = self.query("SELECT owner FROM leases WHERE expires_at > now()")
            return len(rows) == 256 and {r[0] for r in rows} == names

        wait_for(settled, within, f"every shard held by {sorted(names)}")

    def service_owned_by(self, node: str, besides: Collection[str] = ()) -> str:
        """A configured service (not one of `besides`) whose shard `node` holds now."""
        for service in self.services:
            if service not in besides and self.owner(service) == node:
                return service
        raise AssertionError(f"no service of {node} among {self.services}")

    def fresh(self, node: str) -> str:
        """A service `node` holds now that no earlier call returned: a test's own, in a
        cluster that several tests share."""
        service = self.service_owned_by(node, besides=self.used)
        self.used.add(service)
        return service

    def settle(self, within: float = 30.0, escalations: bool = False) -> None:
        """Until nothing is due: no open incident waits on a deadline already past (with
        `escalations`, on any deadline: every escalation ran its course), no notification waits
        to be sent, the inbox is empty. Fails naming what is still pending."""
        deadline = time.monotonic() + within
        while pending := self.pending(escalations):
            if time.monotonic() > deadline:
                more = f" (and {len(pending) - 10} more)" if len(pending) > 10 else ""
                raise AssertionError(f"still pending after {within}s: {pending[:10]}{more}")
            time.sleep(0.1)

    def pending(self, escalations: bool = False) -> list[str]:
        """What is still due: incidents waiting on a deadline (past, unless `escalations`),
        notifications waiting to be sent, events in the inbox."""
        due = "" if escalations else " AND deadline <= extract(epoch FROM clock_timestamp())"
        incidents = self.query(
            "SELECT service || '#' || number, deadline - extract(epoch FROM clock_timestamp())"
            f" FROM incidents WHERE closed_at IS NULL AND deadline IS NOT NULL{due}"
        )
        notifications = self.query(
            "SELECT id, state, attempts FROM notifications WHERE state IN ('pending', 'retrying')"
        )
        inbox = self.query("SELECT id, service, node FROM inbox")
        return [
            *(f"incident {i} due in {d:.1f}s" for i, d in incidents),
            *(f"notification {n} {s} after {a} attempts" for n, s, a in notifications),
            *(f"inbox event {i} of {s} from {n}" for i, s, n in inbox),
        ]

    def logs(self) -> str:
        return "\n".join(f"===== {n.name}\n{n.log()[-20000:]}" for n in self.nodes)


@contextlib.contextmanager
def running(
    folder: Path, dsn: str, services: list[str], start: bool = True, **kwargs: Any
) -> Iterator[Cluster]:
    """A cluster of real nodes and its receiver; stopped, proxies closed, afterwards. Its nodes'
    logs are printed when the body fails, for the one who reads the failure."""
    with HttpServer() as server:
        cluster = Cluster(folder, dsn, Receiver(server), services, **kwargs)
        try:
            if start:
                cluster.start()
            yield cluster
        except BaseException:
            print(cluster.logs())
            raise
        finally:
            cluster.close()
