"""The encrypting proxy's local users (docs/messaging.md): durable, on the state's SQLite helper.

One row per user: e-mail, salted SHA-256 of the SMTP password, the TOTP secret, the last time
step used (codes are single-use), the failure count and the lockout. The TOTP secret is what an
emission code is made from, so it is sealed with the state key (docs/security.md, "Data at
rest"; the user's name is authenticated with it, so secrets cannot be swapped between rows): a
copy of the state directory alone cannot make codes. Older rows holding a secret in clear are
sealed when the store is opened.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import secrets
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path

from bifente.edged.state.keywrap import KeyWrapper, is_sealed
from bifente.edged.state.sqlite import open_durable, state_file, transaction

__all__ = ["TOTP_PURPOSE", "UserStore", "proxy_dir"]

TOTP_PURPOSE = "proxy/totp"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS users (
    name TEXT PRIMARY KEY,
    email TEXT UNIQUE NOT NULL,
    password_hash BLOB NOT NULL,
    salt BLOB NOT NULL,
    totp_secret BLOB NOT NULL,
    last_step INTEGER NOT NULL DEFAULT 0,
    failures INTEGER NOT NULL DEFAULT 0,
    locked_until REAL NOT NULL DEFAULT 0,
    created REAL NOT NULL
)
"""


def proxy_dir(state_dir: Path) -> Path:
    """`<state_dir>/proxy`, created 0700."""
    folder = Path(state_dir) / "proxy"
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(folder, 0o700)
    return folder


class UserStore:
    """Users, their password hash and sealed TOTP secret, used steps and lockouts."""

    def __init__(self, state_dir: Path, wrapper: KeyWrapper, *, max_failures: int = 5,
                 lockout_seconds: float = 900.0,
                 clock: Callable[[], float] = time.time) -> None:
        self.path = proxy_dir(state_dir) / "users.db"
        self._wrapper = wrapper
        self._lock = threading.Lock()
        self._db = open_durable(self.path)
        with state_file(self.path):
            # A removed user's or a replaced secret's bytes are overwritten, not left in free
            # pages (https://sqlite.org/pragma.html#pragma_secure_delete).
            self._db.execute("PRAGMA secure_delete=ON")
            self._db.execute(_SCHEMA)
            self._seal_clear_secrets()
        self.max_failures = max_failures
        self.lockout_seconds = lockout_seconds
        self._clock = clock

    def close(self) -> None:
        """Close the database."""
        self._db.close()

    def _seal_clear_secrets(self) -> None:
        # An install from before the secrets were sealed (review M8): seal them in place, then
        # empty the write-ahead log, which still holds the clear pages.
        sealed = 0
        with transaction(self._db, self._lock) as db:
            for name, secret in db.execute("SELECT name, totp_secret FROM users").fetchall():
                if not is_sealed(bytes(secret)):
                    db.execute("UPDATE users SET totp_secret = ? WHERE name = ?",
                               (self._seal(name, bytes(secret)), name))
                    sealed += 1
        if sealed:
            self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    def _seal(self, name: str, secret: bytes) -> bytes:
        return self._wrapper.seal(TOTP_PURPOSE, secret, name.encode())

    @staticmethod
    def _hash(password: str, salt: bytes) -> bytes:
        # Passwords are generated (120 random bits), never chosen by a person: a salted
        # SHA-256 cannot be brute-forced, and a slow KDF would stall the daemon's event loop
        # (aiosmtpd calls the authenticator synchronously).
        return hashlib.sha256(salt + password.encode("utf-8")).digest()

    def add(self, name: str, email: str) -> tuple[str, bytes]:
        """A new user: returns (SMTP password, TOTP secret), shown once and never again."""
        if not re.fullmatch(r"[A-Za-z0-9._-]{1,64}", name):
            raise ValueError("a user name is 1-64 letters, digits, '.', '_' or '-'")
        if not re.fullmatch(r"[^@\s<>]+@[a-z0-9.-]+\.[a-z0-9-]+", email.lower()):
            raise ValueError(f"not an e-mail address: {email!r}")
        password = secrets.token_urlsafe(15)
        secret = secrets.token_bytes(20)  # 160 bits, RFC 4226 §4 recommends it
        salt = secrets.token_bytes(16)
        try:
            with transaction(self._db, self._lock) as db:
                db.execute(
                    "INSERT INTO users (name, email, password_hash, salt, totp_secret, created)"
                    " VALUES (?, ?, ?, ?, ?, ?)",
                    (name, email.lower(), self._hash(password, salt), salt,
                     self._seal(name, secret), self._clock()))
        except sqlite3.IntegrityError:
            raise ValueError(f"a user {name!r} or the address {email} exists already") from None
        return password, secret

    def remove(self, name: str) -> bool:
        """Delete a user; False when unknown."""
        with transaction(self._db, self._lock) as db:
            return db.execute("DELETE FROM users WHERE name = ?", (name,)).rowcount > 0

    def unlock(self, name: str) -> bool:
        """Clear a lockout; False when unknown."""
        with transaction(self._db, self._lock) as db:
            return db.execute("UPDATE users SET failures = 0, locked_until = 0 WHERE name = ?",
                              (name,)).rowcount > 0

    def list(self) -> list[tuple[str, str, bool]]:
        """(name, email, locked) for every user."""
        now = self._clock()
        with self._lock:
            rows = self._db.execute(
                "SELECT name, email, locked_until FROM users ORDER BY name").fetchall()
        return [(n, e, lu > now) for n, e, lu in rows]

    def email_of(self, name: str) -> str | None:
        """The address a user sends from; None when unknown."""
        with self._lock:
            row = self._db.execute("SELECT email FROM users WHERE name = ?", (name,)).fetchone()
        return row[0] if row else None

    def authenticate(self, login: str, password: str) -> tuple[str | None, str]:
        """(the user's name, "") when the login (name or e-mail) and password match, else
        (None, "auth-failed" or "locked"); a wrong password counts toward the lockout."""
        with self._lock:
            row = self._db.execute(
                "SELECT name, password_hash, salt, locked_until FROM users"
                " WHERE name = ? OR email = ?", (login, login.lower())).fetchone()
        if row is None:
            self._hash(password, b"\0" * 16)  # same cost for an unknown login
            return None, "auth-failed"
        name, stored, salt, locked_until = row
        if not hmac.compare_digest(self._hash(password, salt), stored):
            self.record_failure(name)
            return None, "auth-failed"
        if locked_until > self._clock():
            return None, "locked"
        return str(name), ""

    def is_locked(self, name: str) -> bool:
        """True while a lockout runs (and for an unknown user)."""
        with self._lock:
            row = self._db.execute("SELECT locked_until FROM users WHERE name = ?",
                                   (name,)).fetchone()
        return row is None or row[0] > self._clock()

    def record_failure(self, name: str) -> None:
        """Count a failure; the max_failures-th locks the user for lockout_seconds."""
        with transaction(self._db, self._lock) as db:
            db.execute("UPDATE users SET failures = failures + 1 WHERE name = ?", (name,))
            db.execute("UPDATE users SET locked_until = ?, failures = 0 WHERE name = ? AND"
                       " failures >= ?",
                       (self._clock() + self.lockout_seconds, name, self.max_failures))

    def totp_state(self, name: str) -> tuple[bytes, int] | None:
        """(the TOTP secret, opened in memory; the last time step used), None when unknown."""
        with self._lock:
            row = self._db.execute("SELECT totp_secret, last_step FROM users WHERE name = ?",
                                   (name,)).fetchone()
        if row is None:
            return None
        return self._wrapper.open(TOTP_PURPOSE, bytes(row[0]), name.encode()), int(row[1])

    def use_step(self, name: str, step: int) -> bool:
        """Spend a code atomically: this step and every earlier one become unusable."""
        with transaction(self._db, self._lock) as db:
            return db.execute(
                "UPDATE users SET last_step = ?, failures = 0 WHERE name = ? AND last_step < ?",
                (step, name, step)).rowcount == 1

    @property
    def clock(self) -> Callable[[], float]:
        """The store's clock (the code check uses the same time)."""
        return self._clock
