"""`operator.json`: where a running operator listens, so clients can find it."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

__all__ = ["PORTS_FILE", "DomainPorts", "OperatorInfo"]

PORTS_FILE = "operator.json"
VERSION = 1


@dataclass(frozen=True)
class DomainPorts:
    """The listeners of one operator domain."""

    submission: int  # SMTP submission: STARTTLS then AUTH PLAIN/LOGIN (RFC 6409, RFC 3207)
    relay: int  # operator-to-operator SMTP: STARTTLS with an operator client certificate
    pop3s: int  # POP3 over implicit TLS (RFC 1939, RFC 8314)
    server_name: str  # the DNS name the TLS certificate carries (smtp.<domain>)


@dataclass(frozen=True)
class OperatorInfo:
    """The content of operator.json (format documented in simulators/mail/README.md)."""

    host: str
    ca_file: str  # the test root: the only CA a client needs
    directory_url: str  # https://host:port; GET /certificate?address=...
    domains: dict[str, DomainPorts]
    trusted: tuple[str, ...]
    max_message_bytes: int
    require_smime: bool

    def to_json(self) -> str:
        """The JSON text written to operator.json."""
        return json.dumps({
            "version": VERSION, "host": self.host, "ca_file": self.ca_file,
            "directory_url": self.directory_url,
            "domains": {d: vars(p) for d, p in self.domains.items()},
            "trusted": list(self.trusted), "max_message_bytes": self.max_message_bytes,
            "require_smime": self.require_smime,
        }, indent=2) + "\n"

    def write(self, data_dir: Path) -> Path:
        """Write operator.json atomically; its path."""
        path = data_dir / PORTS_FILE
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(self.to_json(), encoding="utf-8")
        os.replace(tmp, path)
        return path

    @classmethod
    def load(cls, data_dir: str | Path) -> OperatorInfo:
        """Read operator.json from a data folder (ValueError when it is not ours)."""
        d = json.loads((Path(data_dir) / PORTS_FILE).read_text(encoding="utf-8"))
        if d.get("version") != VERSION:
            raise ValueError(f"{PORTS_FILE}: unsupported version {d.get('version')!r}")
        return cls(d["host"], d["ca_file"], d["directory_url"],
                   {k: DomainPorts(**v) for k, v in d["domains"].items()},
                   tuple(d["trusted"]), int(d["max_message_bytes"]), bool(d["require_smime"]))
