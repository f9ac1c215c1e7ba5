"""Who is on the other end of a connection (`SO_PEERCRED`), and whether they may page.

The socket's file mode is the first gate; `[daemon] allow_users` / `allow_groups` is the second,
checked against the kernel's word for the peer's uid, not anything the client says.
"""

from __future__ import annotations

import grp
import os
import pwd
import socket
import struct
from typing import Final, Protocol

import attrs

from pager.text import printable

_UCRED: Final = struct.Struct("3i")


@attrs.frozen
class Peer:
    pid: int
    uid: int
    gid: int
    user: str | None = None
    groups: frozenset[str] = frozenset()

    def describe(self) -> str:
        # A name from NSS (LDAP, a file someone edited) is not trusted to be printable either.
        return f"uid={self.uid} user={printable(self.user or '?')} pid={self.pid}"


class _Socket(Protocol):
    def getsockopt(self, level: int, option: int, buflen: int, /) -> bytes: ...


def peer_credentials(sock: _Socket) -> Peer:
    """The peer's pid, uid and gid as the kernel recorded them when it connected."""
    pid, uid, gid = _UCRED.unpack(
        sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _UCRED.size)
    )
    return Peer(pid, uid, gid)


def resolve(peer: Peer, with_groups: bool) -> Peer:
    """Add the user name (and group names): blocking NSS lookups, so run off the event loop."""
    try:
        user: str | None = pwd.getpwuid(peer.uid).pw_name
    except KeyError:
        user = None
    groups: set[str] = set()
    if with_groups:
        gids = {peer.gid}
        if user is not None:
            gids.update(os.getgrouplist(user, peer.gid))
        for gid in gids:
            try:
                groups.add(grp.getgrgid(gid).gr_name)
            except KeyError:
                continue
    return attrs.evolve(peer, user=user, groups=frozenset(groups))


@attrs.frozen
class Access:
    """`None` for a list means not configured; if neither is, anyone who can open the socket
    may talk to pagerd. root and pagerd's own user are always allowed."""

    users: frozenset[str] | None = None
    groups: frozenset[str] | None = None
    own_uid: int = attrs.field(factory=os.getuid)

    @property
    def restricted(self) -> bool:
        return self.users is not None or self.groups is not None

    def allows(self, peer: Peer) -> bool:
        if peer.uid in (0, self.own_uid) or not self.restricted:
            return True
        if self.users is not None and peer.user in self.users:
            return True
        return self.groups is not None and not self.groups.isdisjoint(peer.groups)
