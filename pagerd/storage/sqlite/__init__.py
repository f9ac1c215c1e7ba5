"""The SQLite adapter of the storage port: one database file in the state directory.

In: the port's calls, run in worker threads. Out: rows in `pager.db` (its schema, versions and
migrations are here), and the backup and restore commands' side of the file. It is the only
place that imports `sqlite3` or writes SQL; only the composition root (`pagerd.app`,
`pagerd.main`) names it.
"""
