"""Append-only, hash-chained audit log in SQLite, with a tail anchor (docs/audit.md).

The modules, one job each: `record` (a record's checked canonical form and its hash),
`privacy` (NIR masking, secret-looking names), `key` and `anchor` (the MACed tail anchor and
its key), `verify` (the chain walk), `db` (the SQLite file, its schema and connections) and
`log` (the writer and the reads). This package is their public face.
"""

from __future__ import annotations

from bifente.edged.state.audit.db import AUDIT_DB_NAME, default_state_dir
from bifente.edged.state.audit.errors import AuditError, AuditTampered
from bifente.edged.state.audit.key import (
    ANCHOR_KEY_NAME,
    load_or_create_anchor_key,
    read_anchor_key,
)
from bifente.edged.state.audit.log import AuditLog
from bifente.edged.state.audit.record import GENESIS, MAX_FIELDS_BYTES, AuditRecord, record_hash
from bifente.edged.state.audit.verify import VerifyReport

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
