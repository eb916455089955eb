"""Append-only, hash-chained audit log in SQLite, with a tail anchor (docs/audit.md)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import errno
import fcntl
import hashlib
import hmac
import json
import logging
import math
import os
import re
import secrets
import sqlite3
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Self, TextIO

from apdu.identity import mask_nir, nir_key
from edged.state.keywrap import KeyWrapper, is_sealed

__all__ = [
    "ANCHOR_KEY_NAME",
    "AUDIT_DB_NAME",
    "GENESIS",
    "MAX_FIELDS_BYTES",
    "AuditError",
    "AuditLog",
    "AuditRecord",
    "AuditTampered",
    "VerifyReport",
    "default_state_dir",
    "load_or_create_anchor_key",
    "read_anchor_key",
    "record_hash",
]

_log = logging.getLogger(__name__)

AUDIT_DB_NAME = "audit.db"
GENESIS = bytes(32)  # the "previous hash" of record 1
MAX_FIELDS_BYTES = 4096  # canonical JSON of one record's fields, UTF-8
_MAX_ACTOR_CHARS = 128
_MAX_DEPTH = 8
_FORMAT_VERSION = 1  # PRAGMA user_version, set in _SCHEMA
_ANCHOR_MAC_TAG = b"bifente-audit-anchor-v1\n"  # domain separation for the anchor HMAC
_ANCHOR_MAX_BYTES = 4096
_BATCH = 500

_EVENT = re.compile(r"[a-z][a-z0-9_.]{0,63}")
_FIELD_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")
_HEX64 = re.compile(rb"[0-9a-f]{64}")
# A full NIR: sex, year, month (20-42 and 50-99 are the registry's special months), department
# (2A/2B for Corsica), commune, order, key. 13 characters without the key are not refused:
# too close to millisecond timestamps to tell apart by pattern.
_NIR = re.compile(r"[1278]\d{2}(0[1-9]|1[0-2]|[2-9]\d)(\d{2}|2[AB])\d{6}\d{2}",
                  re.IGNORECASE | re.ASCII)
# Where a NIR written in groups may be split: sex|year|month|department|commune|order|key
# (FACTS §3). A split elsewhere is another identifier: a Message-ID's 12-digit time and a
# 3-digit PID joined by a dot are not a NIR (D1 of the reliability review).
_NIR_SPLITS = frozenset({1, 3, 5, 7, 10, 13})
# Groups of digits (and the A/B of Corsica) split by one space, dot or dash, standing alone.
_NUMBER_RUN = re.compile(
    r"(?<![0-9A-Za-z])[0-9AB]+(?:[ .\u00a0-][0-9AB]+)*(?![0-9A-Za-z])", re.IGNORECASE)
_GROUP_SEP = re.compile(r"[ .\u00a0-]")
_WHITESPACE = re.compile(r"\s+")
_NAME_TOKENS = re.compile(r"[A-Z]?[a-z]+|[A-Z]+(?![a-z])|\d+")
_SECRET_TOKENS = frozenset({"pin", "puk", "key", "pwd", "token", "otp"})
_SECRET_WORDS = ("password", "passphrase", "secret", "private")

_SCHEMA = """
BEGIN IMMEDIATE;
CREATE TABLE IF NOT EXISTS records (
    seq INTEGER PRIMARY KEY,
    time TEXT NOT NULL,
    event TEXT NOT NULL,
    actor TEXT NOT NULL,
    fields TEXT NOT NULL,
    prev TEXT NOT NULL,
    hash TEXT NOT NULL
);
CREATE TRIGGER IF NOT EXISTS records_no_update BEFORE UPDATE ON records
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only: UPDATE refused'); END;
CREATE TRIGGER IF NOT EXISTS records_no_delete BEFORE DELETE ON records
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only: DELETE refused'); END;
CREATE TRIGGER IF NOT EXISTS records_grow_at_end BEFORE INSERT ON records
WHEN NEW.seq IS NOT (SELECT COALESCE(MAX(seq), 0) + 1 FROM records)
  OR NEW.prev IS NOT COALESCE((SELECT hash FROM records ORDER BY seq DESC LIMIT 1),
                              '0000000000000000000000000000000000000000000000000000000000000000')
BEGIN SELECT RAISE(ABORT, 'the audit log only grows at its end'); END;
PRAGMA user_version = 1;
COMMIT;
"""
_TRIGGERS = ("records_no_update", "records_no_delete", "records_grow_at_end")


class AuditError(Exception):
    """The audit log cannot be used (closed, busy, unreadable, or not an audit log)."""


class AuditTampered(AuditError):
    """Opening for writing found the log and its anchor disagree; appending would hide it."""

    def __init__(self, path: Path, reason: str, first_bad_seq: int | None) -> None:
        self.reason = reason
        self.first_bad_seq = first_bad_seq
        super().__init__(f"the audit log at {path} does not match its anchor: {reason} "
                         "(run `bifente audit verify`; see docs/audit.md)")


@dataclass(frozen=True)
class AuditRecord:
    """One row as stored; `fields` is the canonical JSON text that was hashed."""

    seq: int
    time: str
    event: str
    actor: str
    fields: str
    prev: str
    hash: str

    def data(self) -> dict[str, Any]:
        """The fields as a dict."""
        fields: dict[str, Any] = json.loads(self.fields)
        return fields

    def to_json(self) -> dict[str, Any]:
        """All columns, `fields` as an object: one line of `export`."""
        return {"seq": self.seq, "time": self.time, "event": self.event, "actor": self.actor,
                "fields": self.data(), "prev": self.prev, "hash": self.hash}


@dataclass(frozen=True)
class VerifyReport:
    """What `verify` found: ok, or the first problem (`first_bad_seq` None if not a record)."""

    ok: bool
    records: int
    first_bad_seq: int | None
    reason: str


ANCHOR_KEY_NAME = "audit.key"


def load_or_create_anchor_key(path: Path, wrapper: KeyWrapper | None = None) -> bytes:
    """The daemon's anchor MAC key: 32 random bytes in a 0600 file, made on first start;
    sealed with the state key when one is given (review M8: not in clear beside the log)."""
    try:
        stored = path.read_bytes()
    except FileNotFoundError:
        stored = None
    if stored is not None:
        if wrapper is None or not is_sealed(stored):
            if wrapper is not None:  # written by an older edged: seal it now
                _write_key_file(path, wrapper.seal("audit/anchor-key", stored), replace=True)
            return stored
        return wrapper.open("audit/anchor-key", stored)
    key = secrets.token_bytes(32)
    _write_key_file(path, wrapper.seal("audit/anchor-key", key) if wrapper else key)
    return key


def read_anchor_key(path: Path, wrapper: KeyWrapper | None) -> bytes:
    """The anchor key as the daemon uses it (opened with the state key when sealed)."""
    stored = path.read_bytes()
    if is_sealed(stored):
        if wrapper is None:
            raise AuditError(f"{path} is sealed with the state key")
        return wrapper.open("audit/anchor-key", stored)
    return stored


def _write_key_file(path: Path, data: bytes, *, replace: bool = False) -> None:
    target = Path(f"{path}.tmp") if replace else path
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if replace else os.O_EXCL),
                 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(data)
        out.flush()
        os.fsync(out.fileno())
    if replace:
        os.replace(target, path)


def default_state_dir() -> Path:
    """The daemon's state directory: $BIFENTE_STATE_DIR, else /var/lib/bifente."""
    return Path(os.environ.get("BIFENTE_STATE_DIR") or "/var/lib/bifente")


def record_hash(prev: bytes, seq: int, time: str, event: str, actor: str, fields: str) -> bytes:
    """SHA-256(prev || seq int64 BE || each text as uint32 BE byte length + UTF-8 bytes)."""
    return _digest(prev, seq, tuple(t.encode("utf-8") for t in (time, event, actor, fields)))


def _digest(prev: bytes, seq: int, texts: tuple[bytes, ...]) -> bytes:
    h = hashlib.sha256(prev)
    h.update(seq.to_bytes(8, "big", signed=True))
    for data in texts:
        h.update(len(data).to_bytes(4, "big"))
        h.update(data)
    return h.digest()


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


# --- the privacy guard -------------------------------------------------------------------------

def _secret_name(name: str) -> bool:
    lowered = name.lower()
    if any(word in lowered for word in _SECRET_WORDS):
        return True
    return any(t.lower() in _SECRET_TOKENS for t in _NAME_TOKENS.findall(name))


def _is_nir(candidate: str) -> bool:
    # The layout and the key (97 - N mod 97) must both hold: a 15-digit number that fails
    # the key is not a NIR, and masking it would corrupt an innocent identifier.
    if not _NIR.fullmatch(candidate):
        return False
    try:
        return nir_key(candidate[:13]) == int(candidate[13:])
    except ValueError:
        return False


def _nir_spans(text: str) -> list[tuple[int, int]]:
    """Where `text` holds a full NIR: the whole text, or a stand-alone run of groups."""
    if _is_nir(_WHITESPACE.sub("", text)):
        return [(0, len(text))]
    spans = []
    for run in _NUMBER_RUN.finditer(text):
        starts = [run.start()] + [m.end() + run.start() for m in _GROUP_SEP.finditer(run.group())]
        groups = _GROUP_SEP.split(run.group())
        for i in range(len(groups)):  # every run of adjacent groups 15 characters long
            joined, splits = "", set()
            for j in range(i, len(groups)):
                if joined:
                    splits.add(len(joined))
                joined += groups[j]
                if len(joined) >= 15:
                    break
            if len(joined) == 15 and splits <= _NIR_SPLITS and _is_nir(joined):
                spans.append((starts[i], starts[j] + len(groups[j])))
    return spans


def _mask_nirs(text: str) -> str:
    """`text` with every full NIR in it masked as apdu.identity.mask_nir does."""
    for start, end in reversed(_nir_spans(text)):
        text = text[:start] + mask_nir(text[start:end]) + text[end:]
    return text


def _masked(value: Any, masked: list[str], where: str) -> Any:
    # Runs after _check_value, so types and depth are known to be sound.
    if isinstance(value, bool) or value is None or isinstance(value, float):
        return value
    if isinstance(value, int | str):
        text = str(value)
        safe = _mask_nirs(text)
        if safe == text:
            return value
        masked.append(where)
        return safe
    if isinstance(value, list | tuple):
        return [_masked(v, masked, f"{where}[{i}]") for i, v in enumerate(value)]
    return {k: _masked(v, masked, f"{where}.{k}") for k, v in value.items()}


def _check_name(name: object, where: str) -> str:
    if not isinstance(name, str) or not _FIELD_NAME.fullmatch(name):
        raise ValueError(f"audit field name {where}{name!r} is not an identifier (max 64)")
    if _secret_name(name):
        raise ValueError(f"audit field {where}{name} looks like a secret: log an outcome or a "
                         "reference, never a PIN, PUK, password or key")
    return f"{where}{name}"


def _check_value(where: str, value: Any, depth: int) -> Any:
    """The value as it may be stored: NIR-shaped text masked; ValueError for what may not."""
    if depth > _MAX_DEPTH:
        raise ValueError(f"audit field {where} is nested too deep (max {_MAX_DEPTH})")
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int | str):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"audit field {where} is not a finite number")
        return value
    if isinstance(value, list | tuple):
        return [_check_value(f"{where}[{i}]", item, depth + 1) for i, item in enumerate(value)]
    if isinstance(value, dict):
        return {key: _check_value(_check_name(key, f"{where}."), item, depth + 1)
                for key, item in value.items()}
    raise ValueError(f"audit field {where}: {type(value).__name__} is not allowed "
                     "(str, int, float, bool, None, list, dict)")


def _canonical_fields(fields: dict[str, Any]) -> str:
    fields = {name: _check_value(_check_name(name, ""), value, 0)
              for name, value in fields.items()}
    # A full NIR is masked, never refused: the audit write must not fail the action it
    # records (a refused mail.delivered record once stopped the outbox for good, D1; L3).
    masked: list[str] = []
    fields = {name: _masked(value, masked, name) for name, value in fields.items()}
    if masked:  # the warning names the fields, never the values
        _log.warning("audit: %s looked like a full NIR and was masked (log mask_nir(nir) or "
                     "a hash of the INS instead)", ", ".join(masked))
    text = _canonical(fields)
    try:
        size = len(text.encode("utf-8"))
    except UnicodeEncodeError:
        raise ValueError("audit fields hold a string that is not valid Unicode") from None
    if size > MAX_FIELDS_BYTES:
        raise ValueError(f"audit fields are {size} bytes (max {MAX_FIELDS_BYTES})")
    return text


def _prepare(event: str, actor: str, fields: dict[str, Any]) -> tuple[str, str, str]:
    _check_event(event)
    return event, _check_actor(actor), _canonical_fields(fields)


def _check_event(event: object) -> None:
    if not isinstance(event, str) or not _EVENT.fullmatch(event):
        raise ValueError(f"audit event {event!r} is not a short dotted name like 'pin.verify'")


def _check_actor(actor: object) -> str:
    if not isinstance(actor, str) or len(actor) > _MAX_ACTOR_CHARS or not actor.isprintable():
        raise ValueError(f"audit actor must be printable text of at most {_MAX_ACTOR_CHARS} "
                         "characters")
    try:
        actor.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("audit actor is not valid Unicode") from None
    safe = _mask_nirs(actor)
    if safe != actor:
        _log.warning("audit actor looked like a full NIR: masked")
    return safe


# --- the anchor --------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Anchor:
    seq: int  # 0 (with the genesis hash) before the first record
    hash: str
    mac: str | None = None
    next: tuple[int, str] | None = None  # the record being committed, announced before it


class _BadAnchor(Exception):
    pass


def _anchor_body(seq: int, digest: str, nxt: tuple[int, str] | None) -> dict[str, Any]:
    body: dict[str, Any] = {"hash": digest, "seq": seq}
    if nxt is not None:
        body["next"] = {"hash": nxt[1], "seq": nxt[0]}
    return body


def _anchor_mac(key: bytes, seq: int, digest: str, nxt: tuple[int, str] | None = None) -> str:
    body = _canonical(_anchor_body(seq, digest, nxt)).encode()
    return hmac.new(key, _ANCHOR_MAC_TAG + body, hashlib.sha256).hexdigest()


def _read_anchor(path: Path) -> _Anchor | None:
    try:
        with path.open("rb") as f:
            raw = f.read(_ANCHOR_MAX_BYTES + 1)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise _BadAnchor(exc.strerror or str(exc)) from None
    if len(raw) > _ANCHOR_MAX_BYTES:
        raise _BadAnchor("too large")
    try:
        data = json.loads(raw)
    except ValueError:
        raise _BadAnchor("not JSON") from None
    if not isinstance(data, dict):
        raise _BadAnchor("not a JSON object")
    seq, digest, mac = data.get("seq"), data.get("hash"), data.get("mac")
    if type(seq) is not int or seq < 0:
        raise _BadAnchor("bad seq")
    if not isinstance(digest, str) or not _HEX64.fullmatch(digest.encode()):
        raise _BadAnchor("bad hash")
    if seq == 0 and digest != GENESIS.hex():
        raise _BadAnchor("bad hash")
    if mac is not None and not isinstance(mac, str):
        raise _BadAnchor("bad mac")
    nxt = data.get("next")
    if nxt is not None:
        if not isinstance(nxt, dict) or type(nxt.get("seq")) is not int \
                or nxt["seq"] != seq + 1 or not isinstance(nxt.get("hash"), str) \
                or not _HEX64.fullmatch(nxt["hash"].encode()):
            raise _BadAnchor("bad next")
        return _Anchor(seq, digest, mac, (nxt["seq"], nxt["hash"]))
    return _Anchor(seq, digest, mac)


def _anchor_problem(anchor: _Anchor | None, key: bytes | None, last_seq: int,
                    hash_at: Callable[[int], str | None]) -> tuple[str, int | None] | None:
    """(reason, first_bad_seq) when the anchor and the end of the log disagree."""
    if anchor is None:
        # The anchor announces each record before its commit: a log with records and no
        # anchor lost it.
        return (f"anchor missing (log ends at {last_seq})", None) if last_seq > 0 else None
    if key is not None:
        if anchor.mac is None:
            return "anchor altered (MAC missing)", None
        expected = _anchor_mac(key, anchor.seq, anchor.hash, anchor.next).encode()
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


# --- verification ------------------------------------------------------------------------------

@dataclass
class _Walk:
    count: int = 0
    last_seq: int = 0
    last_hash: str | None = None
    anchored_hash: str | None = None
    checkpoint_hash: str | None = None
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
    if not _HEX64.fullmatch(row[5]) or not _HEX64.fullmatch(row[6]):
        return f"record {seq} altered (malformed prev or hash)", seq
    if bytes.fromhex(row[5].decode()) != prev:
        after = "is not the genesis value" if seq == 1 else f"does not match record {seq - 1}"
        return f"record {seq} inserted or reordered (prev {after})", seq
    if _digest(prev, seq, tuple(row[1:5])).hex() != row[6].decode():
        return f"record {seq} altered (hash mismatch)", seq
    return None


def _walk(conn: sqlite3.Connection, anchor_seq: int | None,
          checkpoint_seq: int | None = None) -> _Walk:
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
        walk.last_hash = row[6].decode()
        if seq == anchor_seq:
            walk.anchored_hash = row[6].decode()
        if seq == checkpoint_seq:
            walk.checkpoint_hash = row[6].decode()
    return walk


def _checkpoint_problem(walk: _Walk,
                        checkpoint: tuple[int, str]) -> tuple[str, int | None] | None:
    seq, digest = checkpoint
    if seq == 0:
        return None
    if walk.last_seq < seq:
        return (f"log ends at {walk.last_seq}, before the checkpoint at record {seq} "
                "(truncated, or an older copy)", walk.last_seq + 1)
    if walk.checkpoint_hash != digest:
        return (f"record {seq} does not match the checkpoint (history rewritten up to it)",
                seq)
    return None


def _verify(path: Path, anchor_path: Path, key: bytes | None,
            checkpoint: tuple[int, str] | None = None) -> VerifyReport:
    # The anchor first, then the snapshot: the writer moves the anchor only after a commit, so
    # a live log can never look shorter than its anchor to us.
    anchor: _Anchor | None = None
    anchor_error = None
    try:
        anchor = _read_anchor(anchor_path)
    except _BadAnchor as exc:
        anchor_error = str(exc)
    try:
        conn = _connect_readonly(path)
    except sqlite3.Error as exc:
        return VerifyReport(False, 0, None, f"cannot open the log ({exc})")
    try:
        conn.text_factory = bytes  # hash the bytes as stored
        conn.execute("BEGIN")
        walk = _walk(conn, anchor.seq if anchor else None,
                     checkpoint[0] if checkpoint else None)
    except sqlite3.DatabaseError as exc:
        return VerifyReport(False, 0, None, f"not an audit log ({exc})")
    finally:
        conn.close()
    if walk.problem is not None:
        return VerifyReport(False, walk.count, walk.problem[1], walk.problem[0])
    problem = (("anchor unreadable (" + anchor_error + ")", None) if anchor_error is not None
               else _anchor_problem(anchor, key, walk.last_seq,
                                    lambda seq: walk.anchored_hash if anchor and seq == anchor.seq
                                    else walk.last_hash if seq == walk.last_seq else None))
    if problem is None and checkpoint is not None:
        problem = _checkpoint_problem(walk, checkpoint)
    if problem is not None:
        return VerifyReport(False, walk.count, problem[1], problem[0])
    summary = _ok_summary(walk.count, anchor, key)
    if checkpoint is not None:
        summary += f"; matches the checkpoint at record {checkpoint[0]}"
    return VerifyReport(True, walk.count, None, summary)


def _ok_summary(count: int, anchor: _Anchor | None, key: bytes | None) -> str:
    if count == 0:
        return "empty log"
    text = f"{count} record{'s' if count != 1 else ''}, chain intact, "
    if anchor is None:
        return text + "no anchor yet"
    text += f"anchor at record {anchor.seq}"
    if anchor.seq < count:
        text += f" ({count - anchor.seq} behind, announced: a crash after the commit)"
    return text + (" (MAC checked)" if key is not None else " (MAC not checked)")


# --- connections -------------------------------------------------------------------------------

def _connect_readonly(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path.resolve().as_uri() + "?mode=ro", uri=True, timeout=5.0,
                           isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA query_only = ON")
    return conn


def _lock_writer(path: Path) -> int:
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(f"{path}.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise AuditError(f"another process is writing the audit log at {path}") from None
    return fd


def _connect_writer(path: Path) -> sqlite3.Connection:
    if not path.exists():  # created here so the log (and its -wal, -shm) are 0600
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))
    conn = sqlite3.connect(path, timeout=5.0, isolation_level=None, check_same_thread=False)
    try:
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version > _FORMAT_VERSION:
            raise AuditError(f"the audit log at {path} has format {version}, newer than this "
                             "bifente")
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise AuditError(f"cannot put the audit log at {path} in WAL mode")
        conn.execute("PRAGMA synchronous = FULL")  # WAL + FULL: a commit survives power loss
        triggers = {name for (name,) in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'trigger'")}
        has_table = conn.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'records'").fetchone()
        if has_table and not triggers.issuperset(_TRIGGERS):
            _log.warning("audit log %s: append-only triggers were missing; restoring them "
                         "(run `bifente audit verify`)", path)
        conn.executescript(_SCHEMA)
    except BaseException:
        conn.close()
        raise
    return conn


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
        if readonly:
            if not self.path.is_file():
                raise FileNotFoundError(errno.ENOENT, f"no audit log at {self.path}")
            self._conn = _connect_readonly(self.path)
            return
        self._lock_fd = _lock_writer(self.path)
        try:
            self._conn = _connect_writer(self.path)
            self._open_checks()
        except BaseException:
            if hasattr(self, "_conn"):
                self._conn.close()
            os.close(self._lock_fd)
            raise

    def _open_checks(self) -> None:
        # Appending would move the anchor and erase the evidence: refuse instead.
        try:
            anchor = _read_anchor(self.anchor_path)
        except _BadAnchor as exc:
            raise AuditTampered(self.path, f"anchor unreadable ({exc})", None) from None
        last = self._conn.execute(
            "SELECT seq, hash FROM records ORDER BY seq DESC LIMIT 1").fetchone()
        last_seq = last[0] if last else 0

        def hash_at(seq: int) -> str | None:
            row = self._conn.execute("SELECT hash FROM records WHERE seq = ?", (seq,)).fetchone()
            return row[0] if row else None

        problem = _anchor_problem(anchor, self._key, last_seq, hash_at)
        if problem is not None:
            raise AuditTampered(self.path, *problem)
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
            if self._lock_fd is not None:
                os.close(self._lock_fd)
                self._lock_fd = None

    def _ensure_open(self) -> None:
        if self._closed:
            raise AuditError("the audit log is closed")

    def append(self, event: str, /, *, actor: str = "", **fields: Any) -> AuditRecord:
        """Add one record and move the anchor; synchronous (three fsyncs, a few ms)."""
        return self._write(*_prepare(event, actor, fields))

    def submit(self, event: str, /, *, actor: str = "",
               **fields: Any) -> concurrent.futures.Future[AuditRecord]:
        """Check the record now (ValueError here), append it on the writer thread.

        Records are written in submission order; the event loop never waits for an fsync
        (review M6). `flush`, `records`, `export` and `verify` see every submitted record.
        """
        prepared = _prepare(event, actor, fields)
        # Not self._lock: the writer holds that one through its fsyncs (a few ms each).
        with self._submit_lock:
            if not self._accepting:
                raise AuditError("the audit log is closed")
            if self._writer is None:
                self._writer = concurrent.futures.ThreadPoolExecutor(
                    max_workers=1, thread_name_prefix="audit-writer")
            future = self._writer.submit(self._write_logged, *prepared)
        return future

    def _write_logged(self, event: str, actor: str, text: str) -> AuditRecord:
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
        with self._lock:
            self._ensure_open()
            if self._readonly:
                raise AuditError("the audit log was opened read-only")
            conn = self._conn
            conn.execute("BEGIN IMMEDIATE")
            try:
                last = conn.execute(
                    "SELECT seq, hash FROM records ORDER BY seq DESC LIMIT 1").fetchone()
                seq, prev = (last[0] + 1, last[1]) if last else (1, GENESIS.hex())
                time = _now()
                digest = record_hash(bytes.fromhex(prev), seq, time, event, actor, text).hex()
                record = AuditRecord(seq, time, event, actor, text, prev, digest)
                conn.execute("INSERT INTO records VALUES (?, ?, ?, ?, ?, ?, ?)",
                             (seq, time, event, actor, text, prev, digest))
                # Announce the record before committing it: after a crash the one record
                # past the anchor is provably ours (review M7). No announcement, no commit.
                self._write_anchor(seq - 1, prev, (seq, digest))
                conn.execute("COMMIT")
            except BaseException:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
                raise
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
        body = _anchor_body(seq, digest, nxt)
        if self._key is not None:
            body["mac"] = _anchor_mac(self._key, seq, digest, nxt)
        tmp = Path(f"{self.anchor_path}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write((_canonical(body) + "\n").encode())
            f.flush()
            os.fsync(f.fileno())
        first = not self.anchor_path.exists()
        os.replace(tmp, self.anchor_path)
        if first:  # later renames only replace it
            _fsync_dir(self.anchor_path.parent)

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
        return _verify(self.path, self.anchor_path, self._key, checkpoint)
