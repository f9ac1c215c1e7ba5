"""The config: the TOML file read into a checked, frozen `Config`, and the channels' settings.

In: a path (`load`) or a parsed table (`from_dict`). Out: a `Config`, or a `ConfigError` that
names the file and the key of every problem. It never starts anything, opens no socket and
touches no database: reading a config has no effect but the result.
"""

from pagerd.config.model import (
    EX_CONFIG,
    Config,
    ConfigError,
    Invalid,
    Limits,
    from_dict,
    load,
    load_state_dir,
    parse_duration,
)

__all__ = [
    "EX_CONFIG",
    "Config",
    "ConfigError",
    "Invalid",
    "Limits",
    "from_dict",
    "load",
    "load_state_dir",
    "parse_duration",
]
