"""The configuration file: TOML, structured with cattrs, validated before anything starts.

Every problem is reported at once, each with the key path an operator can find in the file
(`policies.payments-oncall.levels[0].targets[1]: not an E.164 phone number`).
"""

from __future__ import annotations

import contextlib
import grp
import hashlib
import os
import pwd
import re
import stat
from pathlib import Path
from typing import Any, Final

import attrs
import cattrs
import msgspec
import rtoml
from cattrs.cols import is_mutable_sequence, list_structure_factory
from cattrs.errors import (
    ClassValidationError,
    ForbiddenExtraKeysError,
    IterableValidationError,
)

from pager.domain import (
    CHANNELS,
    DEFAULT_ACK_TIMEOUT,
    SLACK_APP,
    Level,
    Policy,
    Target,
    is_service_name,
)
from pager.people import Person
from pager.schedules import Schedule
from pager.templates import DEFAULT_TEMPLATES, Templates
from pager.weekly import Weekly
from pagerd.access.peers import Access
from pagerd.config.channels import (
    Channel,
    ChannelSection,
    SlackSettings,
    build_channel,
    target_problem,
)
from pagerd.config.cluster import ClusterConfig, backend_of, build_cluster
from pagerd.config.console import ConsoleConfig, build_console
from pagerd.config.durations import Duration, Invalid, parse_duration
from pagerd.config.http import (
    FrontConfig,
    HttpConfig,
    Integration,
    build_http,
    build_integrations,
)
from pagerd.config.people import (
    MAX_GAP_WEEKS,
    MAX_MAINTENANCE_WINDOWS,
    build_maintenance,
    build_people,
    build_schedules,
    toml_type,
)
from pagerd.config.storage import StorageConfig, build_storage
from pagerd.config.templates import build_templates

__all__ = [
    "EX_CONFIG",
    "Config",
    "ConfigError",
    "Invalid",
    "load",
    "load_state_dir",
    "parse_duration",
]

EX_CONFIG: Final = 78


class ConfigError(Exception):
    def __init__(self, path: Path, errors: list[str]) -> None:
        super().__init__(f"{path}: {len(errors)} error(s)")
        self.path = path
        self.errors = errors

    def report(self) -> str:
        lines = [f"pagerd: invalid config {self.path}:"]
        lines += [f"  {error}" for error in self.errors]
        return "\n".join(lines)


_DEFAULT_ACK: Final = Duration(DEFAULT_ACK_TIMEOUT)
_IDLE_TIMEOUT: Final = Duration(300.0)
_WRITE_TIMEOUT: Final = Duration(30.0)
_REQUEST_TIMEOUT: Final = Duration(30.0)


# The file's shape, as written. ------------------------------------------------------------


@attrs.frozen
class DaemonSection:
    socket: str = "/run/pager/pager.sock"
    state_dir: str = "/var/lib/pager"
    allow_users: list[str] | None = None
    allow_groups: list[str] | None = None
    max_connections: int = 1024
    idle_timeout: Duration = _IDLE_TIMEOUT
    write_timeout: Duration = _WRITE_TIMEOUT
    request_timeout: Duration = _REQUEST_TIMEOUT
    keep_history: Duration | None = None
    allow_no_services: bool = False
    gap_weeks: int = 4


@attrs.frozen
class LogSection:
    path: str | None = None


@attrs.frozen
class ChannelsSection:
    email: ChannelSection | None = None
    sms: ChannelSection | None = None
    slack: ChannelSection | None = None
    webhook: ChannelSection | None = None
    log: LogSection = LogSection()


@attrs.frozen
class LevelSection:
    targets: list[Target]
    ack_timeout: Duration = _DEFAULT_ACK


@attrs.frozen
class PolicySection:
    levels: list[LevelSection]
    repeat: int = 0
    ack_expiry: Duration | None = None
    allow_resolve: bool = True


@attrs.frozen
class ServiceSection:
    policy: str
    heartbeat: Duration | None = None
    maintenance: tuple[Weekly, ...] = ()


@attrs.frozen
class MetricsSection:
    listen: str | None = None


@attrs.frozen
class DeliverySection:
    workers: int | None = None


@attrs.frozen
class ConfigFile:
    daemon: DaemonSection = DaemonSection()
    metrics: MetricsSection = MetricsSection()
    delivery: DeliverySection = DeliverySection()
    channels: ChannelsSection = ChannelsSection()
    policies: dict[str, PolicySection] = attrs.Factory(dict)
    services: dict[str, ServiceSection] = attrs.Factory(dict)


# What the daemon runs on. ------------------------------------------------------------------


@attrs.frozen
class Limits:
    """What one client may take: past `max_connections` new ones get `busy`; a connection that
    sends nothing for `idle_timeout`, takes `request_timeout` to send one line, or does not read
    its replies for `write_timeout`, is closed."""

    max_connections: int = 1024
    idle_timeout: float = 300.0
    write_timeout: float = 30.0
    request_timeout: float = 30.0


@attrs.frozen
class Config:
    path: Path
    socket: Path
    state_dir: Path
    log_path: Path
    channels: dict[str, Channel]
    policies: dict[str, Policy]
    services: dict[str, str]
    """Each configured service, with the name of its policy."""
    heartbeats: dict[str, float] = attrs.Factory(dict)
    """Each service with a `heartbeat`: how often it must check in, in seconds."""
    access: Access = attrs.Factory(Access)
    metrics_listen: tuple[str, int] | None = None
    """Where `GET /metrics` is served; None (the default) serves it nowhere."""
    limits: Limits = attrs.Factory(Limits)
    keep_history: float | None = None
    """How long a closed incident's history is kept; None (the default) keeps it for ever."""
    http: HttpConfig = attrs.Factory(HttpConfig)
    integrations: dict[str, Integration] = attrs.Factory(dict)
    people: dict[str, Person] = attrs.Factory(dict)
    """`[people.*]`: who can be paged as `person:NAME`, and how."""
    schedules: dict[str, Schedule] = attrs.Factory(dict)
    """`[schedules.*]`: who is on call when, paged as `schedule:NAME`."""
    maintenance: dict[str, tuple[Weekly, ...]] = attrs.Factory(dict)
    """Each service with `[[services.X.maintenance]]`: its recurring windows."""
    gap_weeks: int = 4
    """How far ahead `pagerd --check` and a reload look for gaps (`daemon.gap_weeks`)."""
    templates: Templates = DEFAULT_TEMPLATES
    """The notification texts (`[templates]`): the defaults for any the file leaves out."""
    console: ConsoleConfig | None = None
    """The web console's users and sessions; None (no `[console]`): the console is off."""
    delivery_workers: int | None = None
    """`[delivery] workers`: processes that send (0: none, sent by the daemon's own process);
    None (not set) is one for each core."""
    storage: StorageConfig = attrs.Factory(StorageConfig)
    """`[storage]`: SQLite in the state directory (the default), or a shared PostgreSQL."""
    sha256: str = ""
    """Of the file's bytes, to tell which version of it is running."""
    cluster_sha256: str = ""
    """Of what every node of a cluster must agree on (`CLUSTER_SECTIONS`, as parsed): each
    node publishes it, and a node applies "a service removed from the config has its open
    incident closed" only while every live node's is the same."""
    cluster: ClusterConfig | None = None
    """`[cluster]`: this node among several sharing the store; None (SQLite): alone."""

    def policy_of(self, service: str) -> Policy:
        return self.policies[self.services[service]]

    def front(self) -> FrontConfig:
        """What the HTTP front door needs of this config (its front processes get only this)."""
        return FrontConfig.of(self.http, self.integrations, self.services)


def _strict(kind: type, noun: str) -> Any:
    def structure(value: Any, _: type) -> Any:
        # TOML has real types; a number where a string belongs is a mistake, not a conversion.
        if type(value) is not kind:
            raise Invalid(f"expected {noun}, got {toml_type(value)}")
        if isinstance(value, str) and "\x00" in value:
            # No file name, address or header holds one; as a path it fails only when used.
            raise Invalid("must not contain a NUL character")
        return value

    return structure


def _target(value: Any, _: type) -> Target:
    if not isinstance(value, str):
        raise Invalid(f"expected a string like email:ADDRESS or sms:+E164, got {toml_type(value)}")
    try:
        return Target.parse(value)
    except ValueError as exc:
        raise Invalid(str(exc)) from None


def _duration(value: Any, _: type) -> Duration:
    if not isinstance(value, str):
        raise Invalid(f'expected a duration string like "15m", got {toml_type(value)}')
    return Duration(parse_duration(value))


def _strict_list(kind: type, converter: cattrs.BaseConverter) -> Any:
    structure_items = list_structure_factory(kind, converter)

    def structure(value: Any, _: type) -> Any:
        # Without this, a string where an array belongs would be split into characters.
        if not isinstance(value, list):
            raise Invalid(f"expected an array, got {toml_type(value)}")
        return structure_items(value, kind)

    return structure


_converter = cattrs.Converter(forbid_extra_keys=True, detailed_validation=True)
_converter.register_structure_hook(str, _strict(str, "a string"))
_converter.register_structure_hook(int, _strict(int, "an integer"))
_converter.register_structure_hook(bool, _strict(bool, "a boolean"))
_converter.register_structure_hook(Target, _target)
_converter.register_structure_hook(Duration, _duration)
_converter.register_structure_hook_factory(is_mutable_sequence, _strict_list)


def _errors(exc: BaseException, path: str) -> list[str]:
    """Flatten cattrs' exception groups into `key.path: message` lines."""
    if isinstance(exc, ForbiddenExtraKeysError):
        return [f"{_join(path, key)}: unknown key" for key in sorted(exc.extra_fields)]
    if isinstance(exc, ClassValidationError | IterableValidationError):
        found: list[str] = []
        with_notes, without = exc.group_exceptions()
        for sub, note in with_notes:
            step = note.name if hasattr(note, "name") else note.index
            found += _errors(sub, _join(path, step))
        for sub in without:
            found += _errors(sub, path)
        return found
    return [f"{path or '(top level)'}: {_message(exc)}"]


def _message(exc: BaseException) -> str:
    if isinstance(exc, Invalid):
        return str(exc)
    if isinstance(exc, KeyError):
        return "required key missing"
    if isinstance(exc, AttributeError | TypeError):
        return "expected a table"
    return f"invalid value ({exc})"


_BARE_KEY: Final = re.compile(r"[A-Za-z0-9_-]+")


def _join(path: str, step: object) -> str:
    if isinstance(step, int):
        return f"{path}[{step}]"
    key = str(step)
    if _BARE_KEY.fullmatch(key) is None:
        key = '"' + key.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return f"{path}.{key}" if path else key


CLUSTER_SECTIONS: Final = ("services", "policies", "schedules", "people", "templates")
"""The sections that say who is paged, for which service, when and in which words: the nodes of
a cluster must agree on them (`Config.cluster_sha256`). The rest may differ by node and say
nothing of what is paged: `[cluster] node_name`, where a node keeps its files, listens and
reaches the database, and how its channels reach their providers (addresses, credentials'
files, headers)."""


def cluster_sha256(data: dict[str, Any]) -> str:
    """The hash of `CLUSTER_SECTIONS` of a parsed file: the same for two files that say the
    same of them, however written (order of keys, quoting, comments, whitespace)."""
    shared = {key: data[key] for key in CLUSTER_SECTIONS if key in data}
    return hashlib.sha256(msgspec.json.encode(shared, order="sorted")).hexdigest()


def load(path: Path) -> Config:
    """Read and validate the config file at `path`; raise `ConfigError` listing every problem."""
    content, data = _read(path)
    return attrs.evolve(
        from_dict(data, path),
        sha256=hashlib.sha256(content).hexdigest(),
        cluster_sha256=cluster_sha256(data),
    )


def load_state_dir(path: Path) -> Path:
    """The `daemon.state_dir` the config file at `path` names, and nothing else of it.

    For `pagerd backup` and `restore`, which run from a timer or a shell as pagerd's user,
    outside systemd: building the whole config would read the channels' secrets (a
    `*_credential` is only readable under systemd) for a command that never sends anything.
    The file must still parse and its `[daemon]` table be valid, or `ConfigError`.
    """
    _, data = _read(path)
    daemon, errors = _section(data.get("daemon", {}), DaemonSection, "daemon")
    if daemon is None:
        raise ConfigError(path, errors)
    state_dir = path.resolve().parent / daemon.state_dir
    if state_dir.exists() and not state_dir.is_dir():
        raise ConfigError(path, [f"daemon.state_dir: {state_dir} exists and is not a folder"])
    return Path(os.path.normpath(state_dir))


def names_shared_storage(path: Path) -> bool:
    """Whether the config file at `path` (already read by `load_state_dir`) keeps its state in a
    store several nodes share (`[storage] backend = "postgresql"`): `pagerd rotate-key` then
    says to copy the key to every node. Nothing else of `[storage]` is read (its DSN may be a
    credential only systemd can read)."""
    _, data = _read(path)
    storage = data.get("storage")
    return isinstance(storage, dict) and storage.get("backend") == "postgresql"


def _read(path: Path) -> tuple[bytes, dict[str, Any]]:
    try:
        content = path.read_bytes()
        # rtoml parses a 100,000-service file in a sixth of tomllib's time: restarts are faster.
        return content, rtoml.loads(content.decode("utf-8"))
    except OSError as exc:
        raise ConfigError(path, [f"cannot read: {exc.strerror or exc}"]) from None
    except UnicodeDecodeError:
        raise ConfigError(path, ["not UTF-8 text"]) from None
    except rtoml.TomlParsingError as exc:
        raise ConfigError(path, [f"invalid TOML: {exc}"]) from None


def from_dict(data: dict[str, Any], path: Path) -> Config:
    """Validate the parsed file. Each section is structured on its own, and the checks between
    sections run on whatever could be structured: one mistake does not hide another (a bad
    phone number in a policy still lets a service's reference to a missing policy be seen)."""
    data = dict(data)
    cluster, cluster_errors = build_cluster(data.pop("cluster", None), backend_of(data), _section)
    services, service_errors = _services(data.pop("services", {}))
    policies, broken_policies, policy_errors = _policies(data.pop("policies", {}))
    channels, given_channels, channel_errors = _channels(data.pop("channels", {}))
    people, given_people, people_errors = build_people(
        data.pop("people", {}), given_channels, _join
    )
    schedules, given_schedules, schedule_errors = build_schedules(
        data.pop("schedules", {}), given_people, _join
    )
    base = path.resolve().parent
    http, http_errors = build_http(data.pop("http", {}), base, _section, _host_port)
    integrations, integration_errors = build_integrations(
        data.pop("integrations", {}), base, os.environ, services, _section, _join
    )
    templates, template_errors = build_templates(data.pop("templates", {}))
    storage, storage_errors = build_storage(data.pop("storage", {}), base, os.environ, _section)
    console: ConsoleConfig | None = None
    console_errors: list[str] = []
    if "console" in data:
        console, console_errors = build_console(data.pop("console"), _section, _join)
    errors: list[str] = []
    sections: dict[str, Any] = {}
    for key, value in data.items():
        kind = _TOP_SECTIONS.get(key)
        if kind is None:
            errors.append(f"{_join('', key)}: unknown key")
            continue
        section, found = _section(value, kind, key)
        errors += found
        if section is not None:
            sections[key] = section
    # In the order a file has them.
    errors += channel_errors + people_errors + schedule_errors + policy_errors + service_errors
    errors += http_errors + integration_errors + template_errors + console_errors + storage_errors
    errors += cluster_errors
    raw = ConfigFile(channels=channels, policies=policies, services=services, **sections)
    # Whether the file means to have no services cannot be told if [services] or [daemon] has
    # errors: theirs are reported, not one more about it.
    unsure = bool(service_errors) or ("daemon" in data and "daemon" not in sections)
    built, found = _check(
        raw, path.resolve().parent, given_channels, broken_policies, unsure,
        given_people, given_schedules,
    )  # fmt: skip
    errors += found + _app_people(people, built.get("slack"))
    if errors:
        raise ConfigError(path, errors)
    return attrs.evolve(
        _build(raw, path, built),
        http=http,
        integrations=integrations,
        templates=templates,
        console=console,
        storage=storage,
        people=people,
        schedules=schedules,
        maintenance={n: s.maintenance for n, s in raw.services.items() if s.maintenance},
        gap_weeks=raw.daemon.gap_weeks,
        cluster=cluster,
    )


_TOP_SECTIONS: Final[dict[str, type]] = {
    "daemon": DaemonSection,
    "metrics": MetricsSection,
    "delivery": DeliverySection,
}
MAX_WORKERS: Final = 64


def _section(value: Any, kind: type, at: str) -> tuple[Any, list[str]]:
    """One table structured as `kind`, or None and every error in it."""
    if not isinstance(value, dict):
        return None, [f"{at}: expected a table, got {toml_type(value)}"]
    try:
        return _converter.structure(value, kind), []
    except Exception as exc:  # cattrs reports every problem as one exception group
        return None, _errors(exc, at)


def _policies(value: Any) -> tuple[dict[str, PolicySection], dict[str, Any], list[str]]:
    """`[policies.*]`, each on its own; those with errors are given back, as written, so that a
    service naming one is not also reported as naming a missing policy, and so that the rest
    of each is still checked."""
    if not isinstance(value, dict):
        return {}, {}, [f"policies: expected a table, got {toml_type(value)}"]
    policies: dict[str, PolicySection] = {}
    broken: dict[str, Any] = {}
    errors: list[str] = []
    for name, table in value.items():
        policy, found = _section(table, PolicySection, _join("policies", name))
        if policy is None:
            broken[name] = table
            errors += found
        else:
            policies[name] = policy
    return policies, broken, errors


def _channels(value: Any) -> tuple[ChannelsSection, set[str], list[str]]:
    """`[channels.*]`, each on its own; the names given are given back even when a section has
    errors, so that its targets are not also reported as naming an unconfigured channel."""
    if not isinstance(value, dict):
        return ChannelsSection(), set(), [f"channels: expected a table, got {toml_type(value)}"]
    sections: dict[str, Any] = {}
    given: set[str] = set()
    errors: list[str] = []
    for name, table in value.items():
        at = _join("channels", name)
        if name == "log":
            kind: type = LogSection
        elif name in CHANNELS:
            kind = ChannelSection
            given.add(name)
        else:
            errors.append(f"{at}: unknown key")
            continue
        section, found = _section(table, kind, at)
        errors += found
        if section is not None:
            sections[name] = section
    return ChannelsSection(**sections), given, errors


def _services(value: Any) -> tuple[dict[str, ServiceSection], list[str]]:
    """`[services.*]`, structured by hand: with 100,000 services this is a tenth of what cattrs
    takes for the same checks, and the errors read the same."""
    if not isinstance(value, dict):
        return {}, [f"services: expected a table, got {toml_type(value)}"]
    services: dict[str, ServiceSection] = {}
    errors: list[str] = []
    for name, section in value.items():
        if type(section) is dict and len(section) == 1 and type(section.get("policy")) is str:
            services[name] = ServiceSection(section["policy"])  # the common case, quickly
            continue
        at = _join("services", name)
        if not isinstance(section, dict):
            errors.append(f"{at}: expected a table, got {toml_type(section)}")
            continue
        keys = {"policy", "heartbeat", "maintenance"}
        errors += [f"{_join(at, key)}: unknown key" for key in sorted(section.keys() - keys)]
        maintenance: tuple[Weekly, ...] = ()
        if "maintenance" in section:
            maintenance = build_maintenance(
                section["maintenance"], f"{at}.maintenance", _join, errors
            )
        heartbeat: Duration | None = None
        if "heartbeat" in section:
            try:
                heartbeat = _duration(section["heartbeat"], Duration)
            except Invalid as exc:
                errors.append(f"{at}.heartbeat: {exc}")
        policy = section.get("policy")
        if policy is None:
            errors.append(f"{at}.policy: required key missing")
        elif type(policy) is not str:
            errors.append(f"{at}.policy: expected a string, got {toml_type(policy)}")
        else:
            services[name] = ServiceSection(policy, heartbeat, maintenance)
    windows = sum(len(section.maintenance) for section in services.values())
    if windows > MAX_MAINTENANCE_WINDOWS:
        errors.append(
            f"services: {windows} [[services.X.maintenance]] windows in all, at most "
            f"{MAX_MAINTENANCE_WINDOWS} (every status reads them: give services that share "
            "windows fewer, wider ones)"
        )
    return services, errors


def _check(
    raw: ConfigFile,
    base: Path,
    configured: set[str],
    broken_policies: dict[str, Any],
    unsure_of_services: bool = False,
    people: set[str] | None = None,
    schedules: set[str] | None = None,
) -> tuple[dict[str, Channel], list[str]]:
    """What the types alone cannot say: names, references between sections, ranges.

    `configured` are the channels given (a section with errors included: its own errors say
    what is wrong), `broken_policies` the policies given that had errors, as written: what of
    them could be read is checked too, so that every error in a policy shows in one pass.
    """
    errors: list[str] = []
    channels: dict[str, Channel] = {}
    for name in CHANNELS:
        section = getattr(raw.channels, name)
        if section is None:
            continue
        channel, found = build_channel(name, section, base)
        errors += found
        if channel is not None:
            channels[name] = channel
    for name, policy in raw.policies.items():
        levels: _Levels = [(len(lv.targets), list(enumerate(lv.targets))) for lv in policy.levels]
        errors += _policy_errors(name, policy.repeat, levels, configured, people, schedules)
        errors += _app_targets(name, levels, channels.get("slack"))
    for name, table in broken_policies.items():
        errors += _policy_errors(name, *_readable(table), configured, people, schedules)
    errors += _unknown_accounts(raw.daemon)
    if raw.channels.log.path is not None and (base / raw.channels.log.path).is_dir():
        errors.append(f"channels.log.path: {base / raw.channels.log.path} is a folder, not a file")
    # pagerd creates these folders (the log's at its first write): a file where one of them, or
    # a folder above, should be fails start or every notification, so it fails the check.
    folders = [
        ("daemon.state_dir", base / raw.daemon.state_dir),
        ("daemon.socket", (base / raw.daemon.socket).parent),
    ]
    if raw.channels.log.path is not None:  # by default in state_dir, checked already
        folders.append(("channels.log.path", (base / raw.channels.log.path).parent))
    for key, folder in folders:
        if (file := _file_in_the_way(folder)) is not None:
            errors.append(f"{key}: {file} exists and is not a folder")
    socket_path = os.fsencode(os.path.normpath(base / raw.daemon.socket))
    if len(socket_path) > _MAX_SOCKET_PATH:
        errors.append(
            f"daemon.socket: {len(socket_path)} bytes long; a Unix socket's path holds at most "
            f"{_MAX_SOCKET_PATH}"
        )
    with contextlib.suppress(OSError):  # absent: start creates it
        if not stat.S_ISSOCK((base / raw.daemon.socket).lstat().st_mode):
            errors.append(
                f"daemon.socket: {base / raw.daemon.socket} exists and is not a socket "
                "(pagerd refuses to replace it)"
            )
    if raw.daemon.max_connections < 1:
        errors.append("daemon.max_connections: must be 1 or more")
    workers = raw.delivery.workers
    if workers is not None and not 0 <= workers <= MAX_WORKERS:
        errors.append(f"delivery.workers: must be 0 to {MAX_WORKERS}")
    if not 0 <= raw.daemon.gap_weeks <= MAX_GAP_WEEKS:
        errors.append(f"daemon.gap_weeks: must be 0 (no gap check) to {MAX_GAP_WEEKS}")
    if raw.metrics.listen is not None and _host_port(raw.metrics.listen) is None:
        errors.append('metrics.listen: expected HOST:PORT, like "127.0.0.1:9464"')
    if not raw.services and not unsure_of_services and not raw.daemon.allow_no_services:
        # An empty or truncated file (a failed deploy) would otherwise load, and a reload of it
        # close every open incident as "service removed": all paging would end without a word.
        errors.append(
            "services: none configured: a pager with no services pages nobody (to mean it, "
            "set daemon.allow_no_services = true)"
        )
    for name, service in raw.services.items():
        if not is_service_name(name):
            errors.append(
                f"{_join('services', name)}: a service name is 1 to 128 letters, digits, "
                "'.', '_' or '-'"
            )
        if service.policy not in raw.policies and service.policy not in broken_policies:
            errors.append(f"{_join('services', name)}.policy: no policy named {service.policy!r}")
    return channels, errors


_Levels = list[tuple[int | None, list[tuple[int, Target]]]]
"""Per level: how many targets it has (None if its `targets` is not an array), and those that
could be read, with their index."""


def _policy_errors(
    name: str,
    repeat: int | None,
    levels: _Levels | None,
    configured: set[str],
    people: set[str] | None = None,
    schedules: set[str] | None = None,
) -> list[str]:
    """A policy's names, ranges and references to channels; None for what could not be read
    (its own error is already reported)."""
    at = _join("policies", name)
    errors: list[str] = []
    if not is_service_name(name):
        errors.append(f"{at}: a policy name is 1 to 128 letters, digits, '.', '_' or '-'")
    if levels is not None and not levels:
        errors.append(f"{at}.levels: a policy needs at least one level")
    if repeat is not None and repeat < 0:
        errors.append(f"{at}.repeat: must be 0 or more")
    for i, (count, targets) in enumerate(levels or ()):
        if count == 0:
            errors.append(f"{at}.levels[{i}].targets: a level needs at least one target")
        for j, target in targets:
            if target.is_reference:
                known = (people if target.channel == "person" else schedules) or set()
                if target.address not in known:
                    section = "people" if target.channel == "person" else "schedules"
                    errors.append(
                        f"{at}.levels[{i}].targets[{j}]: no {target.channel} named "
                        f"{target.address!r} (add [{section}.{target.address}])"
                    )
            elif target.channel not in configured:
                errors.append(
                    f"{at}.levels[{i}].targets[{j}]: channel {target.channel!r} is not "
                    f"configured (add a [channels.{target.channel}] section)"
                )
            elif (problem := target_problem(target)) is not None:
                errors.append(f"{at}.levels[{i}].targets[{j}]: {problem}")
    return errors


_NEEDS_APP: Final = (
    "slack:app needs a Slack app: channels.slack.bot_token_file (or _credential) and"
    " channels.slack.channel"
)


def _without_app(slack: Channel | None) -> bool:
    """A `slack` channel delivered by Slack without its bot token: `slack:app` cannot be sent
    (none, or the log, can take it)."""
    if slack is None or slack.transport != "slack":
        return False
    settings = slack.settings
    return not (isinstance(settings, SlackSettings) and settings.bot_token is not None)


def _app_targets(name: str, levels: _Levels, slack: Channel | None) -> list[str]:
    """`slack:app` needs a Slack app: a `slack` channel with its bot token (or the log)."""
    if not _without_app(slack):
        return []
    return [
        f"{_join('policies', name)}.levels[{i}].targets[{j}]: {_NEEDS_APP}"
        for i, (_, targets) in enumerate(levels)
        for j, target in targets
        if target == Target("slack", SLACK_APP)
    ]


def _app_people(people: dict[str, Person], slack: Channel | None) -> list[str]:
    """A person's `slack = "app"` needs the Slack app, as a policy's `slack:app` does."""
    if not _without_app(slack):
        return []
    return [
        f"{_join('people', name)}.slack: {_NEEDS_APP}"
        for name, person in people.items()
        if Target("slack", SLACK_APP) in person.contacts
    ]


def _readable(table: Any) -> tuple[int | None, _Levels | None]:
    """What can be read of a policy that did not structure: `repeat` if an integer, and each
    level's targets that parse; the rest has its own error already."""
    if not isinstance(table, dict):
        return None, None
    repeat = table.get("repeat", 0)
    raw_levels = table.get("levels")
    levels: _Levels | None = None
    if isinstance(raw_levels, list):
        levels = []
        for level in raw_levels:
            targets = level.get("targets") if isinstance(level, dict) else None
            if not isinstance(targets, list):
                levels.append((None, []))
                continue
            readable: list[tuple[int, Target]] = []
            for j, text in enumerate(targets):
                with contextlib.suppress(ValueError, TypeError, AttributeError):
                    readable.append((j, Target.parse(text)))
            levels.append((len(targets), readable))
    return (repeat if type(repeat) is int else None), levels


def _file_in_the_way(folder: Path) -> Path | None:
    """The nearest of `folder` and the folders above it that exists, if it is not a folder."""
    for path in (folder, *folder.parents):
        if path.exists():
            return None if path.is_dir() else path
    return None


def _unknown_accounts(daemon: DaemonSection) -> list[str]:
    """A name in `allow_users` / `allow_groups` that this system does not know can never match
    a peer: a typo would lock the account out without a word, so it is an error."""
    errors: list[str] = []
    for key, names, lookup, noun in (
        ("allow_users", daemon.allow_users, pwd.getpwnam, "user"),
        ("allow_groups", daemon.allow_groups, grp.getgrnam, "group"),
    ):
        for i, name in enumerate(names or ()):
            try:
                lookup(name)
            except (KeyError, ValueError):
                errors.append(f"daemon.{key}[{i}]: no {noun} named {name!r} on this system")
    return errors


_MAX_SOCKET_PATH: Final = 107  # sun_path is 108 bytes on Linux, with the final NUL


def _build(raw: ConfigFile, path: Path, channels: dict[str, Channel]) -> Config:
    base = path.resolve().parent

    def resolve(relative: str) -> Path:
        return Path(os.path.normpath(base / relative))

    state_dir = resolve(raw.daemon.state_dir)
    log_path = (
        resolve(raw.channels.log.path)
        if raw.channels.log.path is not None
        else state_dir / "notifications.jsonl"
    )
    policies = {
        name: Policy(
            levels=tuple(Level(tuple(lv.targets), float(lv.ack_timeout)) for lv in p.levels),
            repeat=p.repeat,
            ack_expiry=None if p.ack_expiry is None else float(p.ack_expiry),
            allow_resolve=p.allow_resolve,
        )
        for name, p in raw.policies.items()
    }
    return Config(
        path=path.resolve(),
        socket=resolve(raw.daemon.socket),
        state_dir=state_dir,
        log_path=log_path,
        channels=channels,
        policies=policies,
        services={name: service.policy for name, service in raw.services.items()},
        heartbeats={
            name: float(service.heartbeat)
            for name, service in raw.services.items()
            if service.heartbeat is not None
        },
        access=Access(
            users=_names(raw.daemon.allow_users),
            groups=_names(raw.daemon.allow_groups),
        ),
        metrics_listen=None if raw.metrics.listen is None else _host_port(raw.metrics.listen),
        limits=Limits(
            max_connections=raw.daemon.max_connections,
            idle_timeout=float(raw.daemon.idle_timeout),
            write_timeout=float(raw.daemon.write_timeout),
            request_timeout=float(raw.daemon.request_timeout),
        ),
        keep_history=None if raw.daemon.keep_history is None else float(raw.daemon.keep_history),
        delivery_workers=raw.delivery.workers,
    )


def _host_port(text: str) -> tuple[str, int] | None:
    host, sep, port = text.rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    if not sep or not host or not port.isascii() or not port.isdigit():
        return None
    number = int(port)
    return (host, number) if 0 < number < 65536 else None


def _names(names: list[str] | None) -> frozenset[str] | None:
    return None if names is None else frozenset(names)
