"""Verification: walk the chain on a read-only snapshot, check the anchor and an optional
checkpoint, and report the first fault (docs/audit.md)."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bifente.edged.state.audit.anchor import Anchor, BadAnchor, anchor_problem, read_anchor_with
from bifente.edged.state.audit.db import connect_readonly
from bifente.edged.state.audit.record import GENESIS, HEX64, digest

__all__ = ["VerifyReport", "verify"]


@dataclass(frozen=True)
class VerifyReport:
    """What `verify` found: ok, or the first problem (`first_bad_seq` None if not a record)."""

    ok: bool
    records: int
    first_bad_seq: int | None
    reason: str


@dataclass
class _Walk:
    count: int = 0
    last_seq: int = 0
    # The hashes of the records the anchor and the checkpoint name, by seq.
    hashes: dict[int, str] = field(default_factory=dict)
    problem: tuple[str, int | None] | None = None


def _row_problem(row: tuple[Any, ...], expected: int,
                 prev: bytes) -> tuple[str, int | None] | None:
    seq = row[0]
    if seq < expected:
        return f"record {seq} inserted (sequence numbers start at 1)", seq
    if seq > expected:
        what = (f"record {expected} missing" if seq == expected + 1
                else f"records {expected} to {seq - 1} missing")
        how = f"log starts at {seq}" if expected == 1 else (
            f"sequence jumps from {expected - 1} to {seq}")
        return f"{what} ({how})", expected
    for name, value in zip(("time", "event", "actor", "fields", "prev", "hash"), row[1:],
                           strict=True):
        if not isinstance(value, bytes):
            return f"record {seq} altered (malformed {name})", seq
    if not HEX64.fullmatch(row[5]) or not HEX64.fullmatch(row[6]):
        return f"record {seq} altered (malformed prev or hash)", seq
    if bytes.fromhex(row[5].decode()) != prev:
        after = "is not the genesis value" if seq == 1 else f"does not match record {seq - 1}"
        return f"record {seq} inserted or reordered (prev {after})", seq
    if digest(prev, seq, tuple(row[1:5])).hex() != row[6].decode():
        return f"record {seq} altered (hash mismatch)", seq
    return None


def _walk(conn: sqlite3.Connection, remember: frozenset[int]) -> _Walk:
    walk = _Walk()
    prev, expected = GENESIS, 1
    for row in conn.execute("SELECT seq, time, event, actor, fields, prev, hash FROM records "
                            "ORDER BY seq"):
        walk.count += 1
        if walk.problem is not None:
            continue  # keep counting: the report gives the size of the log
        walk.problem = _row_problem(row, expected, prev)
        if walk.problem is not None:
            continue
        seq = row[0]
        prev, expected, walk.last_seq = bytes.fromhex(row[6].decode()), seq + 1, seq
        if seq in remember:
            walk.hashes[seq] = row[6].decode()
    return walk


def _checkpoint_problem(walk: _Walk,
                        checkpoint: tuple[int, str]) -> tuple[str, int | None] | None:
    seq, pinned = checkpoint
    if seq == 0:
        return None
    if walk.last_seq < seq:
        return (f"log ends at {walk.last_seq}, before the checkpoint at record {seq} "
                "(truncated, or an older copy)", walk.last_seq + 1)
    if walk.hashes.get(seq) != pinned:
        return (f"record {seq} does not match the checkpoint (history rewritten up to it)",
                seq)
    return None


def verify(path: Path, anchor_path: Path, key: bytes | None,
           checkpoint: tuple[int, str] | None = None) -> VerifyReport:
    """Walk the log at `path` and check it against its anchor (and a checkpoint's (seq, hash))."""
    try:
        conn = connect_readonly(path)
    except sqlite3.Error as exc:
        return VerifyReport(False, 0, None, f"cannot open the log ({exc})")
    anchor: Anchor | None = None
    anchor_error = None

    def begin() -> None:
        # A read transaction's snapshot starts at its first read (WAL): taken here, under the
        # anchor's shared lock, it matches the anchor read with it however long the walk.
        conn.execute("BEGIN")
        conn.execute("SELECT 1 FROM records LIMIT 1").fetchall()

    try:
        conn.text_factory = bytes  # hash the bytes as stored
        try:
            anchor = read_anchor_with(anchor_path, begin)
        except BadAnchor as exc:
            anchor_error = str(exc)
            if not conn.in_transaction:
                begin()
        # The records the anchor names: its own, and the end of the group it announced.
        named = [anchor.seq, anchor.next[0] if anchor.next else None] if anchor else []
        named.append(checkpoint[0] if checkpoint else None)
        walk = _walk(conn, frozenset(seq for seq in named if seq is not None))
    except sqlite3.DatabaseError as exc:
        return VerifyReport(False, 0, None, f"not an audit log ({exc})")
    finally:
        conn.close()
    if walk.problem is not None:
        return VerifyReport(False, walk.count, walk.problem[1], walk.problem[0])
    problem = (("anchor unreadable (" + anchor_error + ")", None) if anchor_error is not None
               else anchor_problem(anchor, key, walk.last_seq, walk.hashes.get))
    if problem is None and checkpoint is not None:
        problem = _checkpoint_problem(walk, checkpoint)
    if problem is not None:
        return VerifyReport(False, walk.count, problem[1], problem[0])
    summary = _ok_summary(walk.count, anchor, key)
    if checkpoint is not None:
        summary += f"; matches the checkpoint at record {checkpoint[0]}"
    return VerifyReport(True, walk.count, None, summary)


def _ok_summary(count: int, anchor: Anchor | None, key: bytes | None) -> str:
    if count == 0:
        return "empty log"
    text = f"{count} record{'s' if count != 1 else ''}, chain intact, "
    if anchor is None:
        return text + "no anchor yet"
    text += f"anchor at record {anchor.seq}"
    if anchor.seq < count:
        text += f" ({count - anchor.seq} behind, announced: a crash after the commit)"
    text += " (MAC checked)" if key is not None else " (MAC not checked)"
    if anchor.other_slot_torn:
        # What a crash while writing that slot leaves; an edit could make it too, rolling the
        # anchor back by one write (docs/audit.md, "What the anchor does not protect").
        text += "; the other anchor slot is torn (a crash while writing it, or an edit)"
    return text
