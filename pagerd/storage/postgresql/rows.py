"""One group commit as a handful of PostgreSQL statements, whatever its size.

As in the SQLite adapter, a batch is folded first (`pagerd.storage.folding`) and the rows of
each table travel as one JSON array, unpacked by one statement (`json_array_elements`): a
commit of 150 transitions is ten statements, sent in one pipeline (one round trip), not 150.
Where a row belongs to a service its shard goes with it (`pager.shards.shard_of`), so that a
node's reads of its own shards are indexed.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, Final

import msgspec

from pager.shards import shard_of
from pagerd.storage.cluster import ANSWER_CHANNEL
from pagerd.storage.folding import INCIDENT_CHANGES, INCIDENT_COLUMNS, Rows


def _select(types: str, first: int = 0) -> str:
    """The select list unpacking a JSON array row `v`, from its element `first` on, into
    columns of `types` (space separated PostgreSQL types, in order)."""
    return ", ".join(f"(v->>{i})::{t}" for i, t in enumerate(types.split(), first))


_ELEMENTS: Final = "FROM json_array_elements(%s::json) AS v"

_INCIDENT_TYPES: Final = (
    "text integer float8 text integer integer integer float8 float8 text boolean float8 boolean"
    " boolean text integer boolean smallint"
)
UPSERT_INCIDENTS: Final = (
    f"INSERT INTO incidents ({', '.join(INCIDENT_COLUMNS)}, shard)"
    f" SELECT {_select(_INCIDENT_TYPES)} {_ELEMENTS} ON CONFLICT (service, number) DO UPDATE"
    f" SET {', '.join(f'{c} = excluded.{c}' for c in INCIDENT_CHANGES)}"
)
UPSERT_SILENCES: Final = (
    "INSERT INTO silences (id, service, starts_at, ends_at, reason, by, created_at, ended_at,"
    " ended_by, active, shard) SELECT"
    f" {_select('bigint text float8 float8 text text float8 float8 text boolean smallint')}"
    f" {_ELEMENTS} ON CONFLICT (id) DO UPDATE SET ends_at = excluded.ends_at,"
    " ended_at = excluded.ended_at, ended_by = excluded.ended_by, active = excluded.active"
)
UPSERT_HEARTBEATS: Final = (
    "INSERT INTO heartbeats (service, interval, due_at, last_at, shard) SELECT"
    f" {_select('text float8 float8 float8 smallint')} {_ELEMENTS} ON CONFLICT (service)"
    " DO UPDATE SET interval = excluded.interval, due_at = excluded.due_at,"
    " last_at = excluded.last_at"
)
DELETE_HEARTBEATS: Final = f"DELETE FROM heartbeats WHERE service IN (SELECT v->>0 {_ELEMENTS})"
INSERT_EVENTS: Final = (
    "INSERT INTO events (service, incident, at, op, detail, by, peer_uid, peer_user, peer_pid,"
    " integration, via) SELECT"
    f" {_select('text integer float8 text text text bigint text bigint text text')} {_ELEMENTS}"
)
INSERT_NOTIFICATIONS: Final = (
    "INSERT INTO notifications (id, service, incident, round, level, channel, address, message,"
    " opened_at, created_at, origin, step, via, next_attempt_at, not_before, shard) SELECT"
    f" {_select('text text integer integer integer text text text float8 float8 text integer')},"
    # A delayed step waits as a retry does, for its time (element 13), kept as its due time too.
    f" {_select('text float8', first=12)}, (v->>13)::float8, (v->>14)::smallint {_ELEMENTS}"
)
INSERT_FIRING: Final = (
    "INSERT INTO firing (service, integration, key, shard)"
    f" SELECT {_select('text text text smallint')} {_ELEMENTS} ON CONFLICT DO NOTHING"
)
DELETE_FIRING: Final = (
    "DELETE FROM firing WHERE (service, integration, key) IN"
    f" (SELECT {_select('text text text')} {_ELEMENTS})"
)
UPSERT_STARTS: Final = (
    "INSERT INTO alert_starts (service, integration, key, starts_at, resolved_at, shard)"
    f" SELECT {_select('text text text bigint float8 smallint')} {_ELEMENTS}"
    " ON CONFLICT (service, integration, key) DO UPDATE SET"
    " starts_at = excluded.starts_at, resolved_at = excluded.resolved_at"
)
DELETE_STARTS: Final = (
    "DELETE FROM alert_starts WHERE (service, integration, key) IN"
    f" (SELECT {_select('text text text')} {_ELEMENTS})"
)
INSERT_ATTEMPTS: Final = (
    "INSERT INTO delivery_attempts (notification, at, outcome, provider_id, error)"
    f" SELECT {_select('text float8 text text text')} {_ELEMENTS}"
)
UPDATE_NOTIFICATIONS: Final = (
    "UPDATE notifications AS n SET state = u.state, attempts = n.attempts + u.count,"
    " next_attempt_at = u.next_attempt_at, last_error = u.error,"
    " provider_id = COALESCE(u.provider_id, n.provider_id),"
    " sent_at = COALESCE(u.sent_at, n.sent_at)"
    ' FROM (SELECT (v->>0) COLLATE "C" AS id, v->>1 AS state, (v->>2)::integer AS count,'
    " (v->>3)::float8 AS next_attempt_at, v->>4 AS error, v->>5 AS provider_id,"
    f" (v->>6)::float8 AS sent_at {_ELEMENTS}) AS u WHERE n.id = u.id"
)
HANDLE: Final = (
    # The inbox's events handled: gone from the inbox, their answers kept for their senders
    # (`Cluster.answers`), each sender told at commit. An event handled twice (its first
    # answer kept) is no error: the fence made sure only one owner decided it.
    "WITH handled AS (SELECT (v->>0)::bigint AS id, v->>1 AS answer"
    f" {_ELEMENTS}), gone AS (DELETE FROM inbox WHERE id IN (SELECT id FROM handled)"
    " RETURNING id), kept AS (INSERT INTO answers (id, answer) SELECT h.id, h.answer"
    " FROM handled AS h JOIN gone USING (id) ON CONFLICT (id) DO NOTHING RETURNING id)"
    f" SELECT pg_notify('{ANSWER_CHANNEL}', id::text) FROM kept"
)

_encode = msgspec.json.Encoder().encode


def _json(values: Iterable[Any]) -> str:
    # Text, not bytes: psycopg would send bytes as bytea.
    return _encode(list(values)).decode()


def _sharded(rows: Iterable[list[Any]], service: int = 0) -> list[list[Any]]:
    """Each row with its service's shard last (`service`: the column naming the service)."""
    return [[*row, shard_of(row[service])] for row in rows]


def statements(rows: Rows) -> list[tuple[str, str]]:
    """(statement, its one JSON parameter) of every table the folded batch changes, in the
    order they must run (a firing set's removals before its additions, a notification before
    its attempts)."""
    added, removed = rows.firing_changes()
    put, forgotten = rows.started_changes()
    armed = [row for row in rows.heartbeats.values() if row is not None]
    disarmed = [[name] for name, row in rows.heartbeats.items() if row is None]
    found: list[tuple[str, Sequence[Any]]] = [
        (DELETE_FIRING, removed),
        (INSERT_FIRING, _sharded(added)),
        (DELETE_STARTS, forgotten),
        (UPSERT_STARTS, _sharded(put)),
        (UPSERT_INCIDENTS, _sharded(rows.incidents.values())),
        (INSERT_EVENTS, rows.events),
        (INSERT_NOTIFICATIONS, _sharded(rows.notifications, service=1)),
        (INSERT_ATTEMPTS, rows.attempts),
        (UPDATE_NOTIFICATIONS, list(rows.updates.values())),
        (UPSERT_HEARTBEATS, _sharded(armed)),
        (DELETE_HEARTBEATS, disarmed),
        (UPSERT_SILENCES, _sharded(rows.silences.values(), service=1)),
        (HANDLE, [[h.id, h.answer] for h in rows.handled]),
    ]
    return [(statement, _json(values)) for statement, values in found if values]
