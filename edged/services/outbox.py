"""A durable outbox: messages wait in SQLite until the operator takes them, exactly once.

A message's body is a file in the spool directory beside the database (`outbox.bodies/`),
written by the sender a chunk at a time and moved in when the row is committed, so a 25 MB
message is never whole in memory (docs/benchmarks.md, L); the row names it. Rows of an
earlier bifente keep their body in the row itself. Once a message is sent, or has failed for
good, its body is deleted (file or row): nothing sends it again, and an encrypted message
kept for nothing would only fill the disk of a Pi; the row keeps its state and last error.

States: queued -> sending -> sent, or failed (a permanent refusal, with the reason).
A temporary failure (operator down, 4xx) goes back to queued with a capped exponential
backoff. After a crash, messages left in `sending` are retried: the operator may then see a
message twice, and recognises it by its Message-ID (which is why every message has one and
the outbox never changes it), so the mailbox gets it once.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import os
import random
import secrets
import sqlite3
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from bifente.edged.state.sqlite import open_durable, state_file, transaction

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
# A body file being written (by new_body) until the enqueue moves it in; the name of a queued
# one is random (the row holds it), so a Message-ID never reaches the file system.
_PARTIAL = ".partial"
_BODY = ".eml"
_SELECT = ("SELECT message_id, sender, recipients, body, state, attempts, last_error, "
           "body_file FROM outbox")
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
    state: str
    attempts: int
    last_error: str | None
    body_path: Path | None = None  # the spooled body; None: the row holds it (`inline`)
    inline: bytes = b""

    def open_body(self) -> BinaryIO:
        """The body to read a chunk at a time (delivery)."""
        return self.body_path.open("rb") if self.body_path else io.BytesIO(self.inline)

    @property
    def body(self) -> bytes:
        """The whole body (tests, small messages): delivery reads it with open_body()."""
        with self.open_body() as body:
            return body.read()


class Outbox:
    """The queue, its delivery loop and its state (thread-safe)."""

    def __init__(self, path: Path, *, base_delay: float = 2.0, max_delay: float = 600.0,
                 max_attempts: int = 50, clock: Callable[[], float] = time.time) -> None:
        self.path = path
        self.spool = path.with_name(path.name.removesuffix(".db") + ".bodies")
        self.base_delay, self.max_delay, self.max_attempts = base_delay, max_delay, max_attempts
        self.clock = clock
        self._lock = threading.Lock()
        self._db = open_durable(path)
        with state_file(path):  # a corrupted or full file is named at start, not mid-way
            self._db.executescript(_SCHEMA)
            columns = {row[1] for row in self._db.execute("PRAGMA table_info(outbox)")}
            if "body_file" not in columns:  # an outbox of 0.1.0: bodies in the rows
                self._db.execute("ALTER TABLE outbox ADD COLUMN body_file TEXT")
            # A crash while sending: try again (the operator deduplicates on Message-ID).
            self._db.execute("UPDATE outbox SET state = 'queued' WHERE state = 'sending'")
            # Bodies an earlier bifente kept for messages done (failed ones, and sent ones
            # held in the row); their files go in the sweep.
            self._db.execute("UPDATE outbox SET body = X'', body_file = NULL "
                             "WHERE state IN ('sent', 'failed') "
                             "AND (body_file IS NOT NULL OR length(body) > 0)")
            self.spool.mkdir(mode=0o700, exist_ok=True)
            self._sweep()
        self._wakeup = asyncio.Event()

    def _sweep(self) -> None:
        """Delete the files no waiting row names: a body being written or not yet committed
        when the daemon stopped, or the body of a message done (sent or failed) whose deletion
        it did not reach, or which an earlier bifente kept."""
        kept = {name for (name,) in self._db.execute(
            "SELECT body_file FROM outbox WHERE body_file IS NOT NULL "
            "AND state IN ('queued', 'sending')")}
        for entry in self.spool.iterdir():
            if entry.name not in kept and not entry.is_dir():  # a folder is not ours to clear
                entry.unlink(missing_ok=True)

    def new_body(self) -> Path:
        """A new empty file (0600) in the spool directory for a body to be written into, then
        passed to enqueue(); the caller deletes it if it never gets there."""
        path = self.spool / f"{secrets.token_hex(16)}{_PARTIAL}"
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        return path

    def _spooled(self, body: bytes | Path) -> str:
        """The body as a durable file in the spool directory; its name."""
        if isinstance(body, bytes):
            path = self.new_body()
            path.write_bytes(body)
        else:
            path = body
        with path.open("rb+") as f:  # on disk before the row that names it is committed
            os.fsync(f.fileno())
        final = path.with_name(path.name.removesuffix(_PARTIAL) + _BODY)
        path.rename(final)
        fd = os.open(self.spool, os.O_RDONLY)
        try:
            os.fsync(fd)  # the rename too
        finally:
            os.close(fd)
        return final.name

    def _tx(self) -> contextlib.AbstractContextManager[sqlite3.Connection]:
        return transaction(self._db, self._lock)

    def enqueue(self, message_id: str, sender: str, recipients: tuple[str, ...],
                body: bytes | Path) -> bool:
        """Store a message for delivery; False when that Message-ID is already there.

        `body` is the message, or a file from new_body() holding it (moved into the outbox
        or deleted, whatever happens).
        """
        return self._enqueue(None, message_id, sender, recipients, body) == message_id

    def enqueue_once(self, client: str, key: str, message_id: str, sender: str,
                     recipients: tuple[str, ...], body: bytes | Path) -> str:
        """Queue a message under a client's idempotency key, in one transaction; the
        Message-ID queued under that key (an earlier one when the key was used before)."""
        queued = self._enqueue((client, key), message_id, sender, recipients, body)
        assert queued is not None
        return queued

    def _enqueue(self, idempotency: tuple[str, str] | None, message_id: str, sender: str,
                 recipients: tuple[str, ...], body: bytes | Path) -> str | None:
        if isinstance(body, Path) and (body.parent != self.spool
                                       or not body.name.endswith(_PARTIAL)):
            raise ValueError(f"{body} is not a body from this outbox's new_body()")
        name = None
        try:
            if not recipients:
                raise ValueError("a message needs at least one recipient")
            name = self._spooled(body)
            with self._tx() as db:
                if idempotency is not None:
                    row = db.execute("SELECT message_id FROM idempotency WHERE client = ? "
                                     "AND key = ?", idempotency).fetchone()
                    if row is not None:
                        return str(row[0])
                    db.execute("INSERT INTO idempotency (client, key, message_id) "
                               "VALUES (?, ?, ?)", (*idempotency, message_id))
                cursor = db.execute(
                    "INSERT OR IGNORE INTO outbox (message_id, sender, recipients, body, "
                    "body_file, state, next_attempt, created) "
                    "VALUES (?, ?, ?, ?, ?, 'queued', ?, ?)",
                    (message_id, sender, "\n".join(recipients), b"", name, 0.0, self.clock()))
                if cursor.rowcount == 1:
                    name = None  # the row holds it now
                    queued: str | None = message_id
                else:
                    queued = message_id if idempotency is not None else None
        finally:
            if name is not None:  # not queued: the file goes
                (self.spool / name).unlink(missing_ok=True)
            elif isinstance(body, Path) and body.exists():
                body.unlink(missing_ok=True)  # refused before it was moved in
        self._wakeup.set()
        return queued

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
            row = self._db.execute(f"{_SELECT} WHERE message_id = ?",
                                   (message_id,)).fetchone()
        return self._item(row) if row else None

    def counts(self) -> dict[str, int]:
        """How many messages in each state."""
        with self._lock:
            rows = self._db.execute("SELECT state, COUNT(*) FROM outbox GROUP BY state")
            return {state: n for state, n in rows}

    def _claim(self) -> OutboxItem | None:
        with self._tx() as db:
            row = db.execute(
                f"{_SELECT} WHERE state = 'queued' AND next_attempt <= ? "
                "ORDER BY next_attempt, created LIMIT 1", (self.clock(),)).fetchone()
            if row is None:
                return None
            db.execute("UPDATE outbox SET state = 'sending', attempts = attempts + 1 "
                       "WHERE message_id = ?", (row[0],))
        return self._item(row)

    def _done(self, item: OutboxItem) -> None:
        self._end(item, "sent", None)

    def _retry(self, item: OutboxItem, error: str, permanent: bool) -> None:
        attempts = item.attempts + 1
        if permanent or attempts >= self.max_attempts:
            self._end(item, "failed", error[:500])
            return
        delay = min(self.max_delay, self.base_delay * 2 ** (attempts - 1))
        delay *= 0.5 + random.random() / 2  # jitter: many terminals must not retry in step
        with self._tx() as db:
            db.execute("UPDATE outbox SET state = 'queued', next_attempt = ?, last_error = ? "
                       "WHERE message_id = ?", (self.clock() + delay, error[:500],
                                                item.message_id))

    def _end(self, item: OutboxItem, state: str, error: str | None) -> None:
        """The message is done with (sent, or failed for good): the row keeps the outcome,
        the body goes, since nothing sends it again."""
        with self._tx() as db:
            db.execute("UPDATE outbox SET state = ?, sent_at = ?, last_error = ?, "
                       "body = X'', body_file = NULL WHERE message_id = ?",
                       (state, self.clock() if state == "sent" else None, error,
                        item.message_id))
        if item.body_path is not None:  # (a crash before this: _sweep at the next start)
            item.body_path.unlink(missing_ok=True)

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

    def _item(self, row: tuple[Any, ...]) -> OutboxItem:
        path = self.spool / row[7] if row[7] else None
        return OutboxItem(row[0], row[1], tuple(row[2].split("\n")), row[4], row[5], row[6],
                          path, b"" if path else bytes(row[3]))

    def close(self) -> None:
        """Close the database (idempotent)."""
        with self._lock:
            self._db.close()


