"""What the patient's operations answer: plain values, rendered as JSON by the API
(docs/dmp-api.md) and as HTML by the pages. Documents and traces are the stored ones."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from bifente.simulators.dmp.storage import Document, Trace

__all__ = ["Fields", "LoginStarted", "Named", "PatientDocument", "PatientDocuments",
           "PatientRecord", "PatientToken", "Pending"]

# An operation's input fields, named as in docs/dmp-api.md: a dict from a page, the JSON body
# over HTTP. An operation reads them after its own checks (the API reads the body only then).
Fields = Mapping[str, object]


@dataclass(frozen=True)
class LoginStarted:
    """The first login step passed: a one-time code is on its way (or on the terminal)."""

    login: str
    code_sent_via: str  # "terminal" when issued ahead, else the code sender's name
    expires_in: int


@dataclass(frozen=True)
class PatientToken:
    """The patient's session, opened by the one-time code."""

    token: str
    expires_in: int


@dataclass(frozen=True)
class Named:
    """A professional of the directory by national id ("" when the directory has no name)."""

    national_id: str
    name: str


@dataclass(frozen=True)
class PatientRecord:
    """The patient's record: status, settings, blocked professionals, emergency accesses."""

    ins: str
    status: str
    created_at: float
    closed_at: float | None
    oppose_bris_de_glace: bool
    oppose_centre_15: bool
    occupational_consent: bool
    chosen_doctor: Named | None
    blocked: tuple[Named, ...]
    emergency_accesses: tuple[Trace, ...]

    @property
    def open(self) -> bool:
        """True while the record is open (closed: read only for the patient)."""
        return self.status == "open"


@dataclass(frozen=True)
class Pending:
    """A document hidden from the patient for two weeks now (D8): shown without its title."""

    id: str
    visible_from: float | None


@dataclass(frozen=True)
class PatientDocuments:
    """What the patient sees of the record's documents (D8)."""

    documents: tuple[Document, ...]
    pending: tuple[Pending, ...]


@dataclass(frozen=True)
class PatientDocument:
    """One visible document and its CDA."""

    document: Document
    cda: bytes

