"""SQLite the way the daemon's durable queues use it: WAL, synchronous=FULL, locked writes."""

from __future__ import annotations

import contextlib
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

__all__ = ["open_durable", "transaction"]


def open_durable(path: Path) -> sqlite3.Connection:
    """A connection whose committed writes survive a crash or power loss (WAL + FULL)."""
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
