"""A durable outbox: messages wait in SQLite until the operator takes them, exactly once.

States: queued -> sending -> sent, or failed (a permanent refusal, with the reason).
A temporary failure (operator down, 4xx) goes back to queued with a capped exponential
backoff. After a crash, messages left in `sending` are retried: the operator may then see a
message twice, and recognises it by its Message-ID (which is why every message has one and
the outbox never changes it), so the mailbox gets it once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import sqlite3
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edged.state.sqlite import open_durable, state_file, transaction

__all__ = ["LOOP_ERROR_PAUSE", "Outbox", "OutboxItem", "PermanentFailure", "TemporaryFailure"]

log = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    message_id TEXT PRIMARY KEY,
    sender TEXT NOT NULL,
    recipients TEXT NOT NULL,
    body BLOB NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('queued', 'sending', 'sent', 'failed')),
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt REAL NOT NULL,
    last_error TEXT,
    created REAL NOT NULL,
    sent_at REAL
);
CREATE INDEX IF NOT EXISTS outbox_due ON outbox (state, next_attempt);
CREATE TABLE IF NOT EXISTS idempotency (
    client TEXT NOT NULL,
    key TEXT NOT NULL,
    message_id TEXT NOT NULL,
    PRIMARY KEY (client, key)
);
"""
# After an unexpected error in the loop itself (the database, a bug), wait this long and go on
# (the DMP offline queue's loop does the same: edged/services/dmp.py).
LOOP_ERROR_PAUSE = 1.0


class TemporaryFailure(Exception):
    """The operator could not take the message now (retry later)."""


class PermanentFailure(Exception):
    """The operator refused the message for good (the reason is kept)."""


@dataclass(frozen=True)
class OutboxItem:
    """One message waiting or done."""

    message_id: str
    sender: str
    recipients: tuple[str, ...]
    body: bytes
    state: str
    attempts: int
    last_error: str | None


class Outbox:
    """The queue, its delivery loop and its state (thread-safe)."""

    def __init__(self, path: Path, *, base_delay: float = 2.0, max_delay: float = 600.0,
                 max_attempts: int = 50, clock: Callable[[], float] = time.time) -> None:
        self.path = path
        self.base_delay, self.max_delay, self.max_attempts = base_delay, max_delay, max_attempts
        self.clock = clock
        self._lock = threading.Lock()
        self._db = open_durable(path)
        with state_file(path):  # a corrupted or full file is named at start, not mid-way
            self._db.executescript(_SCHEMA)
            # A crash while sending: try again (the operator deduplicates on Message-ID).
            self._db.execute("UPDATE outbox SET state = 'queued' WHERE state = 'sending'")
        self._wakeup = asyncio.Event()

    def _tx(self) -> contextlib.AbstractContextManager[sqlite3.Connection]:
        return transaction(self._db, self._lock)

    def enqueue(self, message_id: str, sender: str, recipients: tuple[str, ...],
                body: bytes) -> bool:
        """Store a message for delivery; False when that Message-ID is already there."""
        if not recipients:
            raise ValueError("a message needs at least one recipient")
        with self._tx() as db:
            cursor = db.execute(
                "INSERT OR IGNORE INTO outbox (message_id, sender, recipients, body, state, "
                "next_attempt, created) VALUES (?, ?, ?, ?, 'queued', ?, ?)",
                (message_id, sender, "\n".join(recipients), body, 0.0, self.clock()))
        self._wakeup.set()
        return cursor.rowcount == 1

    def enqueue_once(self, client: str, key: str, message_id: str, sender: str,
                     recipients: tuple[str, ...], body: bytes) -> str:
        """Queue a message under a client's idempotency key, in one transaction; the
        Message-ID queued under that key (an earlier one when the key was used before)."""
        if not recipients:
            raise ValueError("a message needs at least one recipient")
        with self._tx() as db:
            row = db.execute("SELECT message_id FROM idempotency WHERE client = ? AND key = ?",
                             (client, key)).fetchone()
            if row is not None:
                return str(row[0])
            db.execute("INSERT INTO idempotency (client, key, message_id) VALUES (?, ?, ?)",
                       (client, key, message_id))
            db.execute(
                "INSERT OR IGNORE INTO outbox (message_id, sender, recipients, body, state, "
                "next_attempt, created) VALUES (?, ?, ?, ?, 'queued', ?, ?)",
                (message_id, sender, "\n".join(recipients), body, 0.0, self.clock()))
        self._wakeup.set()
        return message_id

    def for_key(self, client: str, key: str) -> OutboxItem | None:
        """The message a client queued under an idempotency key, if any."""
        with self._lock:
            row = self._db.execute("SELECT message_id FROM idempotency WHERE client = ? "
                                   "AND key = ?", (client, key)).fetchone()
        return self.get(str(row[0])) if row else None

    def wake(self) -> None:
        """The operator answered again: every queued message is due now, not at its backoff."""
        with self._tx() as db:
            db.execute("UPDATE outbox SET next_attempt = 0 WHERE state = 'queued'")
        self._wakeup.set()

    def get(self, message_id: str) -> OutboxItem | None:
        """One message by its Message-ID."""
        with self._lock:
            row = self._db.execute(
                "SELECT message_id, sender, recipients, body, state, attempts, last_error "
                "FROM outbox WHERE message_id = ?", (message_id,)).fetchone()
        return _item(row) if row else None

    def counts(self) -> dict[str, int]:
        """How many messages in each state."""
        with self._lock:
            rows = self._db.execute("SELECT state, COUNT(*) FROM outbox GROUP BY state")
            return {state: n for state, n in rows}

    def _claim(self) -> OutboxItem | None:
        with self._tx() as db:
            row = db.execute(
                "SELECT message_id, sender, recipients, body, state, attempts, last_error "
                "FROM outbox WHERE state = 'queued' AND next_attempt <= ? "
                "ORDER BY next_attempt, created LIMIT 1", (self.clock(),)).fetchone()
            if row is None:
                return None
            db.execute("UPDATE outbox SET state = 'sending', attempts = attempts + 1 "
                       "WHERE message_id = ?", (row[0],))
        return _item(row)

    def _done(self, item: OutboxItem) -> None:
        with self._tx() as db:
            db.execute("UPDATE outbox SET state = 'sent', sent_at = ?, last_error = NULL "
                       "WHERE message_id = ?", (self.clock(), item.message_id))

    def _retry(self, item: OutboxItem, error: str, permanent: bool) -> None:
        attempts = item.attempts + 1
        give_up = permanent or attempts >= self.max_attempts
        delay = min(self.max_delay, self.base_delay * 2 ** (attempts - 1))
        delay *= 0.5 + random.random() / 2  # jitter: many terminals must not retry in step
        with self._tx() as db:
            db.execute("UPDATE outbox SET state = ?, next_attempt = ?, last_error = ? "
                       "WHERE message_id = ?", ("failed" if give_up else "queued",
                                                self.clock() + delay, error[:500],
                                                item.message_id))

    def next_due(self) -> float | None:
        """When the next queued message may be tried (clock time), if any."""
        with self._lock:
            row = self._db.execute("SELECT MIN(next_attempt) FROM outbox "
                                   "WHERE state = 'queued'").fetchone()
        return row[0] if row and row[0] is not None else None

    async def run(self, deliver: Callable[[OutboxItem], Awaitable[None]]) -> None:
        """Deliver forever: one message at a time, oldest due first; nothing stops the loop
        but cancellation (an unexpected error is logged, and the loop goes on: D1)."""
        while True:
            try:
                await self._step(deliver)
            except Exception:
                log.exception("outbox: unexpected error in the delivery loop; going on")
                await asyncio.sleep(LOOP_ERROR_PAUSE)

    async def _step(self, deliver: Callable[[OutboxItem], Awaitable[None]]) -> None:
        item = await asyncio.to_thread(self._claim)
        if item is None:
            self._wakeup.clear()
            due = await asyncio.to_thread(self.next_due)
            wait = None if due is None else max(0.05, due - self.clock())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wakeup.wait(), wait)
            return
        try:
            await deliver(item)
        except PermanentFailure as exc:
            log.warning("outbox: message refused for good: %s", exc)
            await asyncio.to_thread(self._retry, item, str(exc), True)
        except (TemporaryFailure, OSError, TimeoutError) as exc:
            log.info("outbox: delivery failed, will retry: %s", exc)
            await asyncio.to_thread(self._retry, item, str(exc) or type(exc).__name__,
                                    False)
        except Exception as exc:  # a bug in deliver: retried (the operator dedups)
            log.exception("outbox: delivery of %s failed unexpectedly", item.message_id)
            await asyncio.to_thread(self._retry, item,
                                    f"internal error: {type(exc).__name__}", False)
        else:
            await asyncio.to_thread(self._done, item)
            # The operator takes mail now: what waits out a backoff may go at once.
            await asyncio.to_thread(self.wake)

    def close(self) -> None:
        """Close the database (idempotent)."""
        with self._lock:
            self._db.close()


def _item(row: tuple[Any, ...]) -> OutboxItem:
    return OutboxItem(row[0], row[1], tuple(row[2].split("\n")), bytes(row[3]), row[4], row[5],
                      row[6])
