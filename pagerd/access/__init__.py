"""Who is on the other end, and whether they may page or answer.

In: a connected socket (its `SO_PEERCRED`) and the config's allowed users and groups; a token
a person presents (an acknowledge link). Out: a `Peer` (kept with each event in an incident's
history) and the access decision; pagerd's signing keys (`keys.py`) and what a link's token
says (`links.py`), never a token that was not signed by them. It trusts nothing the client
says about itself, never shows a key, and imports nothing else of pagerd.
"""
