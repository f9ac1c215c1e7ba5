"""`pager`: the command-line client of pagerd.

It imports neither trio nor the daemon, so that it starts fast from scripts and monitoring hooks.
Exit codes: 0 ok, 1 the daemon refused the request, 2 usage, 69 the daemon cannot be reached,
75 the daemon cannot serve it now (`busy`, `unavailable`: try again), 77 the daemon does not let
this user in, 130 interrupted (Ctrl-C) before the reply.

Whatever the daemon sends back may hold what any client sent (an alert's message, who acked):
the readable output escapes every character that is not printable, so none of it can reach the
operator's terminal as a control sequence. `--json` prints the exact JSON, which escapes them.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import math
import os
import re
import shutil
import socket
import sys
import time
import unicodedata
from collections.abc import Callable, Sequence
from typing import Any, Final

from pager import __version__, oncall_cli
from pager.protocol import MAX_BY, MAX_ROUNDS, MAX_TEXT, request_line
from pager.silences import MAX_REASON, long_silence
from pager.text import clip, controls, from_argv, printable
from pager.timefmt import duration, isoformat, parse_duration, read_time

DEFAULT_SOCKET: Final = "/run/pager/pager.sock"
DEFAULT_TIMEOUT: Final = 30.0
"""Seconds `pager` waits for a reply unless `--timeout` says otherwise."""
EXIT_OK: Final = 0
EXIT_REFUSED: Final = 1
EXIT_USAGE: Final = 2  # bad arguments: argparse exits with it itself
EXIT_UNAVAILABLE: Final = 69
EXIT_TEMPFAIL: Final = 75  # EX_TEMPFAIL: the same request may succeed if sent again later
EXIT_FORBIDDEN: Final = 77
EXIT_INTERRUPTED: Final = 130  # 128 + SIGINT, as a shell reports a command Ctrl-C stopped

_TEMPORARY: Final = frozenset({"busy", "unavailable"})
MAX_TIMEOUT: Final = 86400.0
"""`--timeout`'s bound, a day: far above any reply's wait, and far below what a socket's timeout
can hold (9.3e9 seconds overflowed it, and `pager` ended in a traceback)."""


CONNECT_RETRY: Final = 0.05


class Unreachable(Exception):
    pass


class Busy(Exception):
    """pagerd listens but did not take the connection in time: try again (exit 75)."""


def call(path: str, line: bytes, timeout: float) -> dict[str, Any]:
    """Send one request line and return the decoded reply; `Unreachable` if that fails, `Busy`
    if pagerd's queue of connections stayed full."""
    try:
        with _connect(path, timeout) as sock:
            # pagerd replies `busy` and closes without reading the request, so the send may
            # fail after the reply has arrived: read it (or fail on reading, below).
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
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


def _connect(path: str, timeout: float) -> socket.socket:
    """A socket connected to `path`. With a timeout, a socket is non-blocking underneath, so a
    connect to a listener whose queue of connections is full fails at once (EAGAIN), and that
    made a storm's `pager alert` exit 69, "cannot reach": pagerd is there, busy. Tried again
    until `timeout`, then `Busy`."""
    deadline = time.monotonic() + timeout
    while True:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(timeout)
            sock.connect(path)
        except BlockingIOError:
            sock.close()
            left = deadline - time.monotonic()
            if left <= 0:
                raise Busy(
                    f"pagerd at {path} did not take the connection within {timeout:g}s "
                    "(its queue of connections is full); try again"
                ) from None
            time.sleep(min(CONNECT_RETRY, left))
        except BaseException:
            sock.close()
            raise
        else:
            return sock


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


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (0 < value <= MAX_TIMEOUT):
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a number of seconds above 0 and at most {MAX_TIMEOUT:g} (a day)"
        )
    return value


def _duration(text: str) -> float:
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _time(text: str) -> float:
    """A time the reader types: ISO 8601, its zone given or else the reader's own; `now`, `+2h`
    (`pager.timefmt.read_time`, as `pager override` and `pager oncall` read theirs)."""
    try:
        return read_time(text, time.time())
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _rounds(text: str) -> int:
    if re.fullmatch(r"[0-9]{1,9}", text) is None or not 1 <= int(text) <= MAX_ROUNDS:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a number of rounds from 1 to {MAX_ROUNDS}"
        )
    return int(text)


class _Parser(argparse.ArgumentParser):
    """A command's parser that may check its arguments together once they are parsed (argparse
    checks each alone): a usage error, exit 2, like any other."""

    check: Callable[[argparse.Namespace], str | None] | None = None
    """What is wrong with the arguments taken together, if anything."""

    def parse_known_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> tuple[argparse.Namespace, list[str]]:
        parsed, extras = super().parse_known_args(args, namespace)
        if self.check is not None and (wrong := self.check(parsed)) is not None:
            self.error(wrong)
        return parsed, extras


def _silence_usage(args: argparse.Namespace) -> str | None:
    """What is wrong with `pager silence`'s words and options, taken together."""
    words: list[str] = args.what
    starts = args.for_ is not None or args.until is not None
    if not starts and words[0] == "list":
        if len(words) > 2 or args.reason is not None or args.from_ is not None or args.by:
            return "silence list takes at most a SERVICE, and no option but --json"
        return None
    if not starts and words[0] == "end":
        if len(words) != 2 or re.fullmatch(r"[0-9]{1,18}", words[1]) is None:
            return "silence end takes one ID, the number pager silence list shows"
        if args.reason is not None or args.from_ is not None:
            return "silence end takes no --reason or --from"
        return None
    if len(words) != 1:
        return "silence takes one SERVICE (or: silence list, silence end ID)"
    if not starts:
        return f"silence {words[0]} needs --for DURATION or --until TIME, and --reason"
    if args.for_ is not None and args.until is not None:
        return "silence takes --for or --until, not both"
    if args.reason is None or not args.reason.strip():
        return "silence needs --reason: whoever wonders why nobody was paged reads it"
    return None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pager", description="Send events to pagerd.")
    parser.add_argument("--version", action="version", version=f"pager {__version__}")
    common = _Parser(add_help=False)
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
        "--timeout",
        type=_seconds,
        default=DEFAULT_TIMEOUT,
        help=f"seconds to wait for a reply (default {DEFAULT_TIMEOUT:g})",
    )
    commands = parser.add_subparsers(
        dest="command", required=True, metavar="COMMAND", parser_class=_Parser
    )

    alert = commands.add_parser("alert", parents=[common], help="report a service unhealthy")
    alert.add_argument("service")
    alert.add_argument("message", nargs="?", help="what is wrong")
    ack = commands.add_parser("ack", parents=[common], help="acknowledge the open incident")
    ack.add_argument("service")
    ack.add_argument("--by", help="who acknowledges")
    healthy = commands.add_parser("healthy", parents=[common], help="report a service recovered")
    healthy.add_argument("service")
    heartbeat = commands.add_parser(
        "heartbeat", parents=[common], help="check in: the service is alive (services.X.heartbeat)"
    )
    heartbeat.add_argument("service")
    status = commands.add_parser("status", parents=[common], help="show services and incidents")
    status.add_argument("service", nargs="?")
    status.add_argument(
        "--unhealthy", action="store_true", help="list only the services that are unhealthy"
    )
    commands.add_parser("ping", parents=[common], help="check that pagerd answers")
    history = commands.add_parser(
        "history", parents=[common], help="the timeline of an incident (the latest by default)"
    )
    history.add_argument("target", metavar="SERVICE|INCIDENT", help="a service, or an id: api#3")
    commands.add_parser("metrics", parents=[common], help="print pagerd's metrics")
    commands.add_parser(
        "reload", parents=[common], help="reload pagerd's config file (as SIGHUP does)"
    )
    oncall_cli.add_parsers(commands, common)
    silence = commands.add_parser(
        "silence",
        parents=[common],
        help="page nobody for a service for a while; silence list; silence end ID",
        usage=(
            "pager silence SERVICE (--for DURATION | --until TIME) --reason TEXT [--from TIME]"
            " [--by NAME]\n       pager silence list [SERVICE]\n"
            "       pager silence end ID [--by NAME]"
        ),
    )
    silence.add_argument("what", nargs="+", metavar="SERVICE | list [SERVICE] | end ID")
    silence.add_argument(
        "--for", dest="for_", type=_duration, metavar="DURATION", help="how long: 30m, 2h, 1d12h"
    )
    silence.add_argument(
        "--until",
        type=_time,
        metavar="TIME",
        help="until when: 2027-01-26T06:00Z (no zone: local time)",
    )
    silence.add_argument(
        "--from", dest="from_", type=_time, metavar="TIME", help="from when (default: now)"
    )
    silence.add_argument("--reason", help="why: shown with the silence, kept in history")
    silence.add_argument("--by", help="who silences (default: your user name)")
    assert isinstance(silence, _Parser)
    silence.check = _silence_usage
    simulate = commands.add_parser(
        "simulate",
        parents=[common],
        help="who would be paged when, for an incident opened now or at --at",
    )
    simulate.add_argument("service")
    simulate.add_argument(
        "--at", type=_time, metavar="TIME", help="when it opens (default: now; no zone: local time)"
    )
    simulate.add_argument(
        "--ack-after",
        type=_duration,
        metavar="DURATION",
        help="somebody acknowledges this long after it opens",
    )
    simulate.add_argument(
        "--rounds", type=_rounds, metavar="N", help="show at most N rounds of the policy"
    )
    return parser


def _request(args: argparse.Namespace) -> tuple[str, dict[str, str | int | None]]:
    """The op and the fields of the request `args` make."""
    command: str = args.command
    if command == "silence":
        words: list[str] = [from_argv(word) for word in args.what]
        by = _text(args, "by", MAX_BY)
        if args.for_ is None and args.until is None:
            if words[0] == "list":
                return "silences", {"service": words[1] if len(words) > 1 else None}
            return "silence_end", {"id": int(words[1]), "by": by}
        return "silence", {
            "service": words[0],
            "reason": _text(args, "reason", MAX_REASON),
            "for": None if args.for_ is None else duration(args.for_),
            "until": None if args.until is None else isoformat(args.until),
            "from": None if args.from_ is None else isoformat(args.from_),
            "by": by,
        }
    if command == "simulate":
        return "simulate", {
            "service": _text(args, "service"),
            "at": None if args.at is None else isoformat(args.at),
            "ack_after": None if args.ack_after is None else duration(args.ack_after),
            "rounds": args.rounds,
        }
    fields: dict[str, str | int | None] = {
        "service": _text(args, "service"),
        "message": _text(args, "message", MAX_TEXT),
        "by": _text(args, "by", MAX_BY),
    }
    if command == "history":
        target = _text(args, "target")
        assert target is not None
        fields["incident" if "#" in target else "service"] = target
    return command, fields


def _text(args: argparse.Namespace, name: str, limit: int | None = None) -> str | None:
    """An argument as the daemon takes it: invalid bytes replaced, free text cut to its limit
    (with a marker), so an alert is never refused or lost for its text, and a request line
    always fits pagerd's bound on a line."""
    value = getattr(args, name, None)
    if value is None:
        return None
    text = from_argv(value)
    return text if limit is None else clip(text, limit)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "silence" and (wrong := _silence_usage(args)) is not None:
        parser.error(wrong)  # checked while parsing already, where argparse lets it be
    _lenient(sys.stdout)
    path = args.socket or os.environ.get("PAGER_SOCKET") or DEFAULT_SOCKET
    if args.command in ("override", "oncall"):
        op, line = args.command, oncall_cli.request(args, parser)
    else:
        op, fields = _request(args)
        line = request_line(op, **fields)
    try:
        reply = call(path, line, args.timeout)
    except Unreachable as exc:
        print(f"pager: {exc}", file=sys.stderr)
        return EXIT_UNAVAILABLE
    except Busy as exc:
        print(f"pager: busy: {exc}", file=sys.stderr)
        return EXIT_TEMPFAIL
    except KeyboardInterrupt:
        print(
            "pager: interrupted before the reply; the request may have been acted on",
            file=sys.stderr,
        )
        return EXIT_INTERRUPTED
    if not reply.get("ok"):
        if args.json:  # for scripts: error.code, error.errors; the exit code says the same
            _print(json.dumps(reply, indent=2))
        error = reply.get("error") or {}
        code = str(error.get("code", "error"))
        print(
            f"pager: {printable(code)}: {printable(str(error.get('message', '')))}", file=sys.stderr
        )
        for line in error.get("errors") or []:  # each reason a reload was rejected
            print(f"  {printable(str(line))}", file=sys.stderr)
        if code == "forbidden":
            return EXIT_FORBIDDEN
        return EXIT_TEMPFAIL if code in _TEMPORARY else EXIT_REFUSED
    reply.pop("ok", None)
    if getattr(args, "unhealthy", False) and isinstance(reply.get("services"), list):
        reply["services"] = [s for s in reply["services"] if s.get("state") != "healthy"]
    if args.json:
        text = json.dumps(reply, indent=2)
    else:
        width = shutil.get_terminal_size().columns if sys.stdout.isatty() else None
        today = time.strftime("%Y-%m-%d", time.gmtime())
        text = render(op, reply, width, today)
    _print(text)
    if op == "silence" and (warning := long_silence(_escaped(reply.get("silence") or {}))):
        print(f"pager: warning: {warning}", file=sys.stderr)
    return EXIT_OK


def _print(text: str) -> None:
    try:
        print(text, flush=True)
    except BrokenPipeError:
        # The reader left (`pager status | head -1`): the request itself was answered. Point
        # stdout at /dev/null so that the interpreter's own flush at exit does not fail too.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


def _lenient(stream: Any) -> None:
    """Print what the terminal's encoding cannot show as escapes rather than fail on it."""
    if isinstance(stream, io.TextIOWrapper):
        stream.reconfigure(errors="backslashreplace")


def render(
    command: str, reply: dict[str, Any], width: int | None = None, today: str | None = None
) -> str:
    """Human-readable output of a successful reply, every string in it escaped; tables fitted
    to `width` characters when it is given (a terminal's): times shortened (to the time alone
    on `today`, a UTC `YYYY-MM-DD`), free text cut, the least useful columns left out."""
    if command == "metrics":
        # Still the exposition format, which a reader may pipe on: its own escapes are kept.
        lines = str(reply.get("text", "")).rstrip("\n").split("\n")
        return "\n".join(controls(line) for line in lines)
    reply = _escaped(reply)
    if reply.get("queued") is True:
        # A node of a cluster stored the event for the node that owns its service, which did
        # not answer in time (a failover under way): it is handled once an owner takes it.
        return (
            f"{reply.get('service', '?')}: {command} accepted and stored; the node that owns"
            " the service has not answered yet and will handle it"
        )
    if command == "ping":
        node = f" (node {reply['node']})" if reply.get("node") else ""
        return f"pagerd {reply.get('version', '?')} is up{node}"
    if command == "reload":
        config = reply.get("config") or {}
        said = f"pagerd reloaded its config (sha256 {config.get('sha256', '?')})"
        notes = [str(note) for note in reply.get("notes") or []]
        if notes:
            # Changes a reload cannot make: the file says one thing, pagerd runs another until then.
            said = "\n".join(
                [f"{said}; not applied until pagerd restarts:", *(f"  {note}" for note in notes)]
            )
        keys = config.get("signing_keys") or {}
        if keys.get("ok") is False:
            said += (
                f"\nwarning: cannot read the signing keys: {keys.get('error', '?')}; pagerd signs"
                " with the keys it read before, and would not start again until this is fixed"
            )
        return said
    if command == "history":
        return _history(reply)
    if command in ("override", "oncall"):
        return oncall_cli.render(command, reply)
    if command in ("silence", "silence_end"):
        return _silence(reply.get("silence") or {}, command)
    if command == "silences":
        return _silence_table(reply.get("silences") or [], width)
    if command == "simulate":
        return _timeline(reply)
    if "services" in reply:
        header = _cluster_header(reply)
        if not reply["services"]:
            return header + "no service to show"
        return header + _table(reply["services"], width, today) + _silenced(reply["services"])
    if command == "status":
        return (
            _table([reply], width, today)
            + _owned_by(reply)
            + _heartbeat(reply)
            + _silenced([reply])
            + _notifications(reply, width, today)
        )
    if command == "heartbeat":
        return _summary(reply) + _heartbeat(reply).replace("\n\n", "\n", 1)
    first = reply.get("already_acknowledged")
    if command == "ack" and isinstance(first, dict) and reply.get("incident"):
        # Another ack came first (any way: a link, an SMS, the console): this one did nothing.
        by = f" by {first['by']}" if first.get("by") else ""
        via = f" via {first['via']}" if first.get("via") else ""
        iid = reply["incident"]["id"]
        return f"{reply['service']}: {iid} was already acknowledged{by}{via} at {first.get('at')}"
    return _summary(reply)


def _escaped(value: Any) -> Any:
    if isinstance(value, str):
        return printable(value)
    if isinstance(value, dict):
        return {k: _escaped(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_escaped(v) for v in value]
    return value


def _history(reply: dict[str, Any]) -> str:
    closed = f", closed {reply['closed_at']}" if reply.get("closed_at") else ", open"
    lines = [f"{reply['incident']}: {reply.get('message') or '(no message)'}{closed}"]
    previous = None
    for entry in reply.get("timeline", []):
        # A removed service's incident is recorded `removed`, then `closed`: one line says it.
        if not (entry["event"] == "closed" and previous == "removed"):
            lines.append(f"  {entry['at']}  {_entry(entry)}")
        previous = entry["event"]
    return "\n".join(lines)


def _entry(entry: dict[str, Any]) -> str:
    event = entry["event"]
    peer = entry.get("peer")
    who = (
        f" from {peer.get('user') or 'uid ' + str(peer['uid'])} (pid {peer['pid']})" if peer else ""
    )
    if entry.get("integration"):
        who += f" via {entry['integration']}"
    if entry.get("via"):
        who += f" via {entry['via']}"
    if event == "alert":
        return f"alert{who}: {entry.get('detail') or '(no message)'}"
    if event == "ack":
        by = f" by {entry['by']}" if entry.get("by") else ""
        return f"acknowledged{by}{who}"
    if event == "healthy":
        by = f" by {entry['by']}" if entry.get("by") else ""
        return f"healthy{by}{who}"
    if event == "resolve":
        return f"resolved through {entry.get('detail') or 'an integration'}"
    if event == "resolve_ignored":
        return f"late resolve ignored through {entry.get('detail') or 'an integration'}"
    if event == "timeout":
        detail = str(entry.get("detail") or "")
        if detail.startswith(("the silence is over", "the maintenance window is over")):
            return f"hold over: {detail}"  # a silence or a window ended: no ack timed out
        return f"acknowledgement timeout: {detail}"
    if event == "silence":
        by = f" by {entry['by']}" if entry.get("by") else ""
        return f"silenced{by}{who}: {entry.get('detail') or 'a silence started'}"
    if event == "silence_end":
        by = f" by {entry['by']}" if entry.get("by") else ""
        head, ended, tail = str(entry.get("detail") or "").partition(" ended")
        if not ended:
            return f"silence ended{by}{who}: {head}"
        return f"{head} ended{by}{who}{tail}"  # silence 3 ended by carol: notified level 1 ...
    if event == "silenced":
        return f"held: {entry.get('detail') or 'paging held by a silence'}"
    if event == "ack_expired":
        return f"acknowledgement expired: {entry.get('detail', '')}"
    if event == "notification":
        via = f"{entry['via']}: " if entry.get("via") else ""
        line = f"notify {via}{entry['target']} (level {entry['level']}, round {entry['round']}"
        if entry.get("due_at"):  # a person's delayed step: decided now, sent at its time
            return f"{line}, due {entry['due_at']}, after {entry.get('delay')})"
        return f"{line})"
    if event == "unreached":
        return f"NOBODY TO NOTIFY: {entry.get('detail') or ''}"
    if event == "partly_unreached":  # others of the level were notified: a note, not an alarm
        return f"note: {entry.get('detail') or ''}"
    if event == "delivery":
        outcome = entry.get("outcome")
        extra = entry.get("error") or entry.get("provider_id") or ""
        return f"  {outcome} {entry['target']}" + (f": {extra}" if extra else "")
    if event == "closed":
        return "closed"
    if event == "elided":
        return f"... {entry.get('count')} more entries, until {entry.get('until')} ..."
    if event == "removed":
        return f"closed: {entry.get('detail') or 'service removed from the config'}"
    if event == "heartbeat_missed":
        return f"missed heartbeat: {entry.get('detail') or ''}"
    if event == "heartbeat":
        return f"check-in{who}: {entry.get('detail') or 'heartbeat restored'}"
    return str(event)


def _silence(silence: dict[str, Any], op: str) -> str:
    """One silence in a line: what `pager silence` and `pager silence end` print."""
    head = f"silence {silence.get('id')} of {silence.get('service')}"
    if op == "silence_end":
        by = f" by {silence['ended_by']}" if silence.get("ended_by") else ""
        return f"{head} ended{by} (from {silence.get('from')}: {silence.get('reason')})"
    by = f" by {silence['by']}" if silence.get("by") else ""
    return (
        f"{head}: from {silence.get('from')} until {silence.get('until')}{by}: "
        f"{silence.get('reason')}"
    )


def _silence_table(silences: list[dict[str, Any]], width: int | None) -> str:
    if not silences:
        return "no silence in force or to come"
    rows = [("ID", "SERVICE", "FROM", "UNTIL", "BY", "REASON")]
    for s in silences:
        rows.append(
            (str(s["id"]), s["service"], s["from"], s["until"], s.get("by") or "", s["reason"])
        )
    return _columns(rows, width, frozenset({"BY", "REASON"}))


def _silenced(statuses: list[dict[str, Any]]) -> str:
    """The silences of the services shown, and the maintenance windows in force, a line each,
    after a blank line; nothing if none."""
    lines = []
    for status in statuses:
        window = status.get("maintenance")
        if isinstance(window, dict):
            lines.append(
                f"{status['service']} in a maintenance window until {window.get('until')}"
                f" ({', '.join(map(str, window.get('windows') or []))})"
            )
        for s in status.get("silences") or []:
            by = f" by {s['by']}" if s.get("by") else ""
            lines.append(
                f"{status['service']} silenced from {s['from']} until {s['until']}{by}:"
                f" {s['reason']} (silence {s['id']})"
            )
    return "\n\n" + "\n".join(lines) if lines else ""


def _timeline(reply: dict[str, Any]) -> str:
    """A simulation: a line a step, then why it ends. A step of a level that pages a schedule
    is shown on the schedule's clock (its zone named); the others in UTC."""
    lines = [f"{reply.get('service')}: an incident opened at {reply.get('opened_at')}"]
    rows: list[tuple[str, ...]] = []
    for step in reply.get("timeline") or []:
        event = step.get("event")
        where = f"level {step.get('level')} round {step.get('round')}"
        if event == "notify":
            what = f"notify {where}: {_planned(step.get('notify') or [])}"
            if step.get("cancelled"):
                what += f" (not sent, acknowledged before: {_planned(step['cancelled'])})"
            if step.get("silenced"):
                what += f" (not sent, silenced then: {_planned(step['silenced'])})"
        elif event == "unreached" and step.get("partial"):
            reasons = "; ".join(map(str, step.get("reasons") or []))
            what = f"{where}: {reasons} (its other targets are notified)"
        elif event == "unreached":
            what = f"{where} reached nobody: {'; '.join(map(str, step.get('reasons') or []))}"
        elif event == "held":
            what = f"held by a {step.get('held_by') or 'silence'} until {step.get('until')}"
        elif event == "acknowledged":
            what = "acknowledged: escalation stops"
        elif event == "expired":
            what = "acknowledgement expired (ack_expiry): escalation restarts at level 1"
        elif event == "exhausted":
            what = "exhausted: no level left to notify"
        else:
            what = str(event)
        when = str(step.get("at"))
        if step.get("local_at"):
            when = f"{step['local_at']} {step.get('timezone')}"
        rows.append((f"  {when}", f"+{step.get('after')}", what))
    ends = {
        "acknowledged": "",
        "exhausted": "",
        "rounds": "(more rounds follow: --rounds)",
        "limit": "(and on: the timeline is cut there)",
    }
    text = "\n".join([*lines, _columns(rows)] if rows else lines)
    end = ends.get(str(reply.get("end")), "")
    return text + ("\n" + end if end else "")


def _planned(notes: list[dict[str, Any]]) -> str:
    """A step's notifications: each target with its delay if it has one; those a person or a
    schedule was resolved to grouped under how (`schedule:primary → alice (sms:..., email:...
    after 2m)`)."""
    groups: list[tuple[str | None, list[str]]] = []
    for note in notes:
        delay = note.get("delay")
        text = str(note.get("target")) + ("" if delay in (None, "0s") else f" after {delay}")
        via = note.get("via") or None
        if via is not None and groups and groups[-1][0] == via:
            groups[-1][1].append(text)
        else:
            groups.append((via, [text]))
    return ", ".join(
        texts[0] if via is None else f"{via} ({', '.join(texts)})" for via, texts in groups
    )


def _heartbeat(status: dict[str, Any]) -> str:
    """The service's heartbeat monitor in a line, after a blank one; nothing if it has none."""
    monitor = status.get("heartbeat")
    if not isinstance(monitor, dict):
        return ""
    last = monitor.get("last_at")
    if last is None:
        state = "waiting for the first check-in"
    elif monitor.get("missed"):
        state = f"MISSED: no check-in since {last}"
    else:
        state = f"next check-in due by {monitor.get('due_at')} (last {last})"
    return f"\n\nheartbeat every {monitor.get('every')}: {state}"


def _summary(status: dict[str, Any]) -> str:
    incident = status.get("incident")
    if incident is None:
        return f"{status['service']}: healthy"
    by = f" by {incident['acknowledged_by']}" if incident.get("acknowledged_by") else ""
    if incident.get("acknowledged_via"):
        by += f" via {incident['acknowledged_via']}"
    ack = f" acknowledged{by}" if incident["acknowledged"] else ""
    if incident.get("silenced"):
        quiet = "a silence"
        if incident.get("held_by"):
            quiet = f"a {incident['held_by']}"
        elif status.get("maintenance") and not status.get("silences"):
            quiet = "a maintenance window"
        held = f"paging held by {quiet} until {incident.get('next_escalation_at')}"
        if incident["level"]:
            held = f"level {incident['level']} notified, {held}"
        return (
            f"{status['service']}: unhealthy, incident {incident['id']}{ack}, {held}, "
            f"{incident['alerts']} alert(s)"
        )
    expires = _ack_expires(incident)
    if expires is not None:
        ack += f" (the acknowledgement expires at {expires}: policy ack_expiry)"
    unreached = [u for u in status.get("unreached") or [] if isinstance(u, dict)]
    if unreached:
        return _unreached_summary(status, incident, ack, unreached)
    return (
        f"{status['service']}: unhealthy, incident {incident['id']}{ack}, "
        f"level {incident['level']} notified, {incident['alerts']} alert(s)"
    )


def _unreached_summary(
    status: dict[str, Any], incident: dict[str, Any], ack: str, unreached: list[dict[str, Any]]
) -> str:
    """A reply whose decision found levels with nobody to notify (`unreached`): each said, and
    whether anybody was notified at all."""
    missed = "; ".join(
        f"level {u.get('level')} round {u.get('round')} reached nobody"
        f" ({'; '.join(map(str, u.get('reasons') or []))})"
        if u.get("skipped")
        else f"part of level {u.get('level')} round {u.get('round')} reached nobody"
        f" ({'; '.join(map(str, u.get('reasons') or []))})"
        for u in unreached
    )
    if incident.get("exhausted") and all(u.get("skipped") for u in unreached):
        paged = "NOBODY NOTIFIED, the policy is exhausted"
    else:
        paged = f"level {incident['level']} notified"
    return (
        f"{status['service']}: unhealthy, incident {incident['id']}{ack}, {paged}, "
        f"{incident['alerts']} alert(s)\n  {missed}"
    )


def _ack_expires(incident: dict[str, Any]) -> str | None:
    """When the incident's acknowledgement expires (`ack_expiry`), if it does: the status's
    `ack_expires_at`, or from a pagerd before that field, its `next_escalation_at` while
    acknowledged (which is that expiry)."""
    if not incident.get("acknowledged"):
        return None
    expires = incident.get("ack_expires_at", incident.get("next_escalation_at"))
    return expires if isinstance(expires, str) else None


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


def _urgency(status: dict[str, Any]) -> int:
    """Unhealthy and unacknowledged first, then unhealthy, then healthy."""
    incident = status.get("incident")
    if incident is None:
        return 2
    return 1 if incident.get("acknowledged") else 0


# The columns a narrow terminal may cut: the ones of free length, but for SERVICE and INCIDENT,
# which are what a reader types next (`pager ack SERVICE`, `pager history INCIDENT`): cut, they
# name nothing. The others are short already.
_FLEXIBLE: Final = frozenset({"ACK", "  NOTIFIED", "LAST ERROR"})
_NARROWEST: Final = 8
_TIMES: Final = frozenset({"OPENED", "NEXT"})
# What a narrow terminal does without, in this order, once the times are short and ACK is cut:
# the least useful to whoever is deciding what to do about an incident first.
_DROPPED: Final = ("ALERTS", "LEVEL", "OPENED", "DELIVERY", "NEXT", "STATE", "ACK")
# Who was notified is what a reader acts on: its cell is cut last.
_NOTES_DROPPED: Final = ("ROUND", "LEVEL", "ATTEMPTS", "STATE")
_TARGET: Final = frozenset({"  NOTIFIED"})
_ISO: Final = re.compile(r"(\d{4})-(\d\d-\d\d)T(\d\d:\d\d)(:\d\d)(?:\.\d+)?Z")


def _short_time(text: str, today: str | None) -> str:
    """`2026-11-30T21:02:00.000Z` in at most 12 columns: `21:02:00Z` if it is `today`, else
    `11-30 21:02Z` in the same year, else `2025-11-30`; after a label (`ack expires ...`), the
    label and the short time. Anything else (`exhausted`) as it is."""
    label, space, stamp = text.rpartition(" ")
    found = _ISO.fullmatch(stamp)
    if found is None:
        return text
    year, day, minute, seconds = found.groups()
    if today is not None and today == f"{year}-{day}":
        return f"{label}{space}{minute}{seconds}Z"
    if today is None or today[:4] == year:
        return f"{label}{space}{day} {minute}Z"
    return f"{label}{space}{year}-{day}"


def _state(status: dict[str, Any]) -> str:
    """The STATE cell: the state, marked when a silence or a maintenance window is in force
    (`healthy, silenced`; the lines under the table say until when and why)."""
    if not status.get("silenced_until"):
        return str(status["state"])
    window = status.get("maintenance")
    if isinstance(window, dict) and window.get("until") == status["silenced_until"]:
        return f"{status['state']}, maintenance"
    return f"{status['state']}, silenced"


def _cluster_header(reply: dict[str, Any]) -> str:
    """On a node of a cluster, the lines above the table: this node's part (its shards, their
    highest epoch, how long ago its leases were renewed), the other nodes alive, and, when the
    database could not be read, that the table holds only what this node knows from memory."""
    cluster = reply.get("cluster")
    if not isinstance(cluster, dict):
        return ""
    owned = cluster.get("shards_owned") or 0
    if owned:
        age = cluster.get("lease_renewal_age")
        renewed = f"leases renewed {age:.1f}s ago" if isinstance(age, float | int) else ""
        part = f"owns {owned} shard(s), epoch up to {cluster.get('epoch_max')}, {renewed}"
    else:
        part = "owns no shard"
    others = [str(n) for n in cluster.get("nodes") or []]
    alive = f"other nodes alive: {', '.join(others)}" if others else "no other node alive"
    lines = [f"node {cluster.get('node')}: {part.rstrip(', ')}; {alive}"]
    if cluster.get("config_agreed") is False:
        hashes = cluster.get("configs") or {}
        shown = ", ".join(f"{name}={h}" for name, h in sorted(hashes.items()))
        lines.append(f"the nodes run different configs: {shown}")
    if cluster.get("round_error"):
        lines.append(f"its lease rounds fail: {cluster['round_error']}")
    if reply.get("database_error"):
        lines.append(
            f"the database is unreachable ({reply['database_error']}): only the services this"
            " node owns are shown, from its memory"
        )
    return "\n".join(lines) + "\n\n"


def _owned_by(status: dict[str, Any]) -> str:
    """Under one service's table on a node of a cluster: which node owns it, by which lease."""
    owner = status.get("owner")
    if not isinstance(owner, dict):
        return ""
    if not owner.get("node"):
        said = f"\n\nowner: none (no node holds shard {owner.get('shard')}: a failover under way)"
    else:
        said = (
            f"\n\nowner: {owner['node']} (shard {owner.get('shard')}, epoch {owner.get('epoch')})"
        )
    if status.get("database_error"):
        said += (
            f"\nthe database is unreachable ({status['database_error']}): its notifications"
            " are not shown"
        )
    return said


def _owner(status: dict[str, Any]) -> str:
    """The OWNER cell (a node of a cluster): the node that owns the service now, or `none`
    while no node does (a failover under way)."""
    owner = status.get("owner")
    node = owner.get("node") if isinstance(owner, dict) else None
    return str(node) if node else "none"


def _table(
    statuses: list[dict[str, Any]], width: int | None = None, today: str | None = None
) -> str:
    # On a node of a cluster every status says which node owns its service: shown last.
    owned = any("owner" in status for status in statuses)
    rows: list[tuple[str, ...]] = [(*_COLUMNS, "OWNER") if owned else _COLUMNS]
    for status in sorted(statuses, key=_urgency):
        owner = (_owner(status),) if owned else ()
        incident = status.get("incident")
        if incident is None:
            cells = ["-"] * (len(_COLUMNS) - 2)
            rows.append((status["service"], _state(status), *cells, *owner))
            continue
        nxt = incident["next_escalation_at"] or ("exhausted" if incident["exhausted"] else "-")
        if (expires := _ack_expires(incident)) is not None:
            nxt = f"ack expires {expires}"  # not a page: escalation restarts then
        rows.append(
            (
                status["service"],
                _state(status),
                incident["id"],
                str(incident["level"]),
                (incident["acknowledged_by"] or "yes") if incident["acknowledged"] else "no",
                str(incident["alerts"]),
                incident["opened_at"],
                nxt,
                f"{failed} FAILED" if (failed := incident.get("failed_deliveries")) else "ok",
                *owner,
            )
        )
    if width is None or _natural(rows) <= width:
        return _columns(rows)
    # Too wide: short times first, then ACK cut, then columns dropped one by one; a row that
    # still does not fit is shown whole (the terminal wraps it) rather than with a cut name.
    times = [i for i, h in enumerate(rows[0]) if h in _TIMES]
    rows = [rows[0]] + [
        tuple(_short_time(c, today) if i in times else c for i, c in enumerate(row))
        for row in rows[1:]
    ]
    # OWNER goes once the least useful are gone: who acts on an incident asks its node next.
    return _fitted(rows, width, (*_DROPPED[:3], "OWNER", *_DROPPED[3:]) if owned else _DROPPED)


def _fitted(
    rows: Sequence[tuple[str, ...]],
    width: int,
    dropped: Sequence[str],
    cut_last: frozenset[str] = frozenset(),
) -> str:
    """`rows` in `width` columns: free text cut, then the `dropped` columns left out, in their
    order, until the rows fit; the `cut_last` columns are cut only if that is not enough (then
    the terminal wraps what still does not fit)."""
    kept = list(rows)
    for count in range(len(dropped) + 1):
        gone = {rows[0].index(h) for h in dropped[:count]}
        kept = [tuple(c for i, c in enumerate(row) if i not in gone) for row in rows]
        if _fit(_widths(kept), kept[0], width, _FLEXIBLE - cut_last):
            return _columns(kept, width, _FLEXIBLE - cut_last)
    return _columns(kept, width)


def _natural(rows: Sequence[tuple[str, ...]]) -> int:
    return sum(_widths(rows)) + 2 * (len(rows[0]) - 1)


def _widths(rows: Sequence[tuple[str, ...]]) -> list[int]:
    return [max(_shown(row[i]) for row in rows) for i in range(len(rows[0]))]


def _columns(
    rows: Sequence[tuple[str, ...]], width: int | None = None, names: frozenset[str] = _FLEXIBLE
) -> str:
    widths = _widths(rows)
    if width is not None:
        _fit(widths, rows[0], width, names)
    return "\n".join(
        "  ".join(_pad(_cut(cell, w), w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in rows
    )


def _fit(
    widths: list[int], header: tuple[str, ...], width: int, names: frozenset[str] = _FLEXIBLE
) -> bool:
    """Narrow the widest column of free length, one character at a time, until the row fits
    `width` (True) or none can narrow further (False: then the terminal wraps it)."""
    total = sum(widths) + 2 * (len(widths) - 1)
    floors = [max(len(h), _NARROWEST) for h in header]
    flexible = [i for i, h in enumerate(header) if h in names]
    while total > width:
        narrowable = [i for i in flexible if widths[i] > floors[i]]
        if not narrowable:
            return False
        widest = max(narrowable, key=lambda i: widths[i])
        widths[widest] -= 1
        total -= 1
    return True


def _cut(cell: str, width: int) -> str:
    if _shown(cell) <= width:
        return cell
    kept, used = [], 0
    for c in cell:
        used += _columns_of(c)
        if used > width - 1:
            break
        kept.append(c)
    return "".join(kept) + "…"


def _pad(cell: str, width: int) -> str:
    return cell + " " * (width - _shown(cell))


def _shown(text: str) -> int:
    """How many columns of a terminal `text` takes: a person's name in CJK takes two a
    character, so counting characters would misalign the table and overflow the width."""
    return len(text) if text.isascii() else sum(map(_columns_of, text))


def _columns_of(c: str) -> int:
    if unicodedata.combining(c):
        return 0
    return 2 if unicodedata.east_asian_width(c) in ("W", "F") else 1


def _notifications(
    status: dict[str, Any], width: int | None = None, today: str | None = None
) -> str:
    notes = (status.get("incident") or {}).get("notifications")
    if not notes:
        return ""
    rows = [("  NOTIFIED", "ROUND", "LEVEL", "STATE", "ATTEMPTS", "LAST ERROR")]
    for n in notes:
        state = n["state"]
        if n.get("due_at") and state in ("pending", "retrying"):
            # Waiting for its time: a person's delayed step ("after 2m"), or a retry.
            after = f" (after {n['delay']})" if n.get("delay") and state == "pending" else ""
            state = f"{state}, due {_short_time(n['due_at'], today)}{after}"
        rows.append(
            (
                f"  {n['target']}",
                str(n["round"]),
                str(n["level"]),
                state,
                str(n["attempts"]),
                n["last_error"] or "",
            )
        )
    return "\n\n" + (
        _columns(rows) if width is None else _fitted(rows, width, _NOTES_DROPPED, _TARGET)
    )


if __name__ == "__main__":
    sys.exit(main())
