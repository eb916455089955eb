"""The DMP offline queue: feeds made without network, kept until the host has them.

Durable on the state's SQLite helper (WAL, synchronous=FULL, locked writes); the CDA and its
consent header are sealed with the state key, the queue id authenticated with them so rows
cannot be swapped (docs/security.md, "Data at rest"). The delivery loop that drains it is
the DMP service's (edged/services/dmp.py); docs/dmp-terminal.md describes the queue.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bifente.apdu.identity import mask_nir
from bifente.edged.state.keywrap import KeyWrapper, is_sealed
from bifente.edged.state.sqlite import open_durable, state_file, transaction

__all__ = ["FeedInfo", "FeedQueue", "QueuedFeed"]


_SCHEMA = """
CREATE TABLE IF NOT EXISTS feeds (
    queue_id TEXT PRIMARY KEY,
    ins TEXT NOT NULL,
    professional TEXT NOT NULL,
    query TEXT NOT NULL,
    cda BLOB NOT NULL,
    consent TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('queued', 'sending', 'delivered', 'failed')),
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt REAL NOT NULL,
    last_error TEXT,
    created REAL NOT NULL,
    delivered_at REAL,
    document_id TEXT,
    size INTEGER
);
CREATE INDEX IF NOT EXISTS feeds_due ON feeds (state, next_attempt);
"""
# `size` (the CDA's length in clear, for dmp.queue without opening the CDA) came later: a
# queue file of an earlier version gets the column, NULL in its rows until first listed.


@dataclass(frozen=True)
class FeedInfo:
    """What dmp.queue shows of a feed: no document, no consent."""

    queue_id: str
    ins: str
    professional: str
    state: str
    attempts: int
    last_error: str | None
    created: float
    document_id: str | None
    size: int

    def describe(self) -> dict[str, Any]:
        """For dmp.queue: no full INS, no document bytes."""
        return {"queue_id": self.queue_id, "patient": mask_nir(self.ins),
                "professional": self.professional, "state": self.state,
                "attempts": self.attempts, "last_error": self.last_error,
                "queued_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.created)),
                "size": self.size, "document_id": self.document_id}


@dataclass(frozen=True)
class QueuedFeed(FeedInfo):
    """One feed waiting for the host (or done), with its document and consent."""

    query: str
    cda: bytes
    consent: str


_COLUMNS = ("queue_id, ins, professional, query, cda, consent, state, attempts, last_error, "
            "created, document_id")
_INFO_COLUMNS = ("queue_id, ins, professional, state, attempts, last_error, created, "
                 "document_id, size")


class FeedQueue:
    """Durable feeds (SQLite, WAL, synchronous=FULL; thread-safe)."""

    def __init__(self, path: Path, clock: Callable[[], float] = time.time,
                 wrapper: KeyWrapper | None = None) -> None:
        self.clock = clock
        self._wrapper = wrapper  # seals the CDA and the consent header at rest (review M8)
        self._lock = threading.Lock()
        self._db = open_durable(path)
        with state_file(path):  # a corrupted or full file is named at start
            self._db.executescript(_SCHEMA)
            columns = {row[1] for row in self._db.execute("PRAGMA table_info(feeds)")}
            if "size" not in columns:  # a queue file of an earlier version
                self._db.execute("ALTER TABLE feeds ADD COLUMN size INTEGER")
            # A crash mid-send: send again; the host answers already_registered if it had it.
            self._db.execute("UPDATE feeds SET state = 'queued' WHERE state = 'sending'")

    def _tx(self) -> contextlib.AbstractContextManager[sqlite3.Connection]:
        return transaction(self._db, self._lock)

    def add(self, ins: str, professional: str, query: str, cda: bytes, consent: str) -> str:
        """Store a feed; its queue id."""
        queue_id = str(uuid.uuid4())
        stored_cda: bytes | str = cda
        stored_consent: bytes | str = consent
        if self._wrapper is not None:
            context = queue_id.encode()
            stored_cda = self._wrapper.seal("dmp-queue/cda", cda, context)
            stored_consent = self._wrapper.seal("dmp-queue/consent", consent.encode(), context)
        with self._tx() as db:
            db.execute(f"INSERT INTO feeds ({_COLUMNS}, next_attempt, size) VALUES "  # noqa: S608
                       "(?, ?, ?, ?, ?, ?, 'queued', 0, NULL, ?, NULL, 0, ?)",
                       (queue_id, ins, professional, query, stored_cda, stored_consent,
                        self.clock(), len(cda)))
        return queue_id

    def _feed(self, row: tuple[Any, ...]) -> QueuedFeed:
        cda, consent = bytes(row[4]), row[5]
        if self._wrapper is not None and is_sealed(cda):
            context = str(row[0]).encode()
            cda = self._wrapper.open("dmp-queue/cda", cda, context)
            consent = self._wrapper.open("dmp-queue/consent", bytes(consent), context).decode()
        return _feed((*row[:4], cda, consent, *row[6:]))

    def list(self, *, include_done: bool = False) -> list[FeedInfo]:
        """Pending feeds (and delivered / failed ones when asked), oldest first; what they
        are, not their documents: no CDA is read or opened (up to 64 MiB each)."""
        where = "" if include_done else "WHERE state IN ('queued', 'sending')"
        with self._lock:
            rows = self._db.execute(f"SELECT {_INFO_COLUMNS} FROM feeds {where} "  # noqa: S608
                                    "ORDER BY created").fetchall()
        return [FeedInfo(queue_id=row[0], ins=row[1], professional=row[2], state=row[3],
                         attempts=row[4], last_error=row[5], created=row[6],
                         document_id=row[7],
                         size=self._size(row[0]) if row[8] is None else row[8])
                for row in rows]

    def _size(self, queue_id: str) -> int:
        """The size of a feed queued by an earlier version (no size column then): its CDA
        opened once, the size kept."""
        feed = self.get(queue_id)
        size = len(feed.cda) if feed is not None else 0
        with self._tx() as db:
            db.execute("UPDATE feeds SET size = ? WHERE queue_id = ? AND size IS NULL",
                       (size, queue_id))
        return size

    def get(self, queue_id: str) -> QueuedFeed | None:
        """One feed."""
        with self._lock:
            row = self._db.execute(f"SELECT {_COLUMNS} FROM feeds "  # noqa: S608
                                   "WHERE queue_id = ?", (queue_id,)).fetchone()
        return self._feed(row) if row else None

    def claim(self) -> QueuedFeed | None:
        """The feed due first (the oldest among those due together), marked sending.

        By due time, not by age: a feed that fails every time (a document whose attempts
        time out) waits its backoff behind the others instead of taking every turn."""
        with self._tx() as db:
            row = db.execute(f"SELECT {_COLUMNS} FROM feeds WHERE state = 'queued' "  # noqa: S608
                             "AND next_attempt <= ? ORDER BY next_attempt, created LIMIT 1",
                             (self.clock(),)).fetchone()
            if row is None:
                return None
            db.execute("UPDATE feeds SET state = 'sending', attempts = attempts + 1 "
                       "WHERE queue_id = ?", (row[0],))
        return self._feed(row)

    def delivered(self, queue_id: str, document_id: str | None) -> None:
        """Done: the host has it."""
        with self._tx() as db:
            db.execute("UPDATE feeds SET state = 'delivered', delivered_at = ?, "
                       "document_id = ?, last_error = NULL WHERE queue_id = ?",
                       (self.clock(), document_id, queue_id))

    def retry(self, queue_id: str, error: str, delay: float) -> None:
        """Back to queued, tried again after delay."""
        with self._tx() as db:
            db.execute("UPDATE feeds SET state = 'queued', next_attempt = ?, last_error = ? "
                       "WHERE queue_id = ?", (self.clock() + delay, error[:300], queue_id))

    def failed(self, queue_id: str, error: str) -> None:
        """Refused for good (the reason is kept)."""
        with self._tx() as db:
            db.execute("UPDATE feeds SET state = 'failed', last_error = ? WHERE queue_id = ?",
                       (error[:300], queue_id))

    def hurry(self) -> None:
        """The host answered: every queued feed is due now."""
        with self._tx() as db:
            db.execute("UPDATE feeds SET next_attempt = 0 WHERE state = 'queued'")

    def next_due(self) -> float | None:
        """When the next queued feed is due."""
        with self._lock:
            row = self._db.execute("SELECT MIN(next_attempt) FROM feeds "
                                   "WHERE state = 'queued'").fetchone()
        return row[0] if row and row[0] is not None else None

    def close(self) -> None:
        """Close the database (idempotent)."""
        with self._lock:
            self._db.close()


def _feed(row: tuple[Any, ...]) -> QueuedFeed:
    cda = bytes(row[4])
    return QueuedFeed(queue_id=row[0], ins=row[1], professional=row[2], query=row[3], cda=cda,
                      consent=row[5], state=row[6], attempts=row[7], last_error=row[8],
                      created=row[9], document_id=row[10], size=len(cda))
