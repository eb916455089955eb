"""SQLite storage of the reference DMP host: one file, WAL, synchronous=FULL.

Records, documents (CDA bytes included), append-only traces, consent nonces seen, enrolled
devices. Every change runs in `transaction()`: a document, the consent nonce it spends and its
trace are committed together or not at all.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from bifente.simulators.dmp.codes import DocStatus
from bifente.simulators.dmp.rules import DmpView, DocView

__all__ = ["DB_NAME", "DmpRecord", "Document", "Storage", "Trace"]

DB_NAME = "dmp.sqlite3"
SCHEMA_VERSION = 1

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS dmp (
    ins TEXT PRIMARY KEY,
    ins_oid TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('open', 'closed')),
    created_at REAL NOT NULL,
    created_by TEXT NOT NULL,
    closed_at REAL,
    password_hash TEXT NOT NULL,
    failed_logins INTEGER NOT NULL DEFAULT 0,
    locked_until REAL,
    chosen_doctor TEXT,
    oppose_bris_de_glace INTEGER NOT NULL DEFAULT 0,
    oppose_centre_15 INTEGER NOT NULL DEFAULT 0,
    occupational_consent INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS blocked (
    ins TEXT NOT NULL REFERENCES dmp (ins),
    national_id TEXT NOT NULL,
    since REAL NOT NULL,
    PRIMARY KEY (ins, national_id)
);
CREATE TABLE IF NOT EXISTS documents (
    id TEXT PRIMARY KEY,
    ins TEXT NOT NULL REFERENCES dmp (ins),
    cda_id TEXT NOT NULL,
    type_code TEXT NOT NULL,
    title TEXT NOT NULL,
    effective_time TEXT NOT NULL,
    confidentiality TEXT NOT NULL,
    media_type TEXT NOT NULL,
    author_kind TEXT NOT NULL CHECK (author_kind IN ('professional', 'patient')),
    author_id TEXT NOT NULL,
    author_profession TEXT NOT NULL,
    author_name TEXT NOT NULL,
    fed_by TEXT NOT NULL,
    submitted_at REAL NOT NULL,
    size INTEGER NOT NULL,
    sha256 TEXT NOT NULL,
    masked_ps INTEGER NOT NULL DEFAULT 0,
    invisible_patient INTEGER NOT NULL DEFAULT 0,
    hidden_since REAL,
    announced INTEGER NOT NULL DEFAULT 0,
    invisible_representatives INTEGER NOT NULL DEFAULT 0,
    status TEXT NOT NULL CHECK (status IN ('available', 'deletion_requested', 'deleted')),
    deletion_requested_at REAL,
    deleted_at REAL,
    content BLOB NOT NULL,
    UNIQUE (ins, cda_id)
);
CREATE INDEX IF NOT EXISTS documents_by_patient ON documents (ins, status, type_code);
CREATE TABLE IF NOT EXISTS traces (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    time REAL NOT NULL,
    ins TEXT,
    actor_kind TEXT NOT NULL,
    actor_id TEXT NOT NULL,
    actor_name TEXT NOT NULL,
    profession TEXT NOT NULL,
    specialty TEXT NOT NULL,
    structure_id TEXT NOT NULL,
    structure_name TEXT NOT NULL,
    auth_mode TEXT NOT NULL,
    action TEXT NOT NULL,
    mode TEXT NOT NULL,
    emergency_reason TEXT NOT NULL,
    outcome TEXT NOT NULL CHECK (outcome IN ('ok', 'refused')),
    reason TEXT NOT NULL,
    document_id TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS traces_by_patient ON traces (ins, id);
CREATE TRIGGER IF NOT EXISTS traces_no_update BEFORE UPDATE ON traces
    BEGIN SELECT RAISE(ABORT, 'traces are append-only'); END;
CREATE TRIGGER IF NOT EXISTS traces_no_delete BEFORE DELETE ON traces
    BEGIN SELECT RAISE(ABORT, 'traces are append-only'); END;
CREATE TABLE IF NOT EXISTS consent_nonces (
    nonce TEXT PRIMARY KEY,
    device TEXT NOT NULL,
    expires REAL NOT NULL,
    seen_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS consent_nonces_by_expiry ON consent_nonces (expires);
CREATE TABLE IF NOT EXISTS devices (
    device TEXT PRIMARY KEY,
    public_key TEXT NOT NULL,
    enrolled_at REAL NOT NULL,
    revoked_at REAL
);
"""


@dataclass(frozen=True)
class DmpRecord:
    """A patient's record as stored."""

    ins: str = field(repr=False)
    ins_oid: str
    status: str
    created_at: float
    created_by: str
    closed_at: float | None
    password_hash: str = field(repr=False)
    failed_logins: int
    locked_until: float | None
    chosen_doctor: str | None
    oppose_bris_de_glace: bool
    oppose_centre_15: bool
    occupational_consent: bool
    blocked: frozenset[str] = frozenset()

    def view(self) -> DmpView:
        """What the rules need."""
        return DmpView(self.ins, self.status, self.chosen_doctor, self.oppose_bris_de_glace,
                       self.oppose_centre_15, self.occupational_consent, self.blocked)


@dataclass(frozen=True)
class Document:
    """A document's registry entry (the CDA bytes are read separately)."""

    id: str
    ins: str = field(repr=False)
    cda_id: str
    type_code: str
    title: str
    effective_time: str
    confidentiality: str
    media_type: str
    author_kind: str
    author_id: str
    author_profession: str
    author_name: str
    fed_by: str
    submitted_at: float
    size: int
    sha256: str
    masked_ps: bool = False
    invisible_patient: bool = False
    hidden_since: float | None = None
    announced: bool = False
    invisible_representatives: bool = False
    status: str = DocStatus.AVAILABLE
    deletion_requested_at: float | None = None
    deleted_at: float | None = None

    def view(self) -> DocView:
        """What the rules need."""
        return DocView(self.id, self.type_code, self.author_id, self.fed_by, self.status,
                       self.masked_ps, self.invisible_patient, self.hidden_since, self.announced,
                       self.invisible_representatives)


@dataclass(frozen=True)
class Trace:
    """One access or refusal (append-only)."""

    time: float
    ins: str | None = field(repr=False)
    actor_kind: str  # professional | structure | patient | admin
    actor_id: str
    action: str
    outcome: str
    reason: str = ""  # the refusal reason code ("" when ok)
    mode: str = "normal"
    emergency_reason: str = ""
    document_id: str = ""
    actor_name: str = ""
    profession: str = ""
    specialty: str = ""
    structure_id: str = ""
    structure_name: str = ""
    auth_mode: str = ""
    id: int | None = None


_DOC_COLUMNS = [f.name for f in fields(Document)]
_TRACE_COLUMNS = [f.name for f in fields(Trace) if f.name != "id"]
_BOOL_DOC = {"masked_ps", "invisible_patient", "announced", "invisible_representatives"}


class Storage:
    """The host's database: one connection, serialised by a lock (the host is small)."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._lock = threading.RLock()
        self._depth = 0
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute("PRAGMA foreign_keys=ON")
        self._db.execute("PRAGMA busy_timeout=5000")
        self._db.executescript(SCHEMA)  # idempotent: IF NOT EXISTS everywhere
        self._run("INSERT OR IGNORE INTO meta VALUES ('schema', ?)", (str(SCHEMA_VERSION),))

    def close(self) -> None:
        """Close the database (idempotent)."""
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None  # type: ignore[assignment]

    @contextmanager
    def transaction(self) -> Iterator[Storage]:
        """One atomic unit of work (re-entrant: nested calls join the outer transaction)."""
        with self._lock:
            if self._depth:
                self._depth += 1
                try:
                    yield self
                finally:
                    self._depth -= 1
                return
            self._db.execute("BEGIN IMMEDIATE")
            self._depth = 1
            try:
                yield self
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            else:
                self._db.execute("COMMIT")
            finally:
                self._depth = 0

    # A row's columns are whatever SQLite stored (its typing is dynamic): Any per column.
    def _all(self, sql: str, args: Sequence[object] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            rows: list[tuple[Any, ...]] = self._db.execute(sql, args).fetchall()
            return rows

    def _one(self, sql: str, args: Sequence[object] = ()) -> tuple[Any, ...] | None:
        with self._lock:
            row: tuple[Any, ...] | None = self._db.execute(sql, args).fetchone()
            return row

    def _run(self, sql: str, args: Sequence[object] = ()) -> int:
        with self.transaction():
            return self._db.execute(sql, args).rowcount

    # -- records ---------------------------------------------------------------------------
    def get_dmp(self, ins: str) -> DmpRecord | None:
        """A record with its blocked professionals, or None."""
        row = self._one("SELECT ins, ins_oid, status, created_at, created_by, closed_at, "
                        "password_hash, failed_logins, locked_until, chosen_doctor, "
                        "oppose_bris_de_glace, oppose_centre_15, occupational_consent "
                        "FROM dmp WHERE ins = ?", (ins,))
        if row is None:
            return None
        blocked = frozenset(r[0] for r in self._all(
            "SELECT national_id FROM blocked WHERE ins = ?", (ins,)))
        (ins, ins_oid, status, created_at, created_by, closed_at, password_hash, failed_logins,
         locked_until, chosen_doctor, oppose_bdg, oppose_c15, occupational) = row
        return DmpRecord(ins, ins_oid, status, created_at, created_by, closed_at, password_hash,
                         failed_logins, locked_until, chosen_doctor, bool(oppose_bdg),
                         bool(oppose_c15), bool(occupational), blocked)

    def create_dmp(self, ins: str, ins_oid: str, created_by: str, password_hash: str,
                   now: float) -> None:
        """Insert a new open record (sqlite3.IntegrityError if it exists)."""
        self._run("INSERT INTO dmp (ins, ins_oid, status, created_at, created_by, password_hash)"
                  " VALUES (?, ?, 'open', ?, ?, ?)", (ins, ins_oid, now, created_by,
                                                      password_hash))

    SETTINGS = frozenset({"chosen_doctor", "oppose_bris_de_glace", "oppose_centre_15",
                          "occupational_consent"})

    def update_settings(self, ins: str, **changes: object) -> None:
        """Change the patient's settings (oppositions, chosen doctor, occupational consent)."""
        if not changes or not set(changes) <= self.SETTINGS:
            raise ValueError(f"settings are among {sorted(self.SETTINGS)}")
        assignments = ", ".join(f"{name} = ?" for name in changes)  # names checked above
        self._run(f"UPDATE dmp SET {assignments} WHERE ins = ?",  # noqa: S608
                  (*changes.values(), ins))

    def close_dmp(self, ins: str, now: float) -> None:
        """Close a record (kept: docs/dmp-api.md says 10 years after closure)."""
        self._run("UPDATE dmp SET status = 'closed', closed_at = ? WHERE ins = ?", (now, ins))

    def block(self, ins: str, national_id: str, now: float) -> None:
        """Block a professional from this record (D18)."""
        self._run("INSERT OR IGNORE INTO blocked VALUES (?, ?, ?)", (ins, national_id, now))

    def unblock(self, ins: str, national_id: str) -> bool:
        """Lift a block; False if there was none."""
        return self._run("DELETE FROM blocked WHERE ins = ? AND national_id = ?",
                         (ins, national_id)) > 0

    def login_failed(self, ins: str, now: float, *, lock_after: int, lock_for: float) -> None:
        """Count a failed patient login; lock the login for a while after too many."""
        with self.transaction():
            self._db.execute("UPDATE dmp SET failed_logins = failed_logins + 1 WHERE ins = ?",
                             (ins,))
            self._db.execute("UPDATE dmp SET locked_until = ?, failed_logins = 0 "
                             "WHERE ins = ? AND failed_logins >= ?", (now + lock_for, ins,
                                                                      lock_after))

    def login_succeeded(self, ins: str) -> None:
        """Reset the failure count."""
        self._run("UPDATE dmp SET failed_logins = 0, locked_until = NULL WHERE ins = ?", (ins,))

    # -- documents -------------------------------------------------------------------------
    def insert_document(self, doc: Document, content: bytes) -> None:
        """Register a document and its bytes (IntegrityError if its CDA id is known)."""
        values = asdict(doc)
        placeholders = ", ".join("?" for _ in _DOC_COLUMNS)
        self._run(f"INSERT INTO documents ({', '.join(_DOC_COLUMNS)}, content) "  # noqa: S608
                  f"VALUES ({placeholders}, ?)", (*values.values(), content))

    def _docs(self, where: str, args: Sequence[object]) -> list[Document]:
        rows = self._all(f"SELECT {', '.join(_DOC_COLUMNS)} FROM documents WHERE {where}",  # noqa: S608
                         args)
        out = []
        for row in rows:
            values = dict(zip(_DOC_COLUMNS, row, strict=True))
            for name in _BOOL_DOC:
                values[name] = bool(values[name])
            out.append(Document(**values))
        return out

    def find_documents(self, ins: str, *, types: Sequence[str] = (),
                       statuses: Sequence[str] = (DocStatus.AVAILABLE,
                                                  DocStatus.DELETION_REQUESTED)) -> list[Document]:
        """A record's documents of these types (all when empty) and statuses, oldest first."""
        where, args = "ins = ?", [ins]
        if statuses:
            where += f" AND status IN ({', '.join('?' for _ in statuses)})"
            args += list(statuses)
        if types:
            where += f" AND type_code IN ({', '.join('?' for _ in types)})"
            args += list(types)
        return self._docs(where + " ORDER BY submitted_at, id", args)

    def get_document(self, ins: str, document_id: str) -> Document | None:
        """One document of this record, or None."""
        found = self._docs("ins = ? AND id = ?", (ins, document_id))
        return found[0] if found else None

    def document_by_cda_id(self, ins: str, cda_id: str) -> Document | None:
        """The document registered under this CDA id, or None."""
        found = self._docs("ins = ? AND cda_id = ?", (ins, cda_id))
        return found[0] if found else None

    def content(self, document_id: str) -> bytes:
        """A document's bytes (empty once deleted)."""
        row = self._one("SELECT content FROM documents WHERE id = ?", (document_id,))
        return bytes(row[0]) if row else b""

    def set_visibility(self, doc: DocView) -> None:
        """Store the visibility flags of a document view."""
        self._run("UPDATE documents SET masked_ps = ?, invisible_patient = ?, hidden_since = ?, "
                  "announced = ?, invisible_representatives = ? WHERE id = ?",
                  (doc.masked_ps, doc.invisible_patient, doc.hidden_since, doc.announced,
                   doc.invisible_representatives, doc.id))

    def request_deletion(self, document_id: str, now: float) -> None:
        """The patient asked the author to delete it (D20)."""
        self._run("UPDATE documents SET status = 'deletion_requested', deletion_requested_at = ?"
                  " WHERE id = ? AND status = 'available'", (now, document_id))

    def delete_document(self, document_id: str, now: float) -> None:
        """Deleted: the bytes are wiped, the entry stays for the traces."""
        self._run("UPDATE documents SET status = 'deleted', deleted_at = ?, content = X'' "
                  "WHERE id = ?", (now, document_id))

    # -- traces ----------------------------------------------------------------------------
    def add_trace(self, trace: Trace) -> int:
        """Append a trace; returns its id."""
        values = asdict(trace)
        values.pop("id")
        with self.transaction():
            cur = self._db.execute(
                f"INSERT INTO traces ({', '.join(_TRACE_COLUMNS)}) "  # noqa: S608
                f"VALUES ({', '.join('?' for _ in _TRACE_COLUMNS)})", tuple(values.values()))
            return int(cur.lastrowid or 0)

    def traces(self, ins: str | None, *, limit: int = 1000,
               before: int | None = None) -> list[Trace]:
        """A record's traces, newest first (ins None: the host-wide ones)."""
        where = "ins IS NULL" if ins is None else "ins = ?"
        args: list[object] = [] if ins is None else [ins]
        if before is not None:
            where += " AND id < ?"
            args.append(before)
        rows = self._all(f"SELECT {', '.join(_TRACE_COLUMNS)}, id FROM traces "  # noqa: S608
                         f"WHERE {where} ORDER BY id DESC LIMIT ?", (*args, limit))
        return [Trace(*row) for row in rows]

    # -- consent nonces and devices ----------------------------------------------------------
    def spend_nonce(self, nonce: str, device: str, expires: float, now: float) -> bool:
        """Record a consent nonce; False if it was seen before (a replay)."""
        with self.transaction():
            self._db.execute("DELETE FROM consent_nonces WHERE expires < ?", (now - 86400,))
            try:
                self._db.execute("INSERT INTO consent_nonces VALUES (?, ?, ?, ?)",
                                 (nonce, device, expires, now))
            except sqlite3.IntegrityError:
                return False
            return True

    def enroll_device(self, device: str, public_key_pem: str, now: float) -> None:
        """Enroll (or re-enroll) a terminal's device key."""
        self._run("INSERT INTO devices VALUES (?, ?, ?, NULL) ON CONFLICT (device) DO UPDATE "
                  "SET public_key = excluded.public_key, enrolled_at = excluded.enrolled_at, "
                  "revoked_at = NULL", (device, public_key_pem, now))

    def revoke_device(self, device: str, now: float) -> bool:
        """Revoke a device key; False if unknown."""
        return self._run("UPDATE devices SET revoked_at = ? WHERE device = ? AND revoked_at IS "
                         "NULL", (now, device)) > 0

    def device_key(self, device: str) -> str | None:
        """The PEM public key of an enrolled, unrevoked device."""
        row = self._one("SELECT public_key FROM devices WHERE device = ? AND revoked_at IS NULL",
                        (device,))
        return row[0] if row else None
