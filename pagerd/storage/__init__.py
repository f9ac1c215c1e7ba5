"""Storage: what the daemon keeps, behind one port (`port.Storage`, and `cluster.Cluster` for a
store several nodes share), and its adapters: SQLite (`sqlite/`, one node) and PostgreSQL
(`postgresql/`, several).

In: batches of writes (transitions, delivery attempts, clock marks, handled inbox events) from
the group commit, and reads for start-up, status, history and the outbox. Out: rows durable on
return, or `StoreError`. Everything here but the adapters speaks only to the port; nothing
outside them mentions SQL, a driver or the database file.
"""
