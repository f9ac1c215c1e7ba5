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
from pathlib import Path
from typing import Final, Protocol

import attrs

from pager.text import printable

_UCRED: Final = struct.Struct("3i")
UID_MAP: Final = Path("/proc/self/uid_map")
# What a user namespace shows for a uid it does not map (the kernel's overflow uid).
NOBODY: Final = 65534


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


def unmapped_peers(uid_map: str | None) -> bool:
    """Whether `uid_map` (the text of /proc/self/uid_map) leaves ordinary users unmapped, so
    that `SO_PEERCRED` shows them all as 65534 (nobody): a user namespace such as systemd's
    `PrivateUsers=yes`, which maps only root and the service's own user. Unreadable (None):
    no /proc to ask, taken as the host's. A namespace that maps every uid up to 65533 (a
    container's remapped range) tells its own users apart."""
    if uid_map is None:
        return False
    covered = 0
    try:
        for line in uid_map.splitlines():
            if not line.strip():
                continue
            inside, _outside, count = (int(field) for field in line.split())
            covered += max(0, min(inside + count, NOBODY) - max(inside, 0))
    except ValueError:
        return False
    return covered < NOBODY


def read_uid_map(path: Path | None = None) -> str | None:
    try:
        return (path or UID_MAP).read_text()
    except OSError:
        return None


def namespace_problem(access: Access, uid_map: str | None) -> str | None:
    """Why `access` cannot work in this user namespace, or None: with users unmapped, every
    client but root and pagerd's own user is "nobody" to the kernel's peer credentials, so
    `allow_users` / `allow_groups` would turn away everyone they name."""
    if not access.restricted or not unmapped_peers(uid_map):
        return None
    return (
        "daemon.allow_users / allow_groups cannot work here: pagerd runs in a user namespace"
        " that does not map its clients' uids (all would be uid 65534, nobody; systemd's"
        " PrivateUsers=yes does this): remove PrivateUsers, or the access lists"
    )
