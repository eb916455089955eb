"""One audit record: its checked, canonical form and its chain hash (docs/audit.md)."""

from __future__ import annotations

import hashlib
import json
import logging
import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from bifente.edged.state.audit.privacy import mask_nirs, masked, secret_name

__all__ = ["GENESIS", "HEX64", "MAX_FIELDS_BYTES", "AuditRecord", "canonical", "digest", "now",
           "prepare", "record_hash"]

_log = logging.getLogger(__name__)

GENESIS = bytes(32)  # the "previous hash" of record 1
MAX_FIELDS_BYTES = 4096  # canonical JSON of one record's fields, UTF-8
_MAX_ACTOR_CHARS = 128
_MAX_DEPTH = 8

_EVENT = re.compile(r"[a-z][a-z0-9_.]{0,63}")
_FIELD_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")
HEX64 = re.compile(rb"[0-9a-f]{64}")  # a hash as stored: lowercase hex bytes


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


def record_hash(prev: bytes, seq: int, time: str, event: str, actor: str, fields: str) -> bytes:
    """SHA-256(prev || seq int64 BE || each text as uint32 BE byte length + UTF-8 bytes)."""
    return digest(prev, seq, tuple(t.encode("utf-8") for t in (time, event, actor, fields)))


def digest(prev: bytes, seq: int, texts: tuple[bytes, ...]) -> bytes:
    """`record_hash` over the texts as stored bytes (the verifier hashes what it reads)."""
    h = hashlib.sha256(prev)
    h.update(seq.to_bytes(8, "big", signed=True))
    for data in texts:
        h.update(len(data).to_bytes(4, "big"))
        h.update(data)
    return h.digest()


def canonical(value: Any) -> str:
    """Canonical JSON: sorted keys, no spaces, UTF-8 as is, no NaN."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False)


def now() -> str:
    """The record time: UTC, milliseconds, with a Z."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def prepare(event: str, actor: str, fields: dict[str, Any]) -> tuple[str, str, str]:
    """(event, actor, canonical fields) as they may be stored; ValueError for what may not."""
    _check_event(event)
    return event, _check_actor(actor), _canonical_fields(fields)


def _check_name(name: object, where: str) -> str:
    if not isinstance(name, str) or not _FIELD_NAME.fullmatch(name):
        raise ValueError(f"audit field name {where}{name!r} is not an identifier (max 64)")
    if secret_name(name):
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
    found: list[str] = []
    fields = {name: masked(value, found, name) for name, value in fields.items()}
    if found:  # the warning names the fields, never the values
        _log.warning("audit: %s looked like a full NIR and was masked (log mask_nir(nir) or "
                     "a hash of the INS instead)", ", ".join(found))
    text = canonical(fields)
    try:
        size = len(text.encode("utf-8"))
    except UnicodeEncodeError:
        raise ValueError("audit fields hold a string that is not valid Unicode") from None
    if size > MAX_FIELDS_BYTES:
        raise ValueError(f"audit fields are {size} bytes (max {MAX_FIELDS_BYTES})")
    return text


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
    safe = mask_nirs(actor)
    if safe != actor:
        _log.warning("audit actor looked like a full NIR: masked")
    return safe
