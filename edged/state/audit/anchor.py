"""The tail anchor beside the log: the last record's (seq, hash), MACed, and the record being
committed, announced before its commit (docs/audit.md, "The anchor").

The anchor file holds two fixed 4 KiB slots, written in turn in place (pwrite, fdatasync):
no temporary file, no rename, no directory update per record, which made an anchor
replacement cost four times as much. Each slot carries a write counter and a checksum; the
valid slot with the higher counter is the anchor. A crash can only tear the slot being
written, so the other one is always whole. An anchor written by an earlier bifente (one JSON
object, replaced by rename) is still read, and replaced by the slot file at the next write.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import hmac
import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bifente.edged.state.audit.record import GENESIS, HEX64, canonical

__all__ = ["Anchor", "AnchorWriter", "BadAnchor", "anchor_mac", "anchor_problem",
           "read_anchor", "read_anchor_with"]

_ANCHOR_MAC_TAG = b"bifente-audit-anchor-v1\n"  # domain separation for the anchor HMAC
# One filesystem block (and flash page) per slot: writing one slot never rewrites the
# other's block, so a power cut mid-write can only damage the slot being written.
SLOT_BYTES = 4096
_FILE_BYTES = 2 * SLOT_BYTES
_ANCHOR_MAX_BYTES = _FILE_BYTES
_PAD = b" "


@dataclass(frozen=True)
class Anchor:
    """The anchor as read: `seq` 0 (with the genesis hash) before the first record."""

    seq: int
    hash: str
    mac: str | None = None
    next: tuple[int, str] | None = None  # the record being committed, announced before it
    write: int | None = None  # the slot file's write counter (None: a one-object anchor)
    other_slot_torn: bool = False  # the other slot fails its checksum (see `read_anchor`)


class BadAnchor(Exception):
    """The anchor file is unreadable or malformed."""


def _anchor_body(seq: int, digest: str, nxt: tuple[int, str] | None,
                 write: int | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"hash": digest, "seq": seq}
    if nxt is not None:
        body["next"] = {"hash": nxt[1], "seq": nxt[0]}
    if write is not None:
        body["w"] = write
    return body


def anchor_mac(key: bytes, seq: int, digest: str, nxt: tuple[int, str] | None = None,
               write: int | None = None) -> str:
    """HMAC-SHA-256 of the tag and the anchor's canonical body (write counter included), hex."""
    body = canonical(_anchor_body(seq, digest, nxt, write)).encode()
    return hmac.new(key, _ANCHOR_MAC_TAG + body, hashlib.sha256).hexdigest()


def _checksum(fields: dict[str, Any]) -> str:
    # Catches a torn slot, not an edit (the MAC does that): anyone can recompute it.
    return hashlib.sha256(canonical(fields).encode()).hexdigest()


def _slot_bytes(key: bytes | None, seq: int, digest: str, nxt: tuple[int, str] | None,
                write: int) -> bytes:
    fields = _anchor_body(seq, digest, nxt, write)
    if key is not None:
        fields["mac"] = anchor_mac(key, seq, digest, nxt, write)
    fields["sum"] = _checksum(fields)
    data = (canonical(fields) + "\n").encode()
    assert len(data) <= SLOT_BYTES, "an anchor slot is a few hundred bytes"
    return data.ljust(SLOT_BYTES, _PAD)


def _parse(data: Any) -> Anchor:
    """One anchor object (a slot's, or an earlier bifente's whole file) checked field by field."""
    if not isinstance(data, dict):
        raise BadAnchor("not a JSON object")
    seq, digest, mac = data.get("seq"), data.get("hash"), data.get("mac")
    if type(seq) is not int or seq < 0:
        raise BadAnchor("bad seq")
    if not isinstance(digest, str) or not HEX64.fullmatch(digest.encode()):
        raise BadAnchor("bad hash")
    if seq == 0 and digest != GENESIS.hex():
        raise BadAnchor("bad hash")
    if mac is not None and not isinstance(mac, str):
        raise BadAnchor("bad mac")
    write = data.get("w")
    if write is not None and (type(write) is not int or write < 1):
        raise BadAnchor("bad write counter")
    nxt = data.get("next")
    if nxt is None:
        return Anchor(seq, digest, mac, None, write)
    if not isinstance(nxt, dict) or type(nxt.get("seq")) is not int \
            or nxt["seq"] <= seq or not isinstance(nxt.get("hash"), str) \
            or not HEX64.fullmatch(nxt["hash"].encode()):
        raise BadAnchor("bad next")
    return Anchor(seq, digest, mac, (nxt["seq"], nxt["hash"]), write)


def _read_slot(raw: bytes) -> Anchor | None:
    """The slot's anchor; None if it is torn or was never written (checked by the caller)."""
    text = raw.rstrip(_PAD)
    if not text:
        return None
    try:
        data = json.loads(text)
    except ValueError:
        return None
    if not isinstance(data, dict) or "w" not in data:
        return None
    fields = {k: v for k, v in data.items() if k != "sum"}
    if data.get("sum") != _checksum(fields):
        return None
    return _parse(fields)


def read_anchor(path: Path) -> Anchor | None:
    """The anchor at `path`, None if there is none; BadAnchor if it cannot be trusted."""
    return read_anchor_with(path, lambda: None)


def read_anchor_with(path: Path, begin: Callable[[], None]) -> Anchor | None:
    """The anchor, and `begin` (the caller's snapshot of the log) run under the same shared
    lock: the writer holds it exclusively for each record (`AnchorWriter.exclusive`), so the
    pair is a state between two records, as a crash would leave it. None if there is none."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        begin()
        return None
    except OSError as exc:
        raise BadAnchor(exc.strerror or str(exc)) from None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH)
        try:
            raw = b""
            while len(raw) <= _ANCHOR_MAX_BYTES:
                chunk = os.read(fd, _ANCHOR_MAX_BYTES + 1 - len(raw))
                if not chunk:
                    break
                raw += chunk
            begin()
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
    return _from_bytes(raw)


def _from_bytes(raw: bytes) -> Anchor:
    """The anchor file's bytes, checked: the slot file, or an earlier bifente's one object."""
    if len(raw) > _ANCHOR_MAX_BYTES:
        raise BadAnchor("too large")
    if len(raw) != _FILE_BYTES:
        try:
            data = json.loads(raw)  # an earlier bifente's anchor: one object, renamed in place
        except ValueError:
            raise BadAnchor("not JSON") from None
        return _parse(data)
    first, second = _read_slot(raw[:SLOT_BYTES]), _read_slot(raw[SLOT_BYTES:])
    if first is None and second is None:
        raise BadAnchor("both slots torn")
    if first is not None and second is not None:
        if first.write == second.write:
            raise BadAnchor("two slots with the same write counter")
        return max(first, second, key=lambda s: s.write or 0)
    newest = first or second
    assert newest is not None
    other = raw[SLOT_BYTES:] if first is not None else raw[:SLOT_BYTES]
    if not other.strip(_PAD) and newest.write == 1:
        return newest  # the file's first write: the other slot was never used
    # Only the slot being written can be torn by a crash; the valid one is then the anchor
    # from just before that write. An edit can make the same state, which rolls the anchor
    # back by one write: what the anchor cannot tell from a crash (docs/audit.md).
    return Anchor(newest.seq, newest.hash, newest.mac, newest.next, newest.write, True)


class AnchorWriter:
    """The writer's handle on the anchor file: each write goes to the older slot, in place."""

    def __init__(self, path: Path, key: bytes | None, current: Anchor | None) -> None:
        """`current`: the anchor as read at open (its write counter continues)."""
        self.path = path
        self._key = key
        self._fd: int | None = None
        # An earlier bifente's one-object anchor (or none): the slot file replaces it on the
        # first write.
        self._write = current.write if current is not None and current.write else 0
        if self._write:
            self._fd = os.open(self.path, os.O_RDWR | os.O_CLOEXEC)

    @contextlib.contextmanager
    def exclusive(self) -> Iterator[None]:
        """Hold readers (`read_anchor_with`) off while a record moves the anchor and the log."""
        fd = self._fd
        if fd is None:  # no slot file yet: nothing a reader could lock
            yield
            return
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)

    def write(self, seq: int, digest: str, nxt: tuple[int, str] | None = None) -> None:
        """Make (seq, digest[, nxt]) the anchor durably: one slot, pwrite, fdatasync."""
        counter = self._write + 1
        data = _slot_bytes(self._key, seq, digest, nxt, counter)
        if self._fd is None:
            self._create(data)
            self._write = counter
            return
        offset, done = (counter % 2) * SLOT_BYTES, 0
        while done < len(data):
            done += os.pwrite(self._fd, data[done:], offset + done)
        os.fdatasync(self._fd)  # the size never changes: the data is all there is to sync
        self._write = counter

    def _create(self, first_slot: bytes) -> None:
        # The slot file is made whole beside the old anchor (or none) and renamed over it, as
        # an earlier bifente replaced its anchor: once, at the first write.
        tmp = f"{self.path}.tmp"
        fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        try:
            data = _PAD * SLOT_BYTES + first_slot  # counter 1 goes to slot 1 % 2
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        except BaseException:
            os.close(fd)
            raise
        os.replace(tmp, self.path)
        _fsync_dir(self.path.parent)
        self._fd = fd

    def close(self) -> None:
        """Release the file."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def anchor_problem(anchor: Anchor | None, key: bytes | None, last_seq: int,
                   hash_at: Callable[[int], str | None]) -> tuple[str, int | None] | None:
    """(reason, first_bad_seq) when the anchor and the end of the log disagree."""
    if anchor is None:
        # The anchor announces each record before its commit: a log with records and no
        # anchor lost it.
        return (f"anchor missing (log ends at {last_seq})", None) if last_seq > 0 else None
    if key is not None:
        if anchor.mac is None:
            return "anchor altered (MAC missing)", None
        expected = anchor_mac(key, anchor.seq, anchor.hash, anchor.next, anchor.write).encode()
        if not hmac.compare_digest(anchor.mac.encode("utf-8", "replace"), expected):
            return "anchor altered (MAC mismatch)", None
    if anchor.seq > last_seq:
        lost = anchor.seq - last_seq
        what = "last record missing" if lost == 1 else f"last {lost} records missing"
        return f"{what} (anchor says {anchor.seq}, log ends at {last_seq})", last_seq + 1
    # Behind is a crash between a group's commit and the anchor's move, and only with the
    # group the anchor announced (ending at its `next`, MACed): any other tail was not
    # written by the daemon. The records inside the group are checked by the chain walk.
    lag = last_seq - anchor.seq
    if lag > 0:
        nxt = anchor.next
        if nxt is None or nxt[0] > last_seq or hash_at(nxt[0]) != nxt[1]:
            first = anchor.seq + 1
            what = (f"record {first} follows" if lag == 1
                    else f"records {first} to {last_seq} follow")
            return (f"{what} the anchored record {anchor.seq} but "
                    f"{'was' if lag == 1 else 'were'} not announced by it (appended by "
                    "someone else)", first)
        if nxt[0] < last_seq:
            first = nxt[0] + 1
            what = (f"record {first} follows" if first == last_seq
                    else f"records {first} to {last_seq} follow")
            return (f"{what} the group the anchor announced (records {anchor.seq + 1} "
                    f"to {nxt[0]}), which is all the writer leaves unanchored (appended by "
                    "someone else)", first)
    if anchor.seq == 0:
        return None
    if hash_at(anchor.seq) != anchor.hash:
        return (f"record {anchor.seq} does not match the anchor (history rewritten up to it)",
                anchor.seq)
    return None


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
