"""The tail anchor beside the log: the last record's (seq, hash), MACed, and the record being
committed, announced before its commit (docs/audit.md)."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edged.state.audit.record import GENESIS, HEX64, canonical

__all__ = ["Anchor", "BadAnchor", "anchor_mac", "anchor_problem", "read_anchor", "write_anchor"]

_ANCHOR_MAC_TAG = b"bifente-audit-anchor-v1\n"  # domain separation for the anchor HMAC
_ANCHOR_MAX_BYTES = 4096


@dataclass(frozen=True)
class Anchor:
    """The anchor as read: `seq` 0 (with the genesis hash) before the first record."""

    seq: int
    hash: str
    mac: str | None = None
    next: tuple[int, str] | None = None  # the record being committed, announced before it


class BadAnchor(Exception):
    """The anchor file is unreadable or malformed."""


def _anchor_body(seq: int, digest: str, nxt: tuple[int, str] | None) -> dict[str, Any]:
    body: dict[str, Any] = {"hash": digest, "seq": seq}
    if nxt is not None:
        body["next"] = {"hash": nxt[1], "seq": nxt[0]}
    return body


def anchor_mac(key: bytes, seq: int, digest: str, nxt: tuple[int, str] | None = None) -> str:
    """HMAC-SHA-256 of the tag and the anchor's canonical body, hex."""
    body = canonical(_anchor_body(seq, digest, nxt)).encode()
    return hmac.new(key, _ANCHOR_MAC_TAG + body, hashlib.sha256).hexdigest()


def read_anchor(path: Path) -> Anchor | None:
    """The anchor at `path`, None if there is none; BadAnchor if it cannot be trusted."""
    try:
        with path.open("rb") as f:
            raw = f.read(_ANCHOR_MAX_BYTES + 1)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise BadAnchor(exc.strerror or str(exc)) from None
    if len(raw) > _ANCHOR_MAX_BYTES:
        raise BadAnchor("too large")
    try:
        data = json.loads(raw)
    except ValueError:
        raise BadAnchor("not JSON") from None
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
    nxt = data.get("next")
    if nxt is not None:
        if not isinstance(nxt, dict) or type(nxt.get("seq")) is not int \
                or nxt["seq"] != seq + 1 or not isinstance(nxt.get("hash"), str) \
                or not HEX64.fullmatch(nxt["hash"].encode()):
            raise BadAnchor("bad next")
        return Anchor(seq, digest, mac, (nxt["seq"], nxt["hash"]))
    return Anchor(seq, digest, mac)


def write_anchor(path: Path, key: bytes | None, seq: int, digest: str,
                 nxt: tuple[int, str] | None = None, *, new: bool | None = None) -> None:
    """Replace the anchor at `path` durably: a MACed body written to a temporary file,
    fsynced, then renamed over it. `new`: whether no anchor exists yet (looked up if None);
    the first rename also syncs the directory, later ones only replace the file."""
    body = _anchor_body(seq, digest, nxt)
    if key is not None:
        body["mac"] = anchor_mac(key, seq, digest, nxt)
    data = (canonical(body) + "\n").encode()
    tmp = f"{path}.tmp"
    # Bare system calls (open, write, fsync, close, rename): this runs once or twice per
    # record on the writer thread, and each call is a moment the event loop may wait for
    # the GIL.
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    finally:
        os.close(fd)
    if new is None:
        new = not path.exists()
    os.replace(tmp, path)
    if new:
        _fsync_dir(path.parent)


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
        expected = anchor_mac(key, anchor.seq, anchor.hash, anchor.next).encode()
        if not hmac.compare_digest(anchor.mac.encode("utf-8", "replace"), expected):
            return "anchor altered (MAC mismatch)", None
    if anchor.seq > last_seq:
        lost = anchor.seq - last_seq
        what = "last record missing" if lost == 1 else f"last {lost} records missing"
        return f"{what} (anchor says {anchor.seq}, log ends at {last_seq})", last_seq + 1
    # Behind by one is a crash between the commit and the anchor write, and only for the
    # record the anchor announced (review M7): any other tail was not written by the daemon.
    lag = last_seq - anchor.seq
    if lag > 1:
        return (f"records {anchor.seq + 2} to {last_seq} follow the anchored record "
                f"{anchor.seq} (the writer never leaves more than one unanchored: appended "
                "by someone else)", anchor.seq + 1)
    if lag == 1 and anchor.next != (last_seq, hash_at(last_seq)):
        return (f"record {last_seq} follows the anchored record {anchor.seq} but was not "
                "announced by it (appended by someone else)", last_seq)
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
