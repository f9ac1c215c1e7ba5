"""What each channel says for a notification: the config's templates, with the page's links.

An email or a Slack page carries an acknowledge link (and a resolve link, where the policy
allows it) when `http.public_url` is set: a token for the incident and who was paged (the
person a `person:` or `schedule:` target was resolved to, else the target's address), signed
with pagerd's keys (`pagerd.access.links`). The config and the keys are read at each send, so a
reload's templates and a rotated key apply from the next page on, through lanes that a reload
kept. An SMS carries no link: where replies are taken, its `reply_hint` says how to
answer it ("Reply 4a to acknowledge, 4c to close"; the Twilio transport gives the code).

What a page's words depend on besides the notification is `Words` (templates, public URL,
keys) and whether its policy allows resolving: a delivery worker, which has no config, is given
the one over its pipe and the other with each send (`pagerd.delivery.workers`), and words its
pages as the daemon's own process would.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

import attrs

from pager.domain import Notify
from pager.messages import page
from pager.templates import DEFAULT_TEMPLATES, Page, Templates
from pagerd.access.keys import SigningKeys
from pagerd.access.links import Link, url
from pagerd.config import Config

LINKED: Final = frozenset({"email", "slack"})
"""The channels whose pages carry links (an SMS is answered by a reply, see docs/answering.md)."""


@attrs.frozen
class Words:
    """What pages are worded with: the templates, and for links `public_url` and the keys (no
    links unless both are given)."""

    templates: Templates = DEFAULT_TEMPLATES
    public_url: str | None = None
    keys: SigningKeys | None = attrs.field(default=None, repr=False)


class Wording:
    def __init__(
        self,
        config: Callable[[], Config | None] = lambda: None,
        keys: Callable[[], SigningKeys | None] = lambda: None,
    ) -> None:
        """`config` gives the running config (its templates, `http.public_url`, the policies);
        `keys` pagerd's signing keys. Without either: the default texts, no links."""
        self._config = config
        self._keys = keys
        self._read: tuple[Config | None, SigningKeys | None] = (None, None)
        self._words = Words()

    def words(self) -> Words:
        """The running config's and keys' `Words`: the same object until either changes (a
        reload, a rotation), so that whoever passes them on can tell by identity."""
        config, keys = self._config(), self._keys()
        if config is not self._read[0] or keys is not self._read[1]:
            self._read = (config, keys)
            if config is None:
                self._words = Words()
            else:
                self._words = Words(config.templates, config.http.public_url, keys)
        return self._words

    def allows_resolve(self, n: Notify) -> bool:
        """Whether the policy of `n`'s service lets its pages close the incident: a resolve
        link, a Resolve button, "4c to close" in an SMS. Without a config (the default texts),
        as a policy's default does: yes (there are no links then, only buttons and hints)."""
        config = self._config()
        if config is None:
            return True
        policy = config.policies.get(config.services.get(n.service, ""))
        return policy is not None and policy.allow_resolve

    def page(self, n: Notify, reply_hint: str = "") -> Page:
        """The template variables of `n`, with its links if it is to carry them, and
        `reply_hint` (an SMS's reply code, `pager.replies.reply_hint`)."""
        words = self.words()
        keys, public_url = words.keys, words.public_url
        if keys is None or not public_url or n.target.channel not in LINKED:
            return page(n, reply_hint=reply_hint)
        # Who was paged: the person a `person:` or `schedule:` target was resolved to (the
        # ack is theirs, whichever of their addresses the link came to), else the address.
        # The incident as stored (`Notify.opened`), not the time shown: what the link's
        # answer compares with the incident pagerd holds, exactly.
        token = Link(n.service, n.incident, n.opened, n.person or str(n.target)).token(keys)
        return page(
            n,
            ack_url=url(public_url, "ack", token),
            resolve_url=url(public_url, "resolve", token) if self.allows_resolve(n) else "",
            reply_hint=reply_hint,
        )

    def templates(self) -> Templates:
        return self.words().templates

    def subject(self, n: Notify) -> str:
        return self.templates().subject(self.page(n))

    def body(self, n: Notify) -> str:
        return self.templates().body(self.page(n))

    def sms(self, n: Notify, reply_hint: str = "") -> str:
        return self.templates().sms(self.page(n, reply_hint))

    def slack(self, n: Notify) -> str:
        return self.templates().slack(self.page(n))


PLAIN: Final = Wording()
"""The default texts, without links: for a transport built without a config (tests)."""
