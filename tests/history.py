"""An incident's history written straight into the schema: for the tests of what reads or prunes
history (what wrote the rows does not matter there, and a daemon would take far longer)."""

from __future__ import annotations

from pagerd.storage.sqlite.store import Store


def incident(
    store: Store,
    service: str,
    number: int,
    closed_at: float | None,
    events: int = 2,
    notifications: tuple[str, ...] = ("sent",),
    attempts: int = 1,
) -> None:
    """An incident with its history, as rows (what wrote them does not matter here)."""
    db = store._conn  # the test writes what the daemon would have written
    db.execute(
        "INSERT INTO incidents (service, number, opened_at, message, alerts, round, level,"
        " exhausted, closed_at) VALUES (?, ?, 0, '', 1, 1, 1, 0, ?)",
        (service, number, closed_at),
    )
    db.executemany(
        "INSERT INTO events (service, incident, at, op) VALUES (?, ?, 0, 'alert')",
        [(service, number)] * events,
    )
    for k, state in enumerate(notifications):
        nid = f"{service}#{number}/1/1/email:{k}@example.com"
        db.execute(
            "INSERT INTO notifications (id, service, incident, round, level, channel, address,"
            " message, opened_at, created_at, state) VALUES (?, ?, ?, 1, 1, 'email', ?, '', 0,"
            " 0, ?)",
            (nid, service, number, f"{k}@example.com", state),
        )
        db.executemany(
            "INSERT INTO delivery_attempts (notification, at, outcome) VALUES (?, 0, 'sent')",
            [(nid,)] * attempts,
        )


def rows_of(store: Store, service: str, number: int) -> list[int]:
    """Rows left of one incident: [incident, events, notifications, delivery attempts]."""
    prefix = f"{service}#{number}/"
    return [
        store._conn.execute(sql, args).fetchone()[0]
        for sql, args in [
            (
                "SELECT COUNT(*) FROM incidents WHERE service = ? AND number = ?",
                (service, number),
            ),
            ("SELECT COUNT(*) FROM events WHERE service = ? AND incident = ?", (service, number)),
            ("SELECT COUNT(*) FROM notifications WHERE id LIKE ? || '%'", (prefix,)),
            ("SELECT COUNT(*) FROM delivery_attempts WHERE notification LIKE ? || '%'", (prefix,)),
        ]
    ]
