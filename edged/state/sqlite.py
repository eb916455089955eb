"""SQLite the way the daemon's durable queues use it: WAL, synchronous=FULL, locked writes."""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

__all__ = ["StateFileError", "open_durable", "state_file", "transaction"]


class StateFileError(Exception):
    """A state file cannot be opened or used: the message names the file and the cause."""

    def __init__(self, path: Path, cause: BaseException) -> None:
        detail = (cause.strerror if isinstance(cause, OSError) and cause.strerror
                  else str(cause))
        super().__init__(f"{path}: {detail}")
        self.path = path


@contextlib.contextmanager
def state_file(path: Path) -> Iterator[None]:
    """Open-time errors of one state file (full disk, read-only, not a database) as one
    StateFileError naming it, instead of a bare sqlite3 traceback (D7 of the review)."""
    try:
        yield
    except StateFileError:
        raise
    except (sqlite3.Error, OSError) as exc:
        where = Path(exc.filename) if isinstance(exc, OSError) and exc.filename else path
        raise StateFileError(where, exc) from exc


def open_durable(path: Path) -> sqlite3.Connection:
    """A connection whose committed writes survive a crash or power loss (WAL + FULL); the
    file is 0600 (SQLite gives its -wal and -shm files the database's mode)."""
    # Created here, not by sqlite3 with the umask's 0644 (review M8); an older file is
    # tightened. The service's UMask=0077 is a second layer, not the only one.
    with state_file(path):
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            if os.fstat(fd).st_mode & 0o077:
                os.fchmod(fd, 0o600)
        finally:
            os.close(fd)
        for suffix in ("-wal", "-shm"):
            side = Path(f"{path}{suffix}")
            if side.exists() and side.stat().st_mode & 0o077:
                os.chmod(side, 0o600)
        db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
    return db


@contextlib.contextmanager
def transaction(db: sqlite3.Connection, lock: threading.Lock) -> Iterator[sqlite3.Connection]:
    """BEGIN IMMEDIATE ... COMMIT under the lock; ROLLBACK on any error."""
    with lock:
        db.execute("BEGIN IMMEDIATE")
        try:
            yield db
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")
