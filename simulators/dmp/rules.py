"""The DMP rules (docs/dmp-api.md) as pure functions: who may act on a record, see which document.

Nothing here touches the network, the database or the clock: callers pass `now`. Facts with a
public source are constants cited beside them; stand-ins come from the policy file
(`data/standin_access_matrix.toml`), loaded once at start (D11).
"""

from __future__ import annotations

import calendar
import datetime as dt
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum
from pathlib import Path

from bifente.simulators.dmp.codes import AccessMode, DocStatus, Reason

__all__ = [
    "DEFAULT_POLICY",
    "DmpView",
    "DocView",
    "DocumentType",
    "PatientVisibility",
    "Policy",
    "PolicyError",
    "Professional",
    "add_one_month",
    "apply_visibility",
    "check_dmp",
    "check_emergency",
    "check_occupational",
    "check_visibility",
    "check_visibility_change",
    "document_refusal",
    "gate",
    "is_regulating_doctor",
    "load_policy",
    "patient_visibility",
]

DEFAULT_POLICY = Path(__file__).parent / "data" / "standin_access_matrix.toml"

# docs/cards.md (Codes): card-holder sector 61 (private insurers' expertise) and structure
# sector SA23 (private insurance) identify insurers and mutual insurers: always refused (D1).
INSURER_CARD_SECTORS = frozenset({"61"})
INSURER_STRUCTURE_SECTORS = frozenset({"SA23"})
# docs/dmp-api.md: occupational medicine (SM25) only with the patient's express consent (D1).
OCCUPATIONAL_SPECIALTIES = frozenset({"SM25"})
# docs/dmp-api.md (D8): prompted after 2 weeks, visible automatically after 1 month.
PROMPT_AFTER = dt.timedelta(weeks=2)


class PolicyError(ValueError):
    """The policy file is invalid; the message names the entry."""


@dataclass(frozen=True)
class DocumentType:
    """A document type accepted in the DMP (a LOINC code)."""

    code: str
    name: str
    category: str
    sensitive: bool = False


@dataclass(frozen=True)
class Policy:
    """The access matrix and the stand-in policies, as loaded from the policy file."""

    types: Mapping[str, DocumentType]
    allowed: Mapping[str, frozenset[str]]  # profession -> LOINC codes it may see
    card_types_allowed: frozenset[int] = frozenset({0})
    student_card_types: frozenset[int] = frozenset({1})
    regulating_profession: str = "10"
    regulating_specialties: frozenset[str] = frozenset({"SM59"})
    masked_visible_in_emergency: bool = False
    allow_masked_and_invisible: bool = False
    consent_max_lifetime: int = 86400
    consent_clock_skew: int = 120
    source: str = ""

    def allows(self, profession: str, type_code: str) -> bool:
        """True when the access matrix lets this profession see this document type."""
        return type_code in self.allowed.get(profession, frozenset())


def load_policy(path: Path = DEFAULT_POLICY) -> Policy:
    """Load the access matrix and stand-in policies; raises PolicyError naming the entry."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise PolicyError(f"{path.name}: {exc}") from exc
    types: dict[str, DocumentType] = {}
    for code, entry in data.get("document_types", {}).items():
        try:
            types[code] = DocumentType(code, entry["name"], entry["category"],
                                       bool(entry.get("sensitive", False)))
        except (KeyError, TypeError) as exc:
            raise PolicyError(f"{path.name}: document type {code}: missing {exc}") from exc
    if not types:
        raise PolicyError(f"{path.name}: no [document_types]")
    categories = {t.category for t in types.values()}
    allowed: dict[str, set[str]] = {}
    for group in data.get("groups", []):
        name = group.get("name", "?")
        allow = group.get("allow", [])
        unknown = [c for c in allow if c != "*" and c not in categories and c not in types]
        if unknown:
            raise PolicyError(f"{path.name}: group {name!r}: unknown categories {unknown}")
        codes = {t.code for t in types.values()
                 if "*" in allow or t.category in allow or t.code in allow}
        if group.get("exclude_sensitive"):
            codes = {c for c in codes if not types[c].sensitive}
        for profession in group.get("professions", []):
            allowed.setdefault(str(profession), set()).update(codes)
    s = data.get("stand_in", {})
    return Policy(
        types=types,
        allowed={p: frozenset(c) for p, c in allowed.items()},
        card_types_allowed=frozenset(int(x) for x in s.get("card_types_allowed", [0])),
        student_card_types=frozenset(int(x) for x in s.get("student_card_types", [1])),
        regulating_profession=str(s.get("regulating_profession", "10")),
        regulating_specialties=frozenset(s.get("regulating_specialties", ["SM59"])),
        masked_visible_in_emergency=bool(s.get("masked_visible_in_emergency", False)),
        allow_masked_and_invisible=bool(s.get("allow_masked_and_invisible", False)),
        consent_max_lifetime=int(s.get("consent_max_lifetime_seconds", 86400)),
        consent_clock_skew=int(s.get("consent_clock_skew_seconds", 120)),
        source=path.name,
    )


@dataclass(frozen=True)
class Professional:
    """An authenticated professional as the host sees them (certificate + stand-in directory)."""

    national_id: str
    name: str
    profession: str
    specialty: str
    card_type: int
    sector: str  # the acting practice situation's sector (e.g. 31, 42, 61)
    structure_id: str
    structure_name: str
    structure_sector: str = ""  # SAxx from the directory; "" when unknown
    samu: bool = False  # the acting structure is a SAMU (centre 15)
    auth_mode: str = "direct"  # "direct" (own CPS) or "indirect" (vouched for by a structure)

    def to_json(self) -> dict[str, object]:
        """The professional as the API shows it."""
        return {"national_id": self.national_id, "name": self.name,
                "profession": self.profession, "specialty": self.specialty,
                "card_type": self.card_type, "sector": self.sector,
                "structure": {"id": self.structure_id, "name": self.structure_name,
                              "sector": self.structure_sector, "samu": self.samu},
                "auth_mode": self.auth_mode}


@dataclass(frozen=True)
class DmpView:
    """What the rules need to know about a patient's record."""

    ins: str = field(repr=False)
    status: str  # "open" or "closed"
    chosen_doctor: str | None = None
    oppose_bris_de_glace: bool = False
    oppose_centre_15: bool = False
    occupational_consent: bool = False
    blocked: frozenset[str] = frozenset()


@dataclass(frozen=True)
class DocView:
    """What the rules need to know about a document."""

    id: str
    type_code: str
    author_id: str  # national id from the CDA, or "patient"
    fed_by: str  # who registered it (national id, or "patient")
    status: str = DocStatus.AVAILABLE
    masked_ps: bool = False
    invisible_patient: bool = False
    hidden_since: float | None = None
    announced: bool = False
    invisible_representatives: bool = False


def gate(prof: Professional, policy: Policy) -> Reason | None:
    """Refusals that hold whatever the record: insurers (D1) and card types."""
    if prof.sector in INSURER_CARD_SECTORS or prof.structure_sector in INSURER_STRUCTURE_SECTORS:
        return Reason.INSURER_FORBIDDEN
    if prof.card_type in policy.student_card_types:
        return Reason.STUDENT_CARD_REFUSED
    if prof.card_type not in policy.card_types_allowed:
        return Reason.CARD_TYPE_REFUSED
    return None


def check_dmp(prof: Professional, dmp: DmpView | None) -> Reason | None:
    """The record exists, is open, and the patient has not blocked this professional (D18)."""
    if dmp is None:
        return Reason.DMP_NOT_FOUND
    if dmp.status != "open":
        return Reason.DMP_CLOSED
    if prof.national_id in dmp.blocked:
        return Reason.BLOCKED_BY_PATIENT
    return None


def check_occupational(prof: Professional, dmp: DmpView, *, express: bool) -> Reason | None:
    """Occupational doctors need the patient's express consent (D1): a flag or the record's."""
    if prof.specialty in OCCUPATIONAL_SPECIALTIES and not (dmp.occupational_consent or express):
        return Reason.OCCUPATIONAL_NEEDS_EXPRESS_CONSENT
    return None


def is_regulating_doctor(prof: Professional, policy: Policy) -> bool:
    """A SAMU regulating doctor (STAND-IN definition from the policy file and the directory)."""
    return (prof.profession == policy.regulating_profession
            and prof.specialty in policy.regulating_specialties and prof.samu)


def check_emergency(prof: Professional, dmp: DmpView, mode: AccessMode, reason: str,
                    policy: Policy) -> Reason | None:
    """Emergency access (D13, D14): a stated reason, no prior opposition, centre 15 regulators."""
    if not reason.strip():
        return Reason.REASON_REQUIRED
    if mode is AccessMode.BRIS_DE_GLACE and dmp.oppose_bris_de_glace:
        return Reason.EMERGENCY_OPPOSED
    if mode is AccessMode.CENTRE_15:
        if not is_regulating_doctor(prof, policy):
            return Reason.NOT_REGULATING_DOCTOR
        if dmp.oppose_centre_15:
            return Reason.EMERGENCY_OPPOSED
    return None


def document_refusal(prof: Professional, doc: DocView, dmp: DmpView, policy: Policy,
                     mode: AccessMode = AccessMode.NORMAL) -> Reason | None:
    """Why this professional may not see this document, or None (D11, D16)."""
    if doc.status == DocStatus.DELETED:
        return Reason.UNKNOWN_DOCUMENT
    if prof.national_id in (doc.author_id, doc.fed_by):
        return None  # authors always see what they wrote
    if doc.masked_ps and prof.national_id != dmp.chosen_doctor and not (
            mode is not AccessMode.NORMAL and policy.masked_visible_in_emergency):
        return Reason.MASKED_BY_PATIENT
    if not policy.allows(prof.profession, doc.type_code):
        return Reason.OUTSIDE_ACCESS_MATRIX
    return None


def add_one_month(ts: float) -> float:
    """The same time one calendar month later (day clamped: 31 January -> 28/29 February)."""
    d = dt.datetime.fromtimestamp(ts, dt.UTC)
    year, month = (d.year + 1, 1) if d.month == 12 else (d.year, d.month + 1)
    day = min(d.day, calendar.monthrange(year, month)[1])
    return d.replace(year=year, month=month, day=day).timestamp()


class PatientVisibility(StrEnum):
    """What the patient sees of a document (D8)."""

    VISIBLE = "visible"
    HIDDEN = "hidden"  # waiting for the announcement consultation
    PROMPT = "prompt"  # still hidden, and after 2 weeks the patient is prompted


def patient_visibility(doc: DocView, now: float) -> tuple[PatientVisibility, float | None]:
    """The patient's view of a document and when it becomes visible (None: already is)."""
    if not doc.invisible_patient or doc.announced or doc.hidden_since is None:
        return PatientVisibility.VISIBLE, None
    visible_from = add_one_month(doc.hidden_since)
    if now >= visible_from:
        return PatientVisibility.VISIBLE, None
    if now >= doc.hidden_since + PROMPT_AFTER.total_seconds():
        return PatientVisibility.PROMPT, visible_from
    return PatientVisibility.HIDDEN, visible_from


# Who may change which visibility flag: the author (D8, D16) or the patient (D15, D16).
AUTHOR_FLAGS = frozenset({"masked_ps", "invisible_patient", "invisible_representatives",
                          "announced"})
PATIENT_FLAGS = frozenset({"masked_ps", "invisible_representatives"})


def apply_visibility(doc: DocView, changes: Mapping[str, bool], now: float) -> DocView:
    """The document with these flag changes applied (hiding restarts the one-month clock)."""
    unknown = changes.keys() - AUTHOR_FLAGS
    if unknown:
        raise ValueError(f"not visibility flags: {', '.join(sorted(unknown))}")
    updated = replace(
        doc, masked_ps=changes.get("masked_ps", doc.masked_ps),
        invisible_patient=changes.get("invisible_patient", doc.invisible_patient),
        invisible_representatives=changes.get("invisible_representatives",
                                              doc.invisible_representatives),
        announced=changes.get("announced", doc.announced))
    if changes.get("invisible_patient") and not (doc.invisible_patient and not doc.announced):
        updated = replace(updated, hidden_since=now, announced=changes.get("announced", False))
    return updated


def check_visibility_change(doc: DocView, changes: Mapping[str, bool], *, by_patient: bool,
                            policy: Policy, now: float) -> Reason | None:
    """Whether these visibility changes are allowed for this actor (None: allowed)."""
    allowed = PATIENT_FLAGS if by_patient else AUTHOR_FLAGS
    if not changes or not set(changes) <= allowed:
        return Reason.NOT_PERMITTED
    if doc.status == DocStatus.DELETED:
        return Reason.UNKNOWN_DOCUMENT
    return check_visibility(apply_visibility(doc, changes, now), policy, now)


def check_visibility(doc: DocView, policy: Policy, now: float) -> Reason | None:
    """A document may not be both masked and hidden from the patient (docs/dmp-api.md: default)."""
    hidden = patient_visibility(doc, now)[0] is not PatientVisibility.VISIBLE
    if doc.masked_ps and hidden and not policy.allow_masked_and_invisible:
        return Reason.VISIBILITY_CONFLICT
    return None
