"""Who is on the other end, and whether they may page or answer.

In: a connected socket (its `SO_PEERCRED`) and the config's allowed users and groups; a token
a person presents (an acknowledge link, a console session). Out: a `Peer` (kept with each event
in an incident's history) and the access decision; pagerd's signing keys (`keys.py`), what a
link's token says (`links.py`), the console's password hashes (`passwords.py`) and signed
sessions and CSRF tokens (`sessions.py`), never a token that was not signed by those keys. It
trusts nothing the client says about itself, never shows a key, and imports nothing else of
pagerd.
"""
