"""The front door: the Unix socket server that takes requests in and sends replies out.

In: connections on the listening socket, each a stream of protocol lines. Out: events routed
to the engine's actors (with who sent them), and each request's reply written back in request
order; status and history read from storage. It decides nothing about incidents, and never
holds a connection's bytes unbounded: every read and write has a limit and a timeout. The HTTP
server joins it here.
"""
