"""Storage: what the daemon keeps, behind one port (`port.Storage`), and the SQLite adapter.

In: batches of writes (transitions, delivery attempts, clock marks) from the group commit, and
reads for start-up, status, history and the outbox. Out: rows durable on return, or
`StoreError`. Everything here but `sqlite/` speaks only to the port; nothing outside `sqlite/`
mentions SQL, `sqlite3` or the database file.
"""
