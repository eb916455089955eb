"""Paired clients in SQLite (WAL): name, certificate fingerprint, scopes, revocation."""

from __future__ import annotations

import builtins
import contextlib
import json
import os
import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from bifente.client.identity import validate_client_name, validate_fingerprint

__all__ = [
    "DEFAULT_SCOPES",
    "SCOPES",
    "Client",
    "ClientRegistry",
    "DuplicateClient",
    "UnknownClient",
    "normalise_scopes",
    "scope_labels",
]

# Every right a pairing can carry; methods check one of these (docs/pairing.md).
SCOPES: tuple[str, ...] = (
    "identity:read",
    "cps:sign",
    "cps:authenticate",
    "mail:send",
    "mail:read",
    "dmp:read",
    "dmp:write",
    "dmp:emergency",
    "terminal:display",
    "admin",
)
DEFAULT_SCOPES: tuple[str, ...] = ("identity:read",)
# What the terminal display shows at pairing (French, short: 16 columns, ASCII).
SCOPE_LABELS: dict[str, str] = {
    "identity:read": "CARTES",
    "cps:sign": "SIGNER",
    "cps:authenticate": "AUTHENTIFIER",
    "mail:send": "ENVOI-MSS",
    "mail:read": "LIRE-MSS",
    "dmp:read": "DMP",
    "dmp:write": "DMP-ECRIRE",
    "dmp:emergency": "DMP-URGENCE",
    "admin": "ADMIN",
}

_MAX_SCOPES_REQUESTED = 32  # a peer-controlled count, capped before anything else
_MAX_REVOKED_BY = 128

_SCHEMA_VERSION = 1
_SCHEMA = """
CREATE TABLE IF NOT EXISTS clients (
    fingerprint TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    scopes      TEXT NOT NULL,
    paired_at   TEXT NOT NULL,
    last_seen   TEXT,
    revoked_at  TEXT,
    revoked_by  TEXT
);
CREATE UNIQUE INDEX IF NOT EXISTS clients_active_name
    ON clients (name COLLATE NOCASE) WHERE revoked_at IS NULL;
"""


class DuplicateClient(ValueError):
    """An active client already has this name, or this certificate is already registered."""


class UnknownClient(KeyError):
    """No active client has this name."""

    def __str__(self) -> str:
        # KeyError would print the repr of its argument, quotes included.
        return str(self.args[0]) if self.args else "unknown client"


def normalise_scopes(scopes: Sequence[str]) -> tuple[str, ...]:
    """Known scopes, deduplicated, in SCOPES order; ValueError names any unknown one."""
    if isinstance(scopes, str | bytes) or not isinstance(scopes, Sequence):
        raise ValueError("scopes are a list of scope names")
    if len(scopes) > _MAX_SCOPES_REQUESTED:
        raise ValueError(f"at most {_MAX_SCOPES_REQUESTED} scopes may be requested")
    unknown = [s for s in scopes if s not in SCOPES]
    if unknown:
        shown = ", ".join(repr(s)[:40] for s in unknown[:3])
        raise ValueError(f"unknown scope {shown}; known scopes: {', '.join(SCOPES)}")
    return tuple(s for s in SCOPES if s in scopes)


def scope_labels(scopes: Sequence[str]) -> str:
    """The scopes as the terminal shows them at pairing, e.g. 'SIGNER DMP ADMIN'."""
    return " ".join(SCOPE_LABELS.get(s, s.upper()) for s in scopes)


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _ts(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)


@dataclass(frozen=True)
class Client:
    """One paired client as registered; inactive once revoked."""

    name: str
    fingerprint: str
    scopes: tuple[str, ...]
    paired_at: datetime
    last_seen: datetime | None = None
    revoked_at: datetime | None = None
    revoked_by: str | None = None

    @property
    def active(self) -> bool:
        """True until the client is revoked."""
        return self.revoked_at is None

    def allows(self, scope: str) -> bool:
        """True if the client is active and holds `scope` (no scope implies another)."""
        return self.active and scope in self.scopes


_SELECT_BY_FINGERPRINT = (
    "SELECT name, fingerprint, scopes, paired_at, last_seen, revoked_at, revoked_by "
    "FROM clients WHERE fingerprint = ?"
)
_SELECT_ACTIVE_BY_NAME = (
    "SELECT name, fingerprint, scopes, paired_at, last_seen, revoked_at, revoked_by "
    "FROM clients WHERE name = ? COLLATE NOCASE AND revoked_at IS NULL"
)
_SELECT_ACTIVE = (
    "SELECT name, fingerprint, scopes, paired_at, last_seen, revoked_at, revoked_by "
    "FROM clients WHERE revoked_at IS NULL ORDER BY paired_at, name"
)
_SELECT_ALL = (
    "SELECT name, fingerprint, scopes, paired_at, last_seen, revoked_at, revoked_by "
    "FROM clients ORDER BY paired_at, name"
)


def _row_to_client(row: tuple[str, str, str, str, str | None, str | None, str | None]) -> Client:
    name, fingerprint, scopes, paired_at, last_seen, revoked_at, revoked_by = row
    return Client(
        name=name,
        fingerprint=fingerprint,
        scopes=tuple(json.loads(scopes)),
        paired_at=datetime.fromisoformat(paired_at),
        last_seen=_ts(last_seen),
        revoked_at=_ts(revoked_at),
        revoked_by=revoked_by,
    )


class ClientRegistry:
    """The paired clients table; one connection guarded by a lock, so any thread may call it."""

    def __init__(self, path: Path | str, *, clock: Callable[[], datetime] = _utcnow) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        if str(path) != ":memory:":
            path = Path(path)
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            # Create the file 0600 first: SQLite gives the -wal and -shm files the same mode.
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
            os.close(fd)
        self._db: sqlite3.Connection | None = sqlite3.connect(
            str(path), isolation_level=None, check_same_thread=False, timeout=10.0
        )
        self._db.execute("PRAGMA journal_mode=WAL")
        # A revocation must survive a power cut (a Pi is unplugged, not shut down).
        self._db.execute("PRAGMA synchronous=FULL")
        with self._transaction() as db:
            # Statement by statement: executescript() would COMMIT our transaction first.
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    db.execute(statement)
            (version,) = db.execute("PRAGMA user_version").fetchone()
            if version == 0:
                db.execute(f"PRAGMA user_version = {_SCHEMA_VERSION}")
            elif version != _SCHEMA_VERSION:
                raise RuntimeError(
                    f"client registry schema version {version} is not supported "
                    f"(this edged knows version {_SCHEMA_VERSION})"
                )

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        if self._db is None:
            raise RuntimeError("the client registry is closed")
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            yield db
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    def add(self, name: str, fingerprint: str, scopes: Sequence[str]) -> Client:
        """Register a newly paired client; DuplicateClient if its name is taken by an active one."""
        name = validate_client_name(name)
        fingerprint = validate_fingerprint(fingerprint)
        granted = normalise_scopes(scopes)
        paired_at = self._clock()
        with self._lock, self._transaction() as db:
            if db.execute("SELECT 1 FROM clients WHERE fingerprint = ?", (fingerprint,)).fetchone():
                raise DuplicateClient("this certificate is already registered")
            if db.execute(
                "SELECT 1 FROM clients WHERE name = ? COLLATE NOCASE AND revoked_at IS NULL",
                (name,),
            ).fetchone():
                raise DuplicateClient(
                    f"a client named {name!r} is already paired; revoke it first "
                    f"(bifente clients revoke NAME)"
                )
            db.execute(
                "INSERT INTO clients (name, fingerprint, scopes, paired_at) VALUES (?, ?, ?, ?)",
                (name, fingerprint, json.dumps(list(granted)), paired_at.isoformat()),
            )
        return Client(name, fingerprint, granted, paired_at)

    def lookup(self, fingerprint: str) -> Client | None:
        """The client holding the certificate with this fingerprint, revoked or not, or None."""
        try:
            fingerprint = validate_fingerprint(fingerprint)
        except ValueError:
            return None
        with self._lock:
            row = self._conn().execute(_SELECT_BY_FINGERPRINT, (fingerprint,)).fetchone()
        return None if row is None else _row_to_client(row)

    def find_active(self, name: str) -> Client | None:
        """The active client with this name (case-insensitive), or None."""
        with self._lock:
            row = self._conn().execute(_SELECT_ACTIVE_BY_NAME, (name,)).fetchone()
        return None if row is None else _row_to_client(row)

    def grant(self, name: str, scopes: Sequence[str]) -> Client:
        """Add scopes to the active client `name` (the local CLI's admin grant); UnknownClient."""
        added = normalise_scopes(scopes)
        with self._lock, self._transaction() as db:
            row = db.execute(_SELECT_ACTIVE_BY_NAME, (name,)).fetchone()
            if row is None:
                raise UnknownClient(f"no active client named {str(name)[:64]!r}")
            client = _row_to_client(row)
            granted = normalise_scopes([*client.scopes, *added])
            db.execute("UPDATE clients SET scopes = ? WHERE fingerprint = ?",
                       (json.dumps(list(granted)), client.fingerprint))
        return Client(client.name, client.fingerprint, granted, client.paired_at,
                      client.last_seen)

    def revoke(self, name: str, by: str) -> Client:
        """Revoke the active client `name` at once; UnknownClient (a KeyError) if there is none."""
        if not isinstance(by, str) or not by or len(by) > _MAX_REVOKED_BY:
            raise ValueError(f"'by' names who revokes, 1 to {_MAX_REVOKED_BY} characters")
        revoked_at = self._clock()
        with self._lock, self._transaction() as db:
            row = db.execute(_SELECT_ACTIVE_BY_NAME, (name,)).fetchone()
            if row is None:
                raise UnknownClient(f"no active client named {str(name)[:64]!r}")
            db.execute(
                "UPDATE clients SET revoked_at = ?, revoked_by = ? WHERE fingerprint = ?",
                (revoked_at.isoformat(), by, row[1]),
            )
        client = _row_to_client(row)
        return Client(
            client.name,
            client.fingerprint,
            client.scopes,
            client.paired_at,
            client.last_seen,
            revoked_at,
            by,
        )

    def list(self, include_revoked: bool = False) -> builtins.list[Client]:
        """Clients in pairing order; only active ones unless `include_revoked`."""
        with self._lock:
            rows = (
                self._conn().execute(_SELECT_ALL if include_revoked else _SELECT_ACTIVE).fetchall()
            )
        return [_row_to_client(row) for row in rows]

    def touch(self, fingerprint: str) -> None:
        """Record that the active client holding this certificate was just seen."""
        try:
            fingerprint = validate_fingerprint(fingerprint)
        except ValueError:
            return
        seen = self._clock().isoformat()
        with self._lock:
            self._conn().execute(
                "UPDATE clients SET last_seen = ? WHERE fingerprint = ? AND revoked_at IS NULL",
                (seen, fingerprint),
            )

    def generation(self) -> tuple[int, int]:
        """Changes to the table: from other processes (data_version) and from this one.

        Equal twice means nothing changed in between (a revocation included), so a
        connection may keep the Client it read: one PRAGMA instead of a lookup per call.
        """
        with self._lock:
            db = self._conn()
            (version,) = db.execute("PRAGMA data_version").fetchone()
            return int(version), db.total_changes

    def local_changes(self) -> int:
        """Rows changed through this process's connection (no query: SQLite's own count)."""
        with self._lock:
            return self._conn().total_changes

    def _conn(self) -> sqlite3.Connection:
        if self._db is None:
            raise RuntimeError("the client registry is closed")
        return self._db

    def close(self) -> None:
        """Close the database; idempotent."""
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None

    def __enter__(self) -> ClientRegistry:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
