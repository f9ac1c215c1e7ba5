"""`pager`: the command-line client of pagerd.

It imports neither trio nor the daemon, so that it starts fast from scripts and monitoring hooks.
Exit codes: 0 ok, 1 the daemon refused the request, 2 usage, 69 the daemon cannot be reached,
77 the daemon does not let this user in.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
from collections.abc import Sequence
from typing import Any, Final

from pager.protocol import request_line

DEFAULT_SOCKET: Final = "/run/pager/pager.sock"
EXIT_OK: Final = 0
EXIT_REFUSED: Final = 1
EXIT_USAGE: Final = 2  # bad arguments: argparse exits with it itself
EXIT_UNAVAILABLE: Final = 69
EXIT_FORBIDDEN: Final = 77


class Unreachable(Exception):
    pass


def call(path: str, line: bytes, timeout: float) -> dict[str, Any]:
    """Send one request line and return the decoded reply; `Unreachable` if that fails."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            sock.connect(path)
            sock.sendall(line)
            reply = _read_line(sock)
    except TimeoutError:
        raise Unreachable(f"no reply from {path} within {timeout:g}s") from None
    except OSError as exc:
        raise Unreachable(f"cannot reach pagerd at {path}: {exc.strerror or exc}") from None
    try:
        data = json.loads(reply)
    except ValueError:
        raise Unreachable(f"pagerd at {path} sent a reply that is not JSON") from None
    if not isinstance(data, dict):
        raise Unreachable(f"pagerd at {path} sent a reply that is not a JSON object")
    return data


def _read_line(sock: socket.socket) -> bytes:
    chunks: list[bytes] = []
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            raise Unreachable("pagerd closed the connection before replying")
        end = chunk.find(b"\n")
        if end >= 0:
            chunks.append(chunk[:end])
            return b"".join(chunks)
        chunks.append(chunk)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pager", description="Send events to pagerd.")
    common = argparse.ArgumentParser(add_help=False)
    # Accepted before or after the command: `pager --json status` and `pager status --json`.
    common.add_argument(
        "--json", action="store_true", default=argparse.SUPPRESS, help="print the reply as JSON"
    )
    parser.add_argument(
        "--socket",
        help=f"pagerd's socket (default: $PAGER_SOCKET, else {DEFAULT_SOCKET})",
    )
    parser.add_argument("--json", action="store_true", help="print the reply as JSON")
    parser.add_argument(
        "--timeout", type=float, default=30.0, help="seconds to wait for a reply (default 30)"
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    alert = commands.add_parser("alert", parents=[common], help="report a service unhealthy")
    alert.add_argument("service")
    alert.add_argument("message", nargs="?", help="what is wrong")
    ack = commands.add_parser("ack", parents=[common], help="acknowledge the open incident")
    ack.add_argument("service")
    ack.add_argument("--by", help="who acknowledges")
    healthy = commands.add_parser("healthy", parents=[common], help="report a service recovered")
    healthy.add_argument("service")
    status = commands.add_parser("status", parents=[common], help="show services and incidents")
    status.add_argument("service", nargs="?")
    commands.add_parser("ping", parents=[common], help="check that pagerd answers")
    history = commands.add_parser(
        "history", parents=[common], help="the timeline of an incident (the latest by default)"
    )
    history.add_argument("target", metavar="SERVICE|INCIDENT", help="a service, or an id: api#3")
    commands.add_parser("metrics", parents=[common], help="print pagerd's metrics")
    commands.add_parser(
        "reload", parents=[common], help="reload pagerd's config file (as SIGHUP does)"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    path = args.socket or os.environ.get("PAGER_SOCKET") or DEFAULT_SOCKET
    fields = {
        "service": getattr(args, "service", None),
        "message": getattr(args, "message", None),
        "by": getattr(args, "by", None),
    }
    if args.command == "history":
        key = "incident" if "#" in args.target else "service"
        fields[key] = args.target
    try:
        reply = call(path, request_line(args.command, **fields), args.timeout)
    except Unreachable as exc:
        print(f"pager: {exc}", file=sys.stderr)
        return EXIT_UNAVAILABLE
    if not reply.get("ok"):
        error = reply.get("error") or {}
        code = error.get("code", "error")
        print(f"pager: {code}: {error.get('message', '')}", file=sys.stderr)
        for line in error.get("errors") or []:  # each reason a reload was rejected
            print(f"  {_printable(str(line))}", file=sys.stderr)
        return EXIT_FORBIDDEN if code == "forbidden" else EXIT_REFUSED
    reply.pop("ok", None)
    if args.json:
        print(json.dumps(reply, indent=2))
    else:
        print(render(args.command, reply))
    return EXIT_OK


def render(command: str, reply: dict[str, Any]) -> str:
    """Human-readable output of a successful reply."""
    if command == "ping":
        return f"pagerd {reply.get('version', '?')} is up"
    if command == "reload":
        config = reply.get("config") or {}
        return f"pagerd reloaded its config (sha256 {config.get('sha256', '?')})"
    if command == "metrics":
        return str(reply.get("text", "")).rstrip("\n")
    if command == "history":
        return _history(reply)
    if "services" in reply:
        return _table(reply["services"])
    if command == "status":
        return _table([reply]) + _notifications(reply)
    return _summary(reply)


def _history(reply: dict[str, Any]) -> str:
    closed = f", closed {reply['closed_at']}" if reply.get("closed_at") else ", open"
    lines = [f"{reply['incident']}: {reply.get('message') or '(no message)'}{closed}"]
    for entry in reply.get("timeline", []):
        lines.append(f"  {entry['at']}  {_entry(entry)}")
    return "\n".join(lines)


def _entry(entry: dict[str, Any]) -> str:
    event = entry["event"]
    peer = entry.get("peer")
    who = (
        f" from {peer.get('user') or 'uid ' + str(peer['uid'])} (pid {peer['pid']})" if peer else ""
    )
    if event == "alert":
        return f"alert{who}: {entry.get('detail') or '(no message)'}"
    if event == "ack":
        by = f" by {entry['by']}" if entry.get("by") else ""
        return f"acknowledged{by}{who}"
    if event == "healthy":
        return f"healthy{who}"
    if event == "timeout":
        return f"acknowledgement timeout: {entry.get('detail', '')}"
    if event == "notification":
        return f"notify {entry['target']} (level {entry['level']}, round {entry['round']})"
    if event == "delivery":
        outcome = entry.get("outcome")
        extra = entry.get("error") or entry.get("provider_id") or ""
        return f"  {outcome} {entry['target']}" + (f": {extra}" if extra else "")
    if event == "closed":
        return "closed"
    return str(event)


def _summary(status: dict[str, Any]) -> str:
    incident = status.get("incident")
    if incident is None:
        return f"{status['service']}: healthy"
    ack = " acknowledged" if incident["acknowledged"] else ""
    return (
        f"{status['service']}: unhealthy, incident {incident['id']}{ack}, "
        f"level {incident['level']} notified, {incident['alerts']} alert(s)"
    )


_COLUMNS: Final = (
    "SERVICE",
    "STATE",
    "INCIDENT",
    "LEVEL",
    "ACK",
    "ALERTS",
    "OPENED",
    "NEXT",
    "DELIVERY",
)


def _table(statuses: list[dict[str, Any]]) -> str:
    rows = [_COLUMNS]
    for status in statuses:
        incident = status.get("incident")
        if incident is None:
            rows.append((status["service"], status["state"], *["-"] * (len(_COLUMNS) - 2)))
            continue
        nxt = incident["next_escalation_at"] or ("exhausted" if incident["exhausted"] else "-")
        rows.append(
            (
                status["service"],
                status["state"],
                incident["id"],
                str(incident["level"]),
                (incident["acknowledged_by"] or "yes") if incident["acknowledged"] else "no",
                str(incident["alerts"]),
                incident["opened_at"],
                nxt,
                f"{failed} FAILED" if (failed := incident.get("failed_deliveries")) else "ok",
            )
        )
    return _columns(rows)


def _columns(rows: Sequence[tuple[str, ...]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in rows
    )


def _notifications(status: dict[str, Any]) -> str:
    notes = (status.get("incident") or {}).get("notifications")
    if not notes:
        return ""
    rows = [("  NOTIFIED", "ROUND", "LEVEL", "STATE", "ATTEMPTS", "LAST ERROR")]
    for n in notes:
        rows.append(
            (
                f"  {n['target']}",
                str(n["round"]),
                str(n["level"]),
                n["state"],
                str(n["attempts"]),
                n["last_error"] or "",
            )
        )
    return "\n\n" + _columns(rows)


if __name__ == "__main__":
    sys.exit(main())


def _printable(text: str) -> str:
    """`text` with control characters escaped: a line from the daemon never drives the terminal."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
