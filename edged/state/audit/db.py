"""Where the audit log lives and how it is opened: the SQLite schema with its append-only
triggers, the writer's lock, WAL at synchronous=FULL, read-only snapshots."""

from __future__ import annotations

import fcntl
import logging
import os
import sqlite3
from pathlib import Path

from bifente.edged.state.audit.errors import AuditError

__all__ = ["AUDIT_DB_NAME", "connect_readonly", "connect_writer", "default_state_dir",
           "lock_writer"]

_log = logging.getLogger(__name__)

AUDIT_DB_NAME = "audit.db"
_FORMAT_VERSION = 1  # PRAGMA user_version, set in _SCHEMA

_SCHEMA = """
BEGIN IMMEDIATE;
CREATE TABLE IF NOT EXISTS records (
    seq INTEGER PRIMARY KEY,
    time TEXT NOT NULL,
    event TEXT NOT NULL,
    actor TEXT NOT NULL,
    fields TEXT NOT NULL,
    prev TEXT NOT NULL,
    hash TEXT NOT NULL
);
CREATE TRIGGER IF NOT EXISTS records_no_update BEFORE UPDATE ON records
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only: UPDATE refused'); END;
CREATE TRIGGER IF NOT EXISTS records_no_delete BEFORE DELETE ON records
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only: DELETE refused'); END;
CREATE TRIGGER IF NOT EXISTS records_grow_at_end BEFORE INSERT ON records
WHEN NEW.seq IS NOT (SELECT COALESCE(MAX(seq), 0) + 1 FROM records)
  OR NEW.prev IS NOT COALESCE((SELECT hash FROM records ORDER BY seq DESC LIMIT 1),
                              '0000000000000000000000000000000000000000000000000000000000000000')
BEGIN SELECT RAISE(ABORT, 'the audit log only grows at its end'); END;
PRAGMA user_version = 1;
COMMIT;
"""
_TRIGGERS = ("records_no_update", "records_no_delete", "records_grow_at_end")


def default_state_dir() -> Path:
    """The daemon's state directory: $BIFENTE_STATE_DIR, else /var/lib/bifente."""
    return Path(os.environ.get("BIFENTE_STATE_DIR") or "/var/lib/bifente")


def connect_readonly(path: Path) -> sqlite3.Connection:
    """A read-only connection to the log (no writer lock needed)."""
    conn = sqlite3.connect(path.resolve().as_uri() + "?mode=ro", uri=True, timeout=5.0,
                           isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA query_only = ON")
    return conn


def lock_writer(path: Path) -> int:
    """Take the one-writer lock beside the log (its fd); AuditError if another holds it."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(f"{path}.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise AuditError(f"another process is writing the audit log at {path}") from None
    return fd


def connect_writer(path: Path) -> sqlite3.Connection:
    """The writer's connection: the log created 0600 if new, WAL, synchronous=FULL, the
    schema and its triggers in place."""
    if not path.exists():  # created here so the log (and its -wal, -shm) are 0600
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))
    conn = sqlite3.connect(path, timeout=5.0, isolation_level=None, check_same_thread=False)
    try:
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version > _FORMAT_VERSION:
            raise AuditError(f"the audit log at {path} has format {version}, newer than this "
                             "bifente")
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise AuditError(f"cannot put the audit log at {path} in WAL mode")
        conn.execute("PRAGMA synchronous = FULL")  # WAL + FULL: a commit survives power loss
        triggers = {name for (name,) in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'trigger'")}
        has_table = conn.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'records'").fetchone()
        if has_table and not triggers.issuperset(_TRIGGERS):
            _log.warning("audit log %s: append-only triggers were missing; restoring them "
                         "(run `bifente audit verify`)", path)
        conn.executescript(_SCHEMA)
    except BaseException:
        conn.close()
        raise
    return conn
