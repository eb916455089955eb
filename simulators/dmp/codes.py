"""The DMP host's vocabulary: modes, actions, statuses; refusal reasons from contracts/dmp.py."""

from __future__ import annotations

from enum import StrEnum

from bifente.contracts.dmp import Reason, status_of

__all__ = [
    "CONSENT_ACTIONS",
    "AccessMode",
    "Action",
    "CdaProblem",
    "DocStatus",
    "Outcome",
    "Reason",
    "Refused",
    "status_of",
]


class Refused(Exception):
    """A request refused for a reason; raised where decided, answered and traced at the edge.

    `told` is the reason the client is given when it differs from the traced one (a masked
    document is answered as unknown, so its existence does not leak).
    """

    def __init__(self, reason: Reason, message: str = "", *,
                 details: list[dict[str, str]] | None = None, told: Reason | None = None) -> None:
        super().__init__(message or reason.value)
        self.reason = reason
        self.message = message or reason.value.replace("_", " ")
        self.details = details or []
        self.told = told or reason


class CdaProblem(StrEnum):
    """One reason a CDA document is not conforming (D7); a refusal lists every one found."""

    XML_MALFORMED = "xml_malformed"
    DTD_FORBIDDEN = "dtd_forbidden"  # DTDs and entity declarations (entity bombs, XXE)
    NOT_CLINICAL_DOCUMENT = "not_clinical_document"
    TYPE_ID_MISSING = "type_id_missing"
    ID_MISSING = "id_missing"
    CODE_MISSING = "code_missing"
    CODE_SYSTEM_NOT_LOINC = "code_system_not_loinc"
    CODE_NOT_ALLOWED = "code_not_allowed"
    TITLE_MISSING = "title_missing"
    EFFECTIVE_TIME_INVALID = "effective_time_invalid"
    CONFIDENTIALITY_INVALID = "confidentiality_invalid"
    RECORD_TARGET_MISSING = "record_target_missing"
    INS_OID_INVALID = "ins_oid_invalid"
    INS_INVALID = "ins_invalid"
    INS_MISMATCH = "ins_mismatch"
    AUTHOR_MISSING = "author_missing"
    CUSTODIAN_MISSING = "custodian_missing"
    BODY_MISSING = "body_missing"
    BODY_INVALID = "body_invalid"


class AccessMode(StrEnum):
    """Access modes (TRE_R248, docs/dmp-api.md)."""

    NORMAL = "normal"
    BRIS_DE_GLACE = "bris_de_glace"
    CENTRE_15 = "centre_15"


class Action(StrEnum):
    """What a trace records (and what a consent record authorises: read, feed, create)."""

    AUTHENTICATE = "authenticate"
    EXISTS = "exists"
    CREATE = "create"
    FEED = "feed"
    READ = "read"  # consent action covering find and retrieve
    FIND = "find"
    RETRIEVE = "retrieve"
    VISIBILITY = "visibility"
    DELETE = "delete"
    EMERGENCY = "emergency"
    TRACES = "traces"
    PATIENT_LOGIN = "patient_login"
    PATIENT_CODE_ISSUED = "patient_code_issued"  # a login code shown on the terminal
    PATIENT_SETTINGS = "patient_settings"
    PATIENT_BLOCK = "patient_block"
    PATIENT_UNBLOCK = "patient_unblock"
    DELETION_REQUEST = "deletion_request"
    CLOSE = "close"
    ENROLL_DEVICE = "enroll_device"


CONSENT_ACTIONS = frozenset({Action.READ, Action.FEED, Action.CREATE})


class DocStatus(StrEnum):
    """A document's life: available, deletion asked by the patient (D20), deleted by its author."""

    AVAILABLE = "available"
    DELETION_REQUESTED = "deletion_requested"
    DELETED = "deleted"


class Outcome(StrEnum):
    """A trace's outcome."""

    OK = "ok"
    REFUSED = "refused"
