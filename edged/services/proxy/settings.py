"""The [proxy] table of edged's config, checked (docs/messaging.md, "The encrypting proxy")."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bifente.edged.config import ConfigError

__all__ = ["ProxyConfigError", "ProxySettings"]


class ProxyConfigError(ConfigError):
    """A bad [proxy] setting; the message names it (edged exits with a configuration error)."""


@dataclass(frozen=True)
class ProxySettings:
    """The [proxy] table, checked."""

    domain: str
    smtp_host: str
    smtp_port: int
    ca_file: Path  # trusted for the operator's TLS, the directory's TLS and the recipients
    directory_url: str
    account_password_file: Path
    account: str = ""  # default structure@<domain>
    smtp_server_name: str = ""  # TLS name of the operator; default smtp.<domain>
    host: str = "0.0.0.0"  # noqa: S104 - the structure's LAN
    port: int = 1587
    seal_secret_file: Path | None = None
    trust_intermediates: tuple[Path, ...] = ()
    max_failures: int = 5
    lockout_seconds: float = 900.0
    max_message_bytes: int = 25 * 1024 * 1024
    mode: str = "gcm"

    _REQUIRED = ("domain", "smtp_host", "smtp_port", "ca_file", "directory_url",
                 "account_password_file")

    @classmethod
    def from_table(cls, table: dict[str, Any]) -> ProxySettings:
        """Validate the raw TOML table; ProxyConfigError names the bad key."""
        known = {f for f in cls.__dataclass_fields__ if not f.startswith("_")} | {"enabled"}
        for key in table:
            if key not in known:
                raise ProxyConfigError(f"unknown setting proxy.{key}")
        for key in cls._REQUIRED:
            if key not in table:
                raise ProxyConfigError(f"proxy.{key} is required")
        values: dict[str, Any] = {}
        for key, value in table.items():
            if key == "enabled":
                if not isinstance(value, bool):
                    raise ProxyConfigError("proxy.enabled must be true or false")
                continue
            if key in ("ca_file", "account_password_file", "seal_secret_file"):
                if not isinstance(value, str) or not value:
                    raise ProxyConfigError(f"proxy.{key} must be a path")
                values[key] = Path(value)
            elif key == "trust_intermediates":
                if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                    raise ProxyConfigError("proxy.trust_intermediates must be a list of paths")
                values[key] = tuple(Path(v) for v in value)
            elif key in ("smtp_port", "port", "max_failures", "max_message_bytes"):
                if not isinstance(value, int) or isinstance(value, bool):
                    raise ProxyConfigError(f"proxy.{key} must be an integer")
                values[key] = value
            elif key == "lockout_seconds":
                if not isinstance(value, int | float) or isinstance(value, bool):
                    raise ProxyConfigError("proxy.lockout_seconds must be a number")
                values[key] = float(value)
            else:
                if not isinstance(value, str):
                    raise ProxyConfigError(f"proxy.{key} must be a string")
                values[key] = value
        settings = cls(**values)
        if not re.fullmatch(r"[a-z0-9.-]+\.[a-z0-9-]+", settings.domain):
            raise ProxyConfigError(f"proxy.domain is not a mail domain: {settings.domain!r}")
        for key in ("smtp_port", "port"):
            if not 0 <= getattr(settings, key) <= 65535:
                raise ProxyConfigError(f"proxy.{key} must be 0..65535")
        if not settings.directory_url.startswith("https://"):
            raise ProxyConfigError("proxy.directory_url must be an https:// URL")
        if settings.mode not in ("gcm", "cbc"):
            raise ProxyConfigError("proxy.mode must be gcm or cbc")
        if settings.max_failures < 1:
            raise ProxyConfigError("proxy.max_failures must be at least 1")
        if settings.lockout_seconds <= 0:
            raise ProxyConfigError("proxy.lockout_seconds must be positive")
        if settings.max_message_bytes < 4096:
            raise ProxyConfigError("proxy.max_message_bytes must be at least 4096")
        return settings

    @property
    def relay_account(self) -> str:
        return self.account or f"structure@{self.domain}"

    @property
    def server_name(self) -> str:
        return self.smtp_server_name or f"smtp.{self.domain}"
