"""`pager override` and `pager oncall`: their arguments, their requests, and their output.

Times on the command line are read here, on the reader's side, and sent as ISO 8601 with an
offset, so the daemon never guesses whose local time was meant:

- `2024-05-01T09:00+01:00`, `2024-05-01T08:00Z`: an instant, as written (ISO 8601 with offset);
- `2024-05-01T09:00`, `2024-05-01 09:00`, `2024-05-01`: the reader's local time (`TZ`, else
  the system's zone);
- `now`, and `+30m`, `+8h`, `+2d`: now, and that long from now.

Output: each time in the schedule's zone, and in the reader's in brackets when that differs.
Pure but for the reader's local zone and clock, which the caller may pass in.
"""

from __future__ import annotations

import argparse
import datetime as dt
import time
from collections.abc import Callable
from typing import Any

from pager.protocol import encode
from pager.timefmt import isoformat, read_time


def parse_time(text: str, now: Callable[[], float] = time.time) -> float:
    """A time as the command line takes it (`pager.timefmt.read_time`, which `pager silence` and
    `pager simulate` use too) -> seconds since the epoch; `argparse.ArgumentTypeError` saying
    what is accepted otherwise."""
    try:
        return read_time(text, now())
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_parsers(commands: Any, common: argparse.ArgumentParser) -> None:
    override = commands.add_parser(
        "override",
        parents=[common],
        help="stand in on a schedule: SCHEDULE --by P [--for P] --from T --until T; "
        "list [SCHEDULE]; remove ID",
        description="Add, list or remove a schedule's overrides.",
    )
    override.add_argument(
        "words", nargs="+", metavar="SCHEDULE | list [SCHEDULE] | remove ID", help="what to do"
    )
    override.add_argument("--by", dest="override_by", help="who goes on call")
    override.add_argument(
        "--for", dest="override_for", help="whom they stand in for (default: whoever is on call)"
    )
    override.add_argument("--from", dest="override_from", type=parse_time, help="when it starts")
    override.add_argument("--until", dest="override_until", type=parse_time, help="when it ends")
    oncall = commands.add_parser(
        "oncall", parents=[common], help="who is on call now (or --at TIME) and the next hand-offs"
    )
    oncall.add_argument("schedule", nargs="?", help="one schedule (default: every one)")
    oncall.add_argument("--at", type=parse_time, help="when to ask about (default: now)")
    oncall.add_argument(
        "--next", type=int, default=None, metavar="N", help="hand-offs to list (default 3)"
    )


def request(args: argparse.Namespace, parser: argparse.ArgumentParser) -> bytes:
    """The request line of `pager override ...` or `pager oncall ...` (exits 2 on misuse)."""
    if args.command == "oncall":
        fields: dict[str, Any] = {"op": "oncall"}
        if args.schedule is not None:
            fields["schedule"] = args.schedule
        if args.at is not None:
            fields["at"] = isoformat(args.at)
        if args.next is not None:
            if not 0 <= args.next <= 50:
                parser.error("--next: from 0 to 50")
            fields["next"] = args.next
        return encode(fields)
    words: list[str] = args.words
    options = (args.override_by, args.override_for, args.override_from, args.override_until)
    if words[0] in ("list", "remove"):
        if len(words) != 2 and not (words[0] == "list" and len(words) == 1):
            parser.error(
                f"usage: pager override {words[0]} {'[SCHEDULE]' if words[0] == 'list' else 'ID'}"
            )
        if any(o is not None for o in options):
            parser.error(f"override {words[0]} takes no --by, --for, --from or --until")
        if words[0] == "list":
            if len(words) == 1:  # every schedule's
                return encode({"op": "overrides"})
            return encode({"op": "overrides", "schedule": words[1]})
        if not words[1].isascii() or not words[1].isdigit():
            parser.error(f"override remove: {words[1]!r} is not an override's id (a number)")
        return encode({"op": "override_remove", "id": int(words[1])})
    if len(words) != 1:
        parser.error(
            "usage: pager override SCHEDULE --by PERSON [--for PERSON] --from TIME --until TIME"
        )
    if args.override_by is None or args.override_from is None or args.override_until is None:
        parser.error("override SCHEDULE needs --by, --from and --until")
    fields = {
        "op": "override",
        "schedule": words[0],
        "by": args.override_by,
        "from": isoformat(args.override_from),
        "until": isoformat(args.override_until),
    }
    if args.override_for is not None:
        fields["for"] = args.override_for
    return encode(fields)


def both(text: str | None) -> str:
    """An ISO time of the reply as `2024-05-01 09:00 +01:00`, and the reader's own wall clock
    in brackets when its offset differs."""
    if text is None:
        return "?"
    try:
        there = dt.datetime.fromisoformat(text)
    except ValueError:
        return text
    shown = there.strftime("%Y-%m-%d %H:%M %z")
    here = there.astimezone()
    if here.utcoffset() != there.utcoffset():
        shown += f" ({here.strftime('%Y-%m-%d %H:%M %z')} here)"
    return shown


def render(command: str, reply: dict[str, Any]) -> str:
    """The readable output of `override` and `oncall` replies (already escaped)."""
    if "override" in reply:
        return "added " + _override(reply["override"])
    if "removed" in reply and "overrides" not in reply:
        by = f" (removed by {reply['removed_by']})" if reply.get("removed_by") else ""
        return "removed " + _override(reply["removed"]) + by
    if "overrides" in reply and reply.get("schedule") is None:  # every schedule's
        if not reply["overrides"]:
            return "no overrides to come"
        return "\n".join(_override(o) for o in reply["overrides"])
    if "overrides" in reply:
        found = reply["overrides"]
        gone = reply.get("removed") or []
        lines = [f"{reply.get('schedule')} ({reply.get('timezone')}):"]
        if not found:
            lines = [f"{reply.get('schedule')}: no overrides to come"]
        lines += ["  " + _override(o) for o in found]
        if gone:
            lines.append("  removed, not yet ended:")
            for o in gone:
                who = f"by {o['removed_by']}" if o.get("removed_by") else "by ?"
                lines.append(f"    {_override(o)}; removed {who} at {both(o.get('removed_at'))}")
        return "\n".join(lines)
    lines = []
    for s in reply.get("schedules", []):
        head = f"{s.get('schedule')} ({s.get('timezone')}) at {both(s.get('at'))}: "
        if s.get("horizon") is not None and s.get("until") == s.get("horizon"):
            # Nothing changes as far as pagerd looked: the search's end is no hand-off.
            within = _weeks(s.get("at"), s.get("horizon"))
            who = s.get("on_call")
            if who:
                lines.append(f"{head}{who} (no hand-off within {within})")
            else:
                lines.append(f"{head}nobody (no shift within {within})")
        else:
            lines.append(f"{head}{s.get('on_call') or 'NOBODY'} until {both(s.get('until'))}")
        for nxt in s.get("next", []):
            lines.append(f"  {both(nxt.get('from'))}  {nxt.get('person') or 'NOBODY (a gap)'}")
    return "\n".join(lines) if lines else "no schedules configured"


def _weeks(start: str | None, end: str | None) -> str:
    """`26 weeks`: how far the search looked, from `start` to `end` (ISO times of the reply)."""
    try:
        span = dt.datetime.fromisoformat(str(end)) - dt.datetime.fromisoformat(str(start))
    except ValueError:
        return "the search's reach"
    weeks = round(span.total_seconds() / (7 * 86400))
    return f"{weeks} week{'s' if weeks != 1 else ''}"


def _override(o: dict[str, Any]) -> str:
    instead = f" for {o['for']}" if o.get("for") else " for whoever is on call"
    made = f", made by {o['made_by']}" if o.get("made_by") else ""
    ignored = f" (IGNORED: {o['ignored']}; remove it)" if o.get("ignored") else ""
    return (
        f"override {o.get('id')} on {o.get('schedule')}: {o.get('by')}{instead}, "
        f"from {both(o.get('from'))} until {both(o.get('until'))}{made}{ignored}"
    )
