"""edged configuration: TOML, every setting with a sane default (docs/edged.md)."""

from __future__ import annotations

import dataclasses
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["DEFAULT_PATH", "Config", "ConfigError", "load_config"]

DEFAULT_PATH = Path("/etc/bifente/edged.toml")


class ConfigError(ValueError):
    """The configuration file is unreadable or has a bad value; the message says which."""


@dataclass(frozen=True)
class Config:
    """Every setting of the daemon (TOML sections flatten to these names)."""

    # [server]
    host: str = "0.0.0.0"  # noqa: S104 - a LAN appliance: clinic software reaches it
    port: int = 4443
    max_message_bytes: int = 1 << 20
    idle_timeout: float = 300.0
    rate_per_second: float = 20.0
    rate_burst: int = 40
    max_connections_per_client: int = 4
    # Accept-time caps (edged/api/gate.py, docs/security.md "Network exposure")
    max_connections: int = 256
    max_handshakes: int = 32
    max_unpaired: int = 64
    max_unpaired_per_prefix: int = 8  # per IPv4 /24 or IPv6 /64
    max_per_paired_address: int = 16  # sockets from an address seen paired (outside the above)
    handshake_timeout: float = 10.0  # TLS, then the WebSocket upgrade, each
    unpaired_idle_timeout: float = 150.0  # longer than a pairing code lives (120 s)
    # [cards]
    card_timeout: float = 30.0
    pin_timeout: float = 30.0
    pcsc: bool = True
    terminal: str = ""  # serial device of the bifente terminal, e.g. /dev/bifente-terminal
    # Non-repudiation signatures are confirmed on the terminal one by one, unless the holder
    # accepts a bounded batch there: at most sign_batch_count within sign_batch_minutes
    # (docs/security.md). 0 keeps the batch mode off (the default).
    sign_batch_count: int = 0
    sign_batch_minutes: float = 0.0
    # [pairing]
    # A physical action (F1 twice on the terminal, or `bifente admin open-pairing` on the
    # daemon's machine) lets pairings through the network-wide lockout this long (review L1,
    # docs/pairing.md "The pairing window").
    pairing_window_seconds: float = 120.0
    # [state]
    state_dir: Path = Path("/var/lib/bifente")
    # Fallback state key file when there is no systemd credential (edged/state/keywrap.py);
    # empty: $BIFENTE_STATE_KEY_FILE, else $XDG_CONFIG_HOME/bifente/state.key.
    state_key_file: str = ""
    # New durable work (mail, DMP feeds, uploads) is refused when less than this much, or 5 %
    # of the file system, would stay free (edged/state/space.py).
    min_free_mb: int = 64
    # [discovery]
    mdns: bool = True
    name: str = ""  # instance name; default bifente-<hostname>
    model: str = "bifente"
    mdns_interfaces: tuple[str, ...] = ()  # empty: all
    # [log]
    log_level: str = "info"
    # [mail], [proxy], [dmp]: validated by their own services (edged/services/*.py)
    mail: dict[str, Any] = field(default_factory=dict)
    proxy: dict[str, Any] = field(default_factory=dict)
    dmp: dict[str, Any] = field(default_factory=dict)
    # [limits."CLIENT NAME"]: higher limits for one paired client (edged/limits.py)
    limits: dict[str, Any] = field(default_factory=dict)
    # wiring for demos and tests
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    def with_overrides(self, **changes: Any) -> Config:
        """A copy with some settings changed."""
        return dataclasses.replace(self, **changes)


_SECTIONS = {
    "server": ("host", "port", "max_message_bytes", "idle_timeout", "rate_per_second",
               "rate_burst", "max_connections_per_client", "max_connections", "max_handshakes",
               "max_unpaired", "max_unpaired_per_prefix", "max_per_paired_address",
               "handshake_timeout",
               "unpaired_idle_timeout"),
    "cards": ("card_timeout", "pin_timeout", "pcsc", "terminal", "sign_batch_count",
              "sign_batch_minutes"),
    "pairing": ("pairing_window_seconds",),
    "state": ("state_dir", "state_key_file", "min_free_mb"),
    "discovery": ("mdns", "name", "model", "mdns_interfaces"),
    "log": ("log_level",),
}
_RAW_SECTIONS = ("mail", "proxy", "dmp", "limits")  # kept as tables, checked by their owner
_LOG_LEVELS = ("debug", "info", "warning", "error")


def load_config(path: Path | None) -> Config:
    """Read the TOML file (None: defaults, with BIFENTE_STATE_DIR honoured)."""
    values: dict[str, Any] = {}
    if path is not None:
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise ConfigError(f"cannot read {path}: {exc.strerror}") from exc
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: {exc}") from exc
        except UnicodeDecodeError as exc:  # TOML v1.0.0: a document is UTF-8 text
            raise ConfigError(f"{path}: not UTF-8 text (byte {exc.start})") from exc
        except RecursionError as exc:  # tomllib recurses per nested array / inline table
            raise ConfigError(f"{path}: nested too deep") from exc
        for section, body in data.items():
            if section in _RAW_SECTIONS and isinstance(body, dict):
                values[section] = dict(body)
                continue
            if section not in _SECTIONS or not isinstance(body, dict):
                raise ConfigError(f"{path}: unknown section [{section}]")
            for key, value in body.items():
                if key not in _SECTIONS[section]:
                    raise ConfigError(f"{path}: unknown setting {section}.{key}")
                values[key] = value
    if "state_dir" not in values and os.environ.get("BIFENTE_STATE_DIR"):
        values["state_dir"] = os.environ["BIFENTE_STATE_DIR"]
    defaults = Config()
    for key, value in list(values.items()):
        if key in _RAW_SECTIONS:
            continue
        expected = type(getattr(defaults, key))
        if isinstance(getattr(defaults, key), Path):
            if not isinstance(value, str) or not value:
                raise ConfigError(f"{key} must be a path")
            values[key] = Path(value)
        elif expected is tuple:
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise ConfigError(f"{key} must be a list of strings")
            values[key] = tuple(value)
        elif expected is float and isinstance(value, int) and not isinstance(value, bool):
            values[key] = float(value)
        elif not isinstance(value, expected) or isinstance(value, bool) != (expected is bool):
            raise ConfigError(f"{key} must be {expected.__name__}, got {value!r}")
    config = Config(**values)
    if not 0 <= config.port <= 65535:
        raise ConfigError("port must be 0..65535")
    if config.log_level not in _LOG_LEVELS:
        raise ConfigError(f"log_level must be one of {', '.join(_LOG_LEVELS)}")
    if min(config.max_connections, config.max_handshakes, config.max_unpaired,
           config.max_unpaired_per_prefix, config.max_per_paired_address) < 1 \
            or config.handshake_timeout <= 0:
        raise ConfigError("connection caps must be at least 1 and handshake_timeout positive")
    if config.min_free_mb < 0:
        raise ConfigError("min_free_mb must be 0 or more")
    if config.max_message_bytes < 4096:
        raise ConfigError("max_message_bytes must be at least 4096")
    if not 0 <= config.sign_batch_count <= 100 or not 0 <= config.sign_batch_minutes <= 60:
        raise ConfigError("sign_batch_count must be 0..100 and sign_batch_minutes 0..60")
    if not 10 <= config.pairing_window_seconds <= 600:
        raise ConfigError("pairing_window_seconds must be 10..600")
    _check_limits(config.limits)
    return config


# The settings a [limits."NAME"] table may raise (edged/limits.py applies them).
_LIMIT_KEYS = {"rate_per_second": (int, float), "rate_burst": (int,), "max_connections": (int,),
               "prompt_burst": (int,), "prompts_per_minute": (int, float)}


def _check_limits(table: dict[str, Any]) -> None:
    """Raise ConfigError for a [limits] table that is not {name: {known key: positive}}."""
    for name, body in table.items():
        if not isinstance(body, dict):
            raise ConfigError(f'[limits."{name}"] must be a table')
        for key, value in body.items():
            if key not in _LIMIT_KEYS:
                raise ConfigError(f'unknown setting limits."{name}".{key}')
            if isinstance(value, bool) or not isinstance(value, _LIMIT_KEYS[key]) or value <= 0:
                raise ConfigError(f'limits."{name}".{key} must be a positive number')
