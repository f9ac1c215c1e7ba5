"""The PostgreSQL adapter of the storage port and of the cluster port: one database that several
pagerd nodes share.

In: the `Storage` and `Cluster` calls, run in worker threads, with the `Fence` of the node
writing. Out: rows in PostgreSQL (its schema, numbered migrations and the version it is at are
here, applied by `pagerd migrate`, never by a running node), leases by the database's clock,
and `LISTEN`/`NOTIFY` for the inbox. It never writes for a shard its node does not hold under
the epoch the write carries, and never shows the DSN (it may carry a password) in an error.
Only the composition root (`pagerd.app`, `pagerd.main`) names it.
"""
