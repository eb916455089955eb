"""The bridge's allow-list: which web origins may use the terminal, with which token and scopes.

One JSON file (mode 0600, written atomically), by default `~/.config/bifente/bridge.json`
(`$BIFENTE_BRIDGE_ALLOWLIST` overrides). Only a SHA-256 of each token is stored: the token
itself is shown once, by `bifente bridge allow ORIGIN`, to be pasted into the web app's settings.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

__all__ = ["AllowList", "Allowed", "default_path", "grantable_scopes", "normalize_origin"]

_DEFAULT_PORTS = {"http": 80, "https": 443}


def grantable_scopes() -> frozenset[str]:
    """Every scope a method needs, except `admin`: a web page never administers the terminal."""
    from bifente.edged.api.methods import METHODS

    return frozenset(s for m in METHODS.values() for s in m.scopes) - {"admin"}


def default_path() -> Path:
    """$BIFENTE_BRIDGE_ALLOWLIST, else ~/.config/bifente/bridge.json."""
    env = os.environ.get("BIFENTE_BRIDGE_ALLOWLIST")
    return Path(env) if env else Path.home() / ".config" / "bifente" / "bridge.json"


def normalize_origin(origin: str) -> str:
    """'HTTPS://Clinic.example:443/' -> 'https://clinic.example', as browsers send Origin.

    Only http and https origins with a host and nothing after it; ValueError otherwise
    (`null`, wildcards, paths, user names).
    """
    text = origin.strip().rstrip("/")
    parts = urlsplit(text)
    if parts.scheme.lower() not in _DEFAULT_PORTS or not parts.hostname:
        raise ValueError(f"{origin!r}: an origin is http(s)://HOST[:PORT]")
    if parts.path or parts.query or parts.fragment or parts.username or "*" in text:
        raise ValueError(f"{origin!r}: an origin is http(s)://HOST[:PORT], nothing more")
    scheme, host = parts.scheme.lower(), parts.hostname.lower()
    try:
        port = parts.port
    except ValueError as exc:
        raise ValueError(f"{origin!r}: bad port") from exc
    if ":" in host:
        host = f"[{host}]"
    return f"{scheme}://{host}" + (f":{port}" if port and port != _DEFAULT_PORTS[scheme] else "")


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class Allowed:
    """One allowed origin."""

    origin: str
    token_sha256: str
    scopes: tuple[str, ...]
    added: float

    def token_matches(self, token: str) -> bool:
        """Constant-time comparison of the token's digest."""
        return hmac.compare_digest(_digest(token), self.token_sha256)


class AllowList:
    """The allow-list file; reads are cached by modification time, so edits apply at once."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path or default_path()
        self._cache: tuple[int, dict[str, Allowed]] | None = None

    def entries(self) -> dict[str, Allowed]:
        """origin -> entry (empty when the file does not exist)."""
        try:
            stamp = self.path.stat().st_mtime_ns
        except FileNotFoundError:
            return {}
        if self._cache is None or self._cache[0] != stamp:
            try:
                data = json.loads(self.path.read_text())
                entries = {origin: Allowed(origin, str(e["token_sha256"]), tuple(e["scopes"]),
                                           float(e["added"]))
                           for origin, e in data["origins"].items()}
            except (ValueError, KeyError, TypeError, AttributeError) as exc:
                raise ValueError(f"{self.path}: not a bridge allow-list ({exc})") from None
            self._cache = (stamp, entries)
        return self._cache[1]

    def check(self, origin: str | None, token: str | None) -> Allowed | None:
        """The entry when this origin is allowed and the token is its token, else None."""
        if not origin or not token:
            return None
        try:
            normal = normalize_origin(origin)
        except ValueError:
            return None
        entry = self.entries().get(normal)  # ValueError when the file is damaged
        return entry if entry is not None and entry.token_matches(token) else None

    def allow(self, origin: str, scopes: list[str]) -> tuple[str, str]:
        """Allow (or re-key) an origin; returns (normalized origin, the new token)."""
        normal = normalize_origin(origin)
        known = grantable_scopes()
        unknown = sorted(set(scopes) - known)
        if unknown:
            raise ValueError(f"scope {unknown[0]!r} cannot be granted to a web page "
                             f"(these can: {', '.join(sorted(known))})")
        token = secrets.token_urlsafe(32)
        entries = dict(self.entries())
        entries[normal] = Allowed(normal, _digest(token), tuple(sorted(set(scopes))), time.time())
        self._write(entries)
        return normal, token

    def revoke(self, origin: str) -> bool:
        """Remove an origin; False when it was not there."""
        normal = normalize_origin(origin)
        entries = dict(self.entries())
        if entries.pop(normal, None) is None:
            return False
        self._write(entries)
        return True

    def _write(self, entries: dict[str, Allowed]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        data = {"version": 1, "origins": {
            e.origin: {"token_sha256": e.token_sha256, "scopes": list(e.scopes),
                       "added": e.added} for e in entries.values()}}
        tmp = self.path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            json.dump(data, out, indent=2)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, self.path)
        self._cache = None
