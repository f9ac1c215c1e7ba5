"""What the daemon and a delivery worker say to each other over the worker's pipes.

Each message is one frame: its length (4 bytes, big-endian) and its msgpack (msgspec) encoding.
Channels and pagerd's signing keys, secrets both, travel only here: never in a worker's
arguments or environment, which other users of the machine may read (`/proc/PID/cmdline`,
`/proc/PID/environ`).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Final, Literal

import attrs
import msgspec

from pager.domain import Notify
from pager.templates import DEFAULT_TEMPLATES, Templates
from pagerd.access.keys import SigningKeys
from pagerd.config.channels import (
    Channel,
    Settings,
    SlackSettings,
    SmtpSettings,
    TwilioSettings,
    WebhookSettings,
)
from pagerd.delivery.wording import Words

MAX_FRAME: Final = 1 << 20
"""Bytes of one message at most: a notification's message and a provider's reason are short
(both are cut long before this); more is a broken or foreign peer, and the pipe is closed."""


# The daemon to a worker. ------------------------------------------------------------------


class Open(msgspec.Struct, tag="open"):
    """Deliver `lane`'s sends through a transport built from this channel."""

    lane: int
    channel: bytes  # the `Channel` without its settings (see `open_lane`)
    kind: str  # which settings follow ("" for none)
    settings: bytes
    answering: bool = False
    """Whether its pages are answerable: an SMS's reply code (given with each `Send`), Slack
    buttons (signed with the keys of `Texts`)."""


class Close(msgspec.Struct, tag="close"):
    """`lane` is replaced (a reload) or gone: close its transport once its sends are done."""

    lane: int


class Texts(msgspec.Struct, tag="texts"):
    """Word pages with these from the next `Send` on (`pagerd.delivery.wording.Words`): given
    before the first, and again after a reload or a key rotation changed them."""

    templates: dict[str, str]  # the config's own (`Templates.sources`): the defaults besides
    public_url: str | None
    keys: list[bytes]  # pagerd's signing keys, newest first (none: no links, no buttons)


class Send(msgspec.Struct, tag="send"):
    id: int
    lane: int
    notify: Notify
    reply_code: int | None = None  # an SMS's, stored by the daemon before it is sent
    resolve: bool = False  # whether its policy lets a page resolve: link, button, SMS hint


ToWorker = Open | Close | Texts | Send


# A worker to the daemon. ------------------------------------------------------------------


class Ready(msgspec.Struct, tag="ready"):
    pid: int


class Sent(msgspec.Struct, tag="sent"):
    id: int
    provider_id: str | None


class Failed(msgspec.Struct, tag="failed"):
    id: int
    kind: Literal["transient", "permanent"]
    reason: str  # already redacted by the worker
    retry_after: float | None = None


class Log(msgspec.Struct, tag="log"):
    level: int
    text: str  # already redacted by the worker


FromWorker = Ready | Sent | Failed | Log


# Channels. --------------------------------------------------------------------------------

_SETTINGS: Final[dict[str, type]] = {
    "smtp": SmtpSettings,
    "twilio": TwilioSettings,
    "slack": SlackSettings,
    "webhook": WebhookSettings,
}


def _enc(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    raise NotImplementedError(type(value))


def _dec(kind: type, value: Any) -> Any:
    if kind is Path:
        return Path(value)
    raise NotImplementedError(kind)


def open_lane(lane: int, channel: Channel, answering: bool = False) -> Open:
    settings = channel.settings
    kind = next((k for k, t in _SETTINGS.items() if isinstance(settings, t)), "")
    bare = attrs.evolve(channel, settings=None)
    return Open(
        lane,
        msgspec.msgpack.encode(bare, enc_hook=_enc),
        kind,
        msgspec.msgpack.encode(settings, enc_hook=_enc) if kind else b"",
        answering,
    )


def channel_of(message: Open) -> Channel:
    fields: dict[str, Any] = msgspec.msgpack.decode(message.channel)
    fields.pop("settings", None)
    bare = Channel(**fields)
    settings: Settings = None
    if message.kind:
        settings = msgspec.msgpack.decode(
            message.settings, type=_SETTINGS[message.kind], dec_hook=_dec
        )
    return attrs.evolve(bare, settings=settings)


def texts_of(words: Words) -> Texts:
    keys = [] if words.keys is None else list(words.keys.keys)
    return Texts(dict(words.templates.sources), words.public_url, keys)


def words_of(texts: Texts) -> Words:
    """The `Words` a `Texts` gives (its templates compiled here, in the worker)."""
    templates = Templates(texts.templates) if texts.templates else DEFAULT_TEMPLATES
    keys = SigningKeys(tuple(texts.keys)) if texts.keys else None
    return Words(templates, texts.public_url, keys)


# Frames. ----------------------------------------------------------------------------------

_to_worker: Final[msgspec.msgpack.Decoder[ToWorker]] = msgspec.msgpack.Decoder(ToWorker)
_from_worker: Final[msgspec.msgpack.Decoder[FromWorker]] = msgspec.msgpack.Decoder(FromWorker)
_encoder: Final = msgspec.msgpack.Encoder()


def frame(message: ToWorker | FromWorker) -> bytes:
    data = _encoder.encode(message)
    return len(data).to_bytes(4, "big") + data


class Frames:
    """Frames cut from a stream's bytes as they come."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes | bytearray) -> list[bytes]:
        self._buffer += data
        found = []
        while len(self._buffer) >= 4:
            size = int.from_bytes(self._buffer[:4], "big")
            if size > MAX_FRAME:
                raise ValueError(f"a frame of {size} bytes (at most {MAX_FRAME})")
            if len(self._buffer) < 4 + size:
                break
            found.append(bytes(self._buffer[4 : 4 + size]))
            del self._buffer[: 4 + size]
        return found


def to_worker(data: bytes) -> ToWorker:
    return _to_worker.decode(data)


def from_worker(data: bytes) -> FromWorker:
    return _from_worker.decode(data)


def finite(value: float | None) -> float | None:
    return value if value is None or math.isfinite(value) else None
