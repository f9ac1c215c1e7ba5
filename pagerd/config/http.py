"""`[http]` (the HTTP front door's listener and limits) and `[integrations.NAME]` (who may send
through it, with which key, to which services), validated.

Keys are read like the channels' secrets (`read_secret`): from a file or a systemd credential,
never from the config itself, and never shown (`Secret` has no readable repr).
"""

from __future__ import annotations

import os
import re
import ssl
from collections.abc import Callable, Collection, Mapping
from pathlib import Path
from typing import Any, Final

import attrs
import httpx

from pager.domain import is_service_name
from pager.integrations import IntegrationRoute, KeyedRoute
from pagerd.config.channels import Secret, parse_rate, read_secret
from pagerd.config.durations import Duration

INTEGRATION_TYPES: Final = ("alertmanager", "events-v2", "rest", "heartbeat", "calendar")
ROUTED_TYPES: Final = frozenset({"alertmanager", "events-v2"})
"""Types whose events name their service in the payload: they take `service` or `service_label`."""

DEFAULT_MAX_BODY: Final = 1024 * 1024
DEFAULT_READ_TIMEOUT: Final = 10.0
DEFAULT_KEEP_ALIVE: Final = 5.0
DEFAULT_MAX_CONNECTIONS: Final = 512
DEFAULT_RATE: Final = "100/s"
DEFAULT_BURST: Final = 200
MAX_WORKERS: Final = 64

_READ_TIMEOUT: Final = Duration(DEFAULT_READ_TIMEOUT)
_KEEP_ALIVE: Final = Duration(DEFAULT_KEEP_ALIVE)

HostPort = tuple[str, int]


@attrs.frozen
class HttpSection:
    """`[http]` as written (`listen` is read apart: a string or an array of them)."""

    tls_cert: str | None = None
    tls_key: str | None = None
    public_url: str | None = None
    max_body_bytes: int = DEFAULT_MAX_BODY
    read_timeout: Duration = _READ_TIMEOUT
    keep_alive_timeout: Duration = _KEEP_ALIVE
    max_connections: int = DEFAULT_MAX_CONNECTIONS
    rate_limit: str = DEFAULT_RATE
    burst: int = DEFAULT_BURST
    workers: int | None = None


@attrs.frozen
class IntegrationSection:
    type: str
    key_file: str | None = None
    key_credential: str | None = None
    service: str | None = None
    service_label: str | None = None
    services: list[str] | None = None
    heartbeat_alert: str | None = None


@attrs.frozen
class HttpLimits:
    """What one client may take: a body over `max_body_bytes` gets 413; a connection that sends
    nothing for `read_timeout` mid-request, or stays idle `keep_alive_timeout` between requests,
    is closed; past `max_connections` a new one gets 503 at once; an integration sending faster
    than `rate` a second (after `burst`) gets 429 with `Retry-After`."""

    max_body_bytes: int = DEFAULT_MAX_BODY
    read_timeout: float = DEFAULT_READ_TIMEOUT
    keep_alive_timeout: float = DEFAULT_KEEP_ALIVE
    max_connections: int = DEFAULT_MAX_CONNECTIONS
    rate: float = 100.0
    burst: int = DEFAULT_BURST


@attrs.frozen
class HttpConfig:
    listen: tuple[HostPort, ...] = ()
    """Where to listen; none (the default) serves no HTTP unless systemd passes a socket."""
    tls: tuple[Path, Path] | None = None
    """(certificate chain, private key) files, read again on reload for new connections."""
    public_url: str | None = None
    limits: HttpLimits = HttpLimits()
    workers: int | None = None
    """Front processes that parse and check requests (`pagerd/front/http/fronts.py`); 0 serves
    HTTP in the core's own process; None (the default): one a core (`front_processes`)."""

    @property
    def front_processes(self) -> int:
        """How many front processes serve HTTP: `workers`, or one for each core pagerd may
        run on (its CPU affinity, which a container or `taskset` may narrow)."""
        if self.workers is not None:
            return self.workers
        return max(1, len(os.sched_getaffinity(0)))


@attrs.frozen
class Integration:
    name: str
    type: str
    key: Secret
    service: str | None = None
    service_label: str | None = None
    services: frozenset[str] | None = None
    """The services it may send to; None: any configured one."""
    heartbeat_alert: str | None = None
    """alertmanager: the alertname that is a heartbeat check-in (Watchdog), never an alert."""

    def may_send_to(self, service: str) -> bool:
        return self.services is None or service in self.services

    def route(self) -> IntegrationRoute:
        """This integration as the parsers take it (alertmanager and events-v2 only)."""
        assert self.type in ROUTED_TYPES, self.type
        return IntegrationRoute(
            self.name,
            "alertmanager" if self.type == "alertmanager" else "events-v2",
            self.service,
            self.service_label,
            self.services,
            self.heartbeat_alert,
        )


@attrs.frozen
class FrontConfig:
    """What the HTTP front door needs of the config, and nothing more (no policies, no channel
    secrets): a front process is sent this, not the config (`pagerd/front/http/channel.py`).

    `keyed` is built once a config, not once a request (`POST /v2/enqueue` compares its
    `routing_key` with every events-v2 key)."""

    http: HttpConfig
    integrations: Mapping[str, Integration]
    services: Collection[str]
    """The configured services' names: an event for any other is refused before it is sent."""
    keyed: tuple[KeyedRoute, ...] = ()

    @classmethod
    def of(
        cls, http: HttpConfig, integrations: Mapping[str, Integration], services: Collection[str]
    ) -> FrontConfig:
        return cls(http, integrations, services, keyed_routes(integrations))


def keyed_routes(integrations: Mapping[str, Integration]) -> tuple[KeyedRoute, ...]:
    """The events-v2 integrations with their keys, for `POST /v2/enqueue` (the key is in the
    body, so every one is a candidate, compared in constant time by `find_by_key`)."""
    return tuple(
        KeyedRoute(i.route(), i.key.value.encode("utf-8"))
        for i in integrations.values()
        if i.type == "events-v2"
    )


def tls_context(cert: Path, key: Path) -> ssl.SSLContext:
    """The server's TLS context from its files (`ssl.SSLError` or `OSError` if unusable)."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(str(cert), str(key))
    context.set_alpn_protocols(["http/1.1"])
    return context


def build_http(
    value: Any,
    base: Path,
    structure: Callable[[Any, type, str], tuple[Any, list[str]]],
    host_port: Callable[[str], HostPort | None],
) -> tuple[HttpConfig, list[str]]:
    """`[http]` into an `HttpConfig`, or every error with its key path. The TLS files are
    loaded as the server will load them, so a bad pair fails `--check`, not the start."""
    if not isinstance(value, dict):
        return HttpConfig(), ["http: expected a table"]
    table = dict(value)
    listen, errors = _listen(table.pop("listen", None), host_port)
    section, found = structure(table, HttpSection, "http")
    errors += found
    if section is None:
        return HttpConfig(), errors
    tls: tuple[Path, Path] | None = None
    if (section.tls_cert is None) != (section.tls_key is None):
        errors.append("http.tls_cert: give both tls_cert and tls_key, or neither")
    elif section.tls_cert is not None and section.tls_key is not None:
        tls = (base / section.tls_cert, base / section.tls_key)
        try:
            tls_context(*tls)
        except (ssl.SSLError, OSError, ValueError) as exc:
            errors.append(f"http.tls_cert: cannot use {tls[0]} with {tls[1]}: {exc}")
    if section.public_url is not None:
        try:
            url = httpx.URL(section.public_url)
            ok = url.scheme in ("http", "https") and bool(url.host)
        except httpx.InvalidURL:
            ok = False
        if not ok:
            errors.append('http.public_url: expected an http(s) URL, like "https://pager.example"')
        elif "?" in section.public_url or "#" in section.public_url:
            # Links are made by adding a path to it: a query or fragment would swallow it.
            errors.append(
                "http.public_url: must have no query (?) or fragment (#): links add a path to it,"
                ' like "https://pager.example.com" or "https://example.com/pager"'
            )
    rate = 0.0
    try:
        rate = parse_rate(section.rate_limit)
    except ValueError as exc:
        errors.append(f"http.rate_limit: {exc}")
    for key in ("max_body_bytes", "max_connections", "burst"):
        if getattr(section, key) < 1:
            errors.append(f"http.{key}: must be 1 or more")
    for key in ("read_timeout", "keep_alive_timeout"):
        if float(getattr(section, key)) <= 0:
            errors.append(f"http.{key}: must be more than zero")
    if section.workers is not None and not 0 <= section.workers <= MAX_WORKERS:
        errors.append(f"http.workers: must be 0 (HTTP in the core's own process) to {MAX_WORKERS}")
    limits = HttpLimits(
        max_body_bytes=section.max_body_bytes,
        read_timeout=float(section.read_timeout),
        keep_alive_timeout=float(section.keep_alive_timeout),
        max_connections=section.max_connections,
        rate=rate,
        burst=section.burst,
    )
    return HttpConfig(tuple(listen), tls, section.public_url, limits, section.workers), errors


def listen_note(http: HttpConfig, integrations: Collection[str], console: bool) -> str | None:
    """A word for `pagerd --check` when the config sets up what is reached over HTTP
    (`public_url`, integrations, the console) but `http.listen` is unset, so that nothing
    listens. Not an error: systemd may pass the listening socket (`FileDescriptorName=http`)."""
    if http.listen:
        return None
    named = [
        name
        for name, set_up in (
            ("http.public_url", http.public_url is not None),
            ("[integrations]", bool(integrations)),
            ("[console]", console),
        )
        if set_up
    ]
    if not named:
        return None
    return (
        f"http.listen is not set: nothing listens for what {', '.join(named)} set up (unless"
        " systemd passes pagerd a socket named http; see docs/http.md)"
    )


def _listen(
    value: Any, host_port: Callable[[str], HostPort | None]
) -> tuple[list[HostPort], list[str]]:
    if value is None:
        return [], []
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list):
        return [], ['http.listen: expected "HOST:PORT" or an array of them']
    found: list[HostPort] = []
    errors: list[str] = []
    for i, item in enumerate(items):
        at = "http.listen" if isinstance(value, str) else f"http.listen[{i}]"
        address = _address(item, host_port) if isinstance(item, str) else None
        if address is None:
            errors.append(f'{at}: expected HOST:PORT, like "127.0.0.1:8080"')
        elif address in found:
            errors.append(f"{at}: listed twice")
        else:
            found.append(address)
    return found, errors


def _address(text: str, host_port: Callable[[str], HostPort | None]) -> HostPort | None:
    """HOST:PORT; port 0 is allowed here (any free port: tests, or a front whose port is told
    by the log line `http on ...`)."""
    if text.endswith(":0"):
        found = host_port(text[:-1] + "1")
        return None if found is None else (found[0], 0)
    return host_port(text)


_NAME: Final = re.compile(r"[A-Za-z0-9_.-]{1,128}")
MIN_KEY_LENGTH: Final = 16
_KEY: Final = re.compile(r"[\x21-\x7e]+")  # printable ASCII, no spaces


def key_problem(key: str) -> str | None:
    """Why `key` cannot be an integration's key; None if it can. Never shows the key.

    Short keys can be guessed (found by review: a one-character key passed); keys outside
    printable ASCII never match a header (HTTP headers are read as latin-1 bytes)."""
    make = "make one with: openssl rand -hex 32"
    if _KEY.fullmatch(key) is None:
        return f"the key must be printable ASCII without spaces ({make})"
    if len(key) < MIN_KEY_LENGTH:
        return f"the key is {len(key)} characters; at least {MIN_KEY_LENGTH} are needed ({make})"
    return None


def build_integrations(
    value: Any,
    base: Path,
    environ: Mapping[str, str],
    services: Mapping[str, object],
    structure: Callable[[Any, type, str], tuple[Any, list[str]]],
    join: Callable[[str, object], str],
) -> tuple[dict[str, Integration], list[str]]:
    """`[integrations.*]`, each checked on its own: every error of every one, in one pass."""
    if not isinstance(value, dict):
        return {}, ["integrations: expected a table"]
    built: dict[str, Integration] = {}
    errors: list[str] = []
    for name, table in value.items():
        at = join("integrations", name)
        if _NAME.fullmatch(name) is None:
            errors.append(f"{at}: a name is 1 to 128 letters, digits, '.', '_' or '-'")
        section, found = structure(table, IntegrationSection, at)
        errors += found
        if section is None:
            continue
        integration, found = _integration(name, at, section, base, environ, services)
        errors += found
        if integration is not None and not found:
            built[name] = integration
    seen: dict[tuple[str, str], str] = {}
    for name, integration in built.items():
        # One key, one integration of a type: otherwise who sent an event could not be told.
        other = seen.setdefault((integration.type, integration.key.value), name)
        if other != name:
            errors.append(
                f"{join('integrations', name)}: the same key as integrations.{other}, of the "
                "same type (give each its own key)"
            )
    return built, errors


def _integration(
    name: str,
    at: str,
    section: IntegrationSection,
    base: Path,
    environ: Mapping[str, str],
    services: Mapping[str, object],
) -> tuple[Integration | None, list[str]]:
    errors: list[str] = []

    def error(key: str, message: str) -> None:
        errors.append(f"{at}.{key}: {message}")

    if section.type not in INTEGRATION_TYPES:
        expected = ", ".join(map(repr, INTEGRATION_TYPES))
        error("type", f"unknown type {section.type!r} (expected one of {expected})")
    if section.key_file is None and section.key_credential is None:
        error("key_file", "required: key_file or key_credential")
    key = read_secret("key", section.key_file, section.key_credential, base, environ, error)
    if key is not None:
        problem = key_problem(key.value)
        if problem is not None:
            error("key_file" if section.key_file is not None else "key_credential", problem)
            key = None
    if section.type in ROUTED_TYPES:
        if (section.service is None) == (section.service_label is None):
            error("service", "give one of service (one service) or service_label (a label)")
    else:
        for what in ("service", "service_label"):
            if getattr(section, what) is not None:
                error(what, f"not a setting of type {section.type!r} (the request names it)")
    if section.service is not None and section.service not in services:
        error("service", f"no service named {section.service!r} is configured")
    for i, service in enumerate(section.services or ()):
        if service not in services:
            error(f"services[{i}]", f"no service named {service!r} is configured")
    if section.heartbeat_alert is not None:
        if section.type != "alertmanager":
            error("heartbeat_alert", "a setting of type 'alertmanager' only")
        elif not section.heartbeat_alert:
            error("heartbeat_alert", 'must not be empty (an alertname, like "Watchdog")')
        elif section.service is None:
            error("heartbeat_alert", "needs service: the service the alert checks in for")
        elif section.service in services and _heartbeat(services[section.service]) is None:
            error(
                "heartbeat_alert",
                f"service {section.service!r} has no heartbeat configured"
                f" (services.{section.service}.heartbeat)",
            )
    if section.service_label is not None and not section.service_label:
        error("service_label", "must not be empty")
    if section.services is not None and not section.services:
        error("services", "an empty list lets nothing through (leave it out for any service)")
    if errors or key is None:
        return None, errors
    assert section.service is None or is_service_name(section.service)
    return (
        Integration(
            name=name,
            type=section.type,
            key=key,
            service=section.service,
            service_label=section.service_label,
            services=None if section.services is None else frozenset(section.services),
            heartbeat_alert=section.heartbeat_alert,
        ),
        [],
    )


def _heartbeat(service: object) -> object:
    """A service section's `heartbeat` (None if it has none)."""
    return getattr(service, "heartbeat", None)
