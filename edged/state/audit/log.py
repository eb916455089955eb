"""The audit log's writer and reader: one writer process (the daemon) appending on its own
thread, anchoring each record, and reads of the records (docs/audit.md)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import errno
import json
import logging
import os
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import Any, Self, TextIO

from edged.state.audit.anchor import AnchorWriter, BadAnchor, anchor_problem, read_anchor
from edged.state.audit.db import connect_readonly, connect_writer, lock_writer
from edged.state.audit.errors import AuditError, AuditTampered
from edged.state.audit.record import GENESIS, AuditRecord, now, prepare, record_hash
from edged.state.audit.verify import VerifyReport, verify

__all__ = ["AuditLog"]

_log = logging.getLogger(__name__)

_BATCH = 500


class AuditLog:
    """The audit log: one writer process (the daemon), any number of threads, and readers."""

    def __init__(self, path: Path | str, *, anchor_key: bytes | None = None,
                 readonly: bool = False) -> None:
        """Open (or create) the log at `path`; `anchor_key` MACs `<path>.anchor`."""
        self.path = Path(path)
        self.anchor_path = Path(f"{self.path}.anchor")
        if anchor_key is not None and len(anchor_key) < 16:
            raise ValueError("the audit anchor key must be at least 16 bytes")
        self._key = anchor_key
        self._readonly = readonly
        self._lock = threading.Lock()  # the database and the anchor: held across fsyncs
        self._lock_fd: int | None = None
        # The writer thread and whether it still takes records: a lock of its own, never held
        # across an fsync, so that `submit` on the event loop does not wait for a write.
        self._submit_lock = threading.Lock()
        self._writer: concurrent.futures.ThreadPoolExecutor | None = None
        self._accepting = True
        self._closed = False
        # Records submitted and not yet taken by the writer thread (under _submit_lock).
        self._queued = 0
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
        with self._submit_lock:
            writer, self._writer = self._writer, None
            self._accepting = False
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
        """Add one record and move the anchor; synchronous (three syncs, about a millisecond)."""
        return self._write(*prepare(event, actor, fields))

    def submit(self, event: str, /, *, actor: str = "",
               **fields: Any) -> concurrent.futures.Future[AuditRecord]:
        """Check the record now (ValueError here), append it on the writer thread.

        Records are written in submission order; the event loop never waits for an fsync
        (review M6). `flush`, `records`, `export` and `verify` see every submitted record.
        """
        prepared = prepare(event, actor, fields)
        # Not self._lock: the writer holds that one through its fsyncs (a few ms each).
        with self._submit_lock:
            if not self._accepting:
                raise AuditError("the audit log is closed")
            if self._writer is None:
                self._writer = concurrent.futures.ThreadPoolExecutor(
                    max_workers=1, thread_name_prefix="audit-writer")
            future = self._writer.submit(self._write_logged, *prepared)
            self._queued += 1
        return future

    def _write_logged(self, event: str, actor: str, text: str) -> AuditRecord:
        with self._submit_lock:
            self._queued -= 1
        try:
            return self._write(event, actor, text)
        except Exception:
            # Nobody may be waiting for this future: say it here (the event name only).
            _log.exception("audit log %s: could not append %s", self.path, event)
            raise

    def flush(self) -> None:
        """Wait until every submitted record is written (or failed)."""
        writer = self._writer
        if writer is not None and not threading.current_thread().name.startswith("audit-writer"):
            with contextlib.suppress(RuntimeError):  # shut down: nothing left to wait for
                writer.submit(lambda: None).result()

    def head(self) -> tuple[int, str]:
        """(seq, hash) of the last record written; (0, the genesis hash) when empty."""
        self.flush()
        with self._lock:
            self._ensure_open()
            row = self._conn.execute(
                "SELECT seq, hash FROM records ORDER BY seq DESC LIMIT 1").fetchone()
        return (row[0], row[1]) if row else (0, GENESIS.hex())

    def _write(self, event: str, actor: str, text: str) -> AuditRecord:
        # One record, and why a crash at any step leaves a log that verifies (docs/audit.md,
        # "The anchor"; the writer never leaves more than one record past the anchor, and
        # only the one it announced):
        # 1. The anchor announces the record: (seq-1, prev, next=(seq, hash)), written over
        #    the older of the anchor file's two slots and fdatasynced (anchor.py). A crash
        #    before the sync leaves the previous anchor (in the other slot, if this one is
        #    torn); after it, the log ends at seq-1 and `next` is unused.
        # 2. One INSERT, committed on its own (autocommit): with WAL and synchronous=FULL the
        #    commit is fsynced, so when this returns the record survives SIGKILL and power
        #    loss (what Daemon.audit_intent waits for, review L3). A crash before the commit
        #    is durable loses the whole record; after it, the log ends one past the anchor
        #    with exactly the announced record, which verify and the next open accept (the
        #    open moves the anchor to it). Step 1 was durable before the INSERT began.
        # 3. The anchor moves to the record: (seq, hash), the other slot, fdatasync.
        #    Skipped while another record is queued behind this one: that record's step 1
        #    names this one as its anchored record, MACed, before anything else happens, so
        #    the state between the two is exactly the state after a crash in step 2.
        # The end of the log is kept in memory (no SELECT, no explicit transaction): one
        # writer process holds the .lock, and after any failure it is read again.
        with self._lock:
            self._ensure_open()
            if self._readonly:
                raise AuditError("the audit log was opened read-only")
            assert self._anchor is not None, "the writer opened the anchor"
            # Readers (verify) see the anchor and the log between two records only.
            with self._anchor.exclusive():
                conn = self._conn
                try:
                    if self._head is None:
                        last = conn.execute(
                            "SELECT seq, hash FROM records ORDER BY seq DESC LIMIT 1").fetchone()
                        self._head = (last[0], last[1]) if last else (0, GENESIS.hex())
                    seq, prev = self._head[0] + 1, self._head[1]
                    time = now()
                    digest = record_hash(bytes.fromhex(prev), seq, time, event, actor, text).hex()
                    record = AuditRecord(seq, time, event, actor, text, prev, digest)
                    # No announcement, no commit: after a crash the one record past the anchor
                    # is provably ours (review M7).
                    self._write_anchor(seq - 1, prev, (seq, digest))
                    conn.execute("INSERT INTO records VALUES (?, ?, ?, ?, ?, ?, ?)",
                                 (seq, time, event, actor, text, prev, digest))
                except BaseException:
                    self._head = None  # whatever happened, the database says where the log ends
                    raise
                self._head = (seq, digest)
                if self._queued:
                    return record  # the next record's announcement anchors this one (step 3)
                try:
                    self._write_anchor(seq, digest)
                except OSError:
                    # The record is committed; the anchor lags until the next append succeeds.
                    _log.exception("audit log %s: could not write the anchor", self.path)
        return record

    async def aappend(self, event: str, /, *, actor: str = "", **fields: Any) -> AuditRecord:
        """`submit` and wait until the record is durable, without stalling the event loop."""
        return await asyncio.wrap_future(self.submit(event, actor=actor, **fields))

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
