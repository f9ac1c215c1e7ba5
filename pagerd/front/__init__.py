"""The front door: the Unix socket server, and the HTTP front door with its front processes.

In: connections on the listening socket, each a stream of protocol lines; HTTP requests, parsed
and checked where they are served (in a front process, or in the core with `http.workers = 0`).
Out: events routed to the engine's actors (with who sent them: a peer, or an integration), and
each request's reply written back once committed; status and history read from storage. HTTP
reaches the core through one port only (`core.Core`, implemented in `local.py` and, from a
front process, over its private channel). It decides nothing about incidents, and never holds a
connection's bytes unbounded: every read and write has a limit and a timeout.
"""
