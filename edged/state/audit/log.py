"""The audit log's writer and reader: one writer process (the daemon) appending on its own
thread, anchoring each record, and reads of the records (docs/audit.md)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import errno
import json
import logging
import os
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Self, TextIO

from bifente.edged.state.audit.anchor import AnchorWriter, BadAnchor, anchor_problem, read_anchor
from bifente.edged.state.audit.db import connect_readonly, connect_writer, lock_writer
from bifente.edged.state.audit.errors import AuditError, AuditTampered
from bifente.edged.state.audit.record import GENESIS, AuditRecord, now, prepare, record_hash
from bifente.edged.state.audit.verify import VerifyReport, verify

__all__ = ["AuditLog"]

_log = logging.getLogger(__name__)

_BATCH = 500
# Group commit (docs/audit.md, "Writing"): a record nobody waits for waits up to this long
# for others, so that a burst costs one announcement, one commit and one move instead of
# three syncs per record (fewer syncs also spare a Pi's SD card). A record someone waits
# for (`append`, `aappend`, `flush` and what calls it, `close`) is written at once.
GROUP_WINDOW_S = 0.02
GROUP_MAX = 64  # records per group: also bounds what one torn anchor slot can hide


@dataclass
class _Queued:
    """A record submitted and not yet written: its time is the submission's."""

    event: str
    actor: str
    text: str
    time: str
    at: float  # time.monotonic() at submission: when its group's window closes
    urgent: bool
    future: concurrent.futures.Future[AuditRecord] = field(
        default_factory=concurrent.futures.Future)


class AuditLog:
    """The audit log: one writer process (the daemon), any number of threads, and readers."""

    def __init__(self, path: Path | str, *, anchor_key: bytes | None = None,
                 readonly: bool = False, group_window: float = GROUP_WINDOW_S) -> None:
        """Open (or create) the log at `path`; `anchor_key` MACs `<path>.anchor`;
        `group_window`: how long a record nobody waits for waits for others (seconds)."""
        self.path = Path(path)
        self.anchor_path = Path(f"{self.path}.anchor")
        if anchor_key is not None and len(anchor_key) < 16:
            raise ValueError("the audit anchor key must be at least 16 bytes")
        if not 0 <= group_window <= 1:
            raise ValueError("the audit group window is between 0 and 1 s")
        self._key = anchor_key
        self._readonly = readonly
        self._window = group_window
        self._lock = threading.Lock()  # the database and the anchor: held across fsyncs
        self._lock_fd: int | None = None
        # The queue of submitted records, the writer thread and whether it still takes
        # records: a lock of its own, never held across an fsync, so that `submit` on the
        # event loop does not wait for a write.
        self._submit_lock = threading.Lock()
        self._queue_changed = threading.Condition(self._submit_lock)
        self._queue: deque[_Queued] = deque()
        self._urgent = 0  # queued records someone waits for, plus waiting `flush` calls
        self._draining = False  # a drain is scheduled or running on the writer thread
        self._writer: concurrent.futures.ThreadPoolExecutor | None = None
        self._accepting = True
        self._closed = False
        # The writer's view of the end of the log, (seq, hash), read once at open: the one
        # writer process (the .lock) is the only one appending. None: read it again.
        self._head: tuple[int, str] | None = None
        self._anchor: AnchorWriter | None = None
        if readonly:
            if not self.path.is_file():
                raise FileNotFoundError(errno.ENOENT, f"no audit log at {self.path}")
            self._conn = connect_readonly(self.path)
            return
        self._lock_fd = lock_writer(self.path)
        try:
            self._conn = connect_writer(self.path)
            self._open_checks()
        except BaseException:
            if hasattr(self, "_conn"):
                self._conn.close()
            if self._anchor is not None:
                self._anchor.close()
            os.close(self._lock_fd)
            raise

    def _open_checks(self) -> None:
        # Appending would move the anchor and erase the evidence: refuse instead.
        try:
            anchor = read_anchor(self.anchor_path)
        except BadAnchor as exc:
            raise AuditTampered(self.path, f"anchor unreadable ({exc})", None) from None
        last = self._conn.execute(
            "SELECT seq, hash FROM records ORDER BY seq DESC LIMIT 1").fetchone()
        last_seq = last[0] if last else 0

        def hash_at(seq: int) -> str | None:
            row = self._conn.execute("SELECT hash FROM records WHERE seq = ?", (seq,)).fetchone()
            return row[0] if row else None

        problem = anchor_problem(anchor, self._key, last_seq, hash_at)
        if problem is not None:
            raise AuditTampered(self.path, *problem)
        if anchor is not None and anchor.other_slot_torn:
            _log.warning("audit log %s: one slot of %s is torn, the anchor is the other "
                         "(a crash while writing it; an edit would roll the anchor back by "
                         "one write): the next record overwrites it", self.path,
                         self.anchor_path)
        self._anchor = AnchorWriter(self.anchor_path, self._key, anchor)
        self._head = (last[0], last[1]) if last else (0, GENESIS.hex())
        if last and (anchor is None or anchor.seq != last_seq):
            self._write_anchor(last_seq, last[1])  # catch up after a crash

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        """Write what was submitted, close the database and release the writer lock;
        idempotent."""
        with self._queue_changed:
            writer, self._writer = self._writer, None
            self._accepting = False
            self._queue_changed.notify_all()  # a group waiting for its window goes now
        if writer is not None:
            writer.shutdown(wait=True)
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._conn.close()
            if self._anchor is not None:
                self._anchor.close()
            if self._lock_fd is not None:
                os.close(self._lock_fd)
                self._lock_fd = None

    def _ensure_open(self) -> None:
        if self._closed:
            raise AuditError("the audit log is closed")

    def append(self, event: str, /, *, actor: str = "", **fields: Any) -> AuditRecord:
        """Add one record and wait until it is durable (three syncs, about a millisecond,
        shared with the records queued before it)."""
        return self._enqueue(prepare(event, actor, fields), urgent=True).result()

    def submit(self, event: str, /, *, actor: str = "",
               **fields: Any) -> concurrent.futures.Future[AuditRecord]:
        """Check the record now (ValueError here), append it on the writer thread.

        Records are written in submission order, with the time of their submission; the
        event loop never waits for an fsync (review M6). The record waits up to the group
        window for others (module top). `flush`, `records`, `export` and `verify` see every
        submitted record.
        """
        return self._enqueue(prepare(event, actor, fields), urgent=False)

    async def aappend(self, event: str, /, *, actor: str = "", **fields: Any) -> AuditRecord:
        """Append on the writer thread at once and wait until the record is durable, without
        stalling the event loop (an intent recorded before its action)."""
        future = self._enqueue(prepare(event, actor, fields), urgent=True)
        return await asyncio.wrap_future(future)

    def _enqueue(self, prepared: tuple[str, str, str], *,
                 urgent: bool) -> concurrent.futures.Future[AuditRecord]:
        if self._readonly:
            raise AuditError("the audit log was opened read-only")
        # Not self._lock: the writer holds that one through its fsyncs (a few ms each).
        with self._queue_changed:
            if not self._accepting:
                raise AuditError("the audit log is closed")
            # The time under the queue's lock: times follow the order of the chain.
            queued = _Queued(*prepared, now(), time.monotonic(), urgent)
            if not self._draining:
                if self._writer is None:
                    self._writer = concurrent.futures.ThreadPoolExecutor(
                        max_workers=1, thread_name_prefix="audit-writer")
                # The drain reads the queue under this lock: it sees the record below.
                self._writer.submit(self._drain)
                self._draining = True
            self._queue.append(queued)
            self._urgent += urgent
            if urgent or len(self._queue) >= GROUP_MAX:
                self._queue_changed.notify_all()  # a group waiting for its window goes now
        return queued.future

    def _drain(self) -> None:
        # On the writer thread: write the queue a group at a time until it is empty. A
        # group waits for its first record's window unless someone waits for a record in
        # it, the log is closing, or the group is full.
        try:
            while self._write_next_group():
                pass
        finally:
            with self._queue_changed:
                # Normally the queue is empty here; after an escaping BaseException the next
                # submission schedules a new drain for what is left.
                self._draining = False
                self._queue_changed.notify_all()  # flush() callers

    def _write_next_group(self) -> bool:
        with self._queue_changed:
            if not self._queue:
                return False
            closes = self._queue[0].at + self._window
            while self._accepting and not self._urgent and len(self._queue) < GROUP_MAX:
                left = closes - time.monotonic()
                if left <= 0:
                    break
                self._queue_changed.wait(left)
            group = [self._queue.popleft() for _ in range(min(len(self._queue), GROUP_MAX))]
            self._urgent -= sum(q.urgent for q in group)
            # The next group is written at once: this one's move can wait for that group's
            # announcement (step 3 in `_write_group`).
            next_now = bool(self._queue) and (not self._accepting or self._urgent > 0
                                              or len(self._queue) >= GROUP_MAX)
        try:
            records = self._write_group(group, move=not next_now)
        except Exception as exc:
            # Nobody may be waiting for these futures: say it here (the event names only).
            _log.error("audit log %s: could not append %s: %s", self.path,
                       ", ".join(q.event for q in group), exc,
                       exc_info=not isinstance(exc, OSError | sqlite3.Error | AuditError))
            for q in group:
                if q.future.set_running_or_notify_cancel():
                    q.future.set_exception(exc)
            return True
        for q, record in zip(group, records, strict=True):
            # A waiter that gave up cancelled its future: the record stays written.
            if q.future.set_running_or_notify_cancel():
                q.future.set_result(record)
        return True

    def flush(self) -> None:
        """Wait until every submitted record is written (or failed)."""
        if threading.current_thread().name.startswith("audit-writer"):
            return
        with self._queue_changed:
            if not self._draining:
                return
            self._urgent += 1  # the group waiting for its window goes now
            self._queue_changed.notify_all()
            try:
                while self._draining:
                    self._queue_changed.wait()
            finally:
                self._urgent -= 1

    def head(self) -> tuple[int, str]:
        """(seq, hash) of the last record written; (0, the genesis hash) when empty."""
        self.flush()
        with self._lock:
            self._ensure_open()
            row = self._conn.execute(
                "SELECT seq, hash FROM records ORDER BY seq DESC LIMIT 1").fetchone()
        return (row[0], row[1]) if row else (0, GENESIS.hex())

    def _write_group(self, group: list[_Queued], *, move: bool) -> list[AuditRecord]:
        # One group of records, and why a crash at any step leaves a log that verifies
        # (docs/audit.md, "The anchor"; the writer never leaves more than one group past
        # the anchor, and only the one it announced):
        # 1. The anchor announces the group: (seq-1, prev, next=(its last seq, hash)),
        #    written over the older of the anchor file's two slots and fdatasynced
        #    (anchor.py). A crash before the sync leaves the previous anchor (in the other
        #    slot, if this one is torn); after it, the log ends at seq-1 and `next` is unused.
        # 2. The group's INSERTs, committed in one transaction: with WAL and synchronous=FULL
        #    the commit is fsynced, so when this returns the records survive SIGKILL and
        #    power loss (what `append` and `aappend` wait for, review L3). A crash before the
        #    commit is durable loses the whole group; after it, the log ends past the anchor
        #    with exactly the announced group, which verify and the next open accept (the
        #    open moves the anchor to it). Step 1 was durable before the INSERTs began.
        # 3. The anchor moves to the group's last record: (seq, hash), the other slot,
        #    fdatasync. Skipped (`move` false) when the next group is written at once: its
        #    step 1 names this group's last record as the anchored one, MACed, before
        #    anything else happens, so the state between the two is exactly the state after
        #    a crash in step 2.
        # The end of the log is kept in memory (no SELECT): one writer process holds the
        # .lock, and after any failure it is read again.
        with self._lock:
            self._ensure_open()
            assert self._anchor is not None, "the writer opened the anchor"
            # Readers (verify) see the anchor and the log between two groups only.
            with self._anchor.exclusive():
                conn = self._conn
                try:
                    if self._head is None:
                        last = conn.execute(
                            "SELECT seq, hash FROM records ORDER BY seq DESC LIMIT 1").fetchone()
                        self._head = (last[0], last[1]) if last else (0, GENESIS.hex())
                    anchored = self._head
                    seq, prev = anchored
                    records = []
                    for q in group:
                        seq += 1
                        digest = record_hash(bytes.fromhex(prev), seq, q.time, q.event,
                                             q.actor, q.text).hex()
                        records.append(AuditRecord(seq, q.time, q.event, q.actor, q.text,
                                                   prev, digest))
                        prev = digest
                    # No announcement, no commit: after a crash the group past the anchor
                    # is provably ours (review M7).
                    self._write_anchor(*anchored, (seq, prev))
                    rows = [(r.seq, r.time, r.event, r.actor, r.fields, r.prev, r.hash)
                            for r in records]
                    conn.execute("BEGIN IMMEDIATE")
                    try:
                        conn.executemany("INSERT INTO records VALUES (?, ?, ?, ?, ?, ?, ?)",
                                         rows)
                        conn.execute("COMMIT")
                    except BaseException:
                        if conn.in_transaction:
                            conn.execute("ROLLBACK")
                        raise
                except BaseException:
                    self._head = None  # whatever happened, the database says where the log ends
                    raise
                self._head = (seq, prev)
                if not move:
                    return records  # the next group's announcement anchors this one (step 3)
                try:
                    self._write_anchor(seq, prev)
                except OSError:
                    # The records are committed; the anchor lags until the next group.
                    _log.exception("audit log %s: could not write the anchor", self.path)
        return records

    def _write_anchor(self, seq: int, digest: str, nxt: tuple[int, str] | None = None) -> None:
        assert self._anchor is not None, "the writer opened the anchor"
        self._anchor.write(seq, digest, nxt)

    def records(self, since: int = 0) -> Iterator[AuditRecord]:
        """The records with seq > `since`, in order (read in batches; appends may go on)."""
        if since < 0:
            raise ValueError("since must be >= 0")
        self.flush()
        last = since
        while True:
            with self._lock:
                self._ensure_open()
                try:
                    rows = self._conn.execute(
                        "SELECT seq, time, event, actor, fields, prev, hash FROM records "
                        "WHERE seq > ? ORDER BY seq LIMIT ?", (last, _BATCH)).fetchall()
                except sqlite3.DatabaseError as exc:
                    raise AuditError(f"cannot read the audit log at {self.path}: {exc}") from None
            if not rows:
                return
            for row in rows:
                yield AuditRecord(*row)
            last = rows[-1][0]

    def export(self, out: TextIO, since: int = 0) -> int:
        """Write the records with seq > `since` to `out` as JSON lines; return how many."""
        count = 0
        for record in self.records(since):
            out.write(json.dumps(record.to_json(), ensure_ascii=False, separators=(",", ":")))
            out.write("\n")
            count += 1
        return count

    def verify(self, checkpoint: tuple[int, str] | None = None) -> VerifyReport:
        """Walk the chain and check the anchor (and a checkpoint's (seq, hash)) on a read-only
        snapshot; report the first fault."""
        self._ensure_open()
        self.flush()
        return verify(self.path, self.anchor_path, self._key, checkpoint)
