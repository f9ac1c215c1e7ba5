"""Who is on the other end of a connection, and whether they may page.

In: a connected socket (its `SO_PEERCRED`) and the config's allowed users and groups. Out: a
`Peer` (kept with each event in an incident's history) and the access decision. It trusts
nothing the client says about itself, and imports nothing else of pagerd.
"""
