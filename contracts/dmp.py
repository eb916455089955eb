"""The DMP host's refusal reasons and their HTTP statuses (docs/dmp-api.md, "Refusal reasons").

A refusal is `{"error": {"reason": <Reason>, "message": ..., "details": [...]}}` answered with
`status_of(reason)`. The host decides them; edged passes them on to its clients as
`data.reason` of DMP_ERROR, so both take the codes from here.
"""

from __future__ import annotations

from enum import StrEnum

__all__ = ["Reason", "status_of"]


class Reason(StrEnum):
    """Why a request was refused; the code clients branch on and the patient sees in traces."""

    BAD_REQUEST = "bad_request"
    NOT_FOUND = "not_found"  # no such route
    METHOD_NOT_ALLOWED = "method_not_allowed"
    LENGTH_REQUIRED = "length_required"
    TOO_LARGE = "too_large"
    TRANSFER_INCOMPLETE = "transfer_incomplete"  # the body ended before Content-Length
    INTERNAL_ERROR = "internal_error"
    # authentication
    UNAUTHENTICATED = "unauthenticated"
    ADMIN_REQUIRED = "admin_required"
    CHALLENGE_INVALID = "challenge_invalid"
    SIGNATURE_INVALID = "signature_invalid"
    CERTIFICATE_INVALID = "certificate_invalid"
    CERTIFICATE_EXPIRED = "certificate_expired"
    UNKNOWN_PROFESSIONAL = "unknown_professional"
    STRUCTURE_NOT_TRUSTED = "structure_not_trusted"
    NOT_MEMBER_OF_STRUCTURE = "not_member_of_structure"
    # who may never, or not like this (docs/dmp-api.md, access matrix)
    INSURER_FORBIDDEN = "insurer_forbidden"
    OCCUPATIONAL_NEEDS_EXPRESS_CONSENT = "occupational_needs_express_consent"
    STUDENT_CARD_REFUSED = "student_card_refused"
    CARD_TYPE_REFUSED = "card_type_refused"
    BLOCKED_BY_PATIENT = "blocked_by_patient"
    OUTSIDE_ACCESS_MATRIX = "outside_access_matrix"
    MASKED_BY_PATIENT = "masked_by_patient"  # traced; the professional is told unknown_document
    HIDDEN_FROM_PATIENT = "hidden_from_patient"  # traced; the patient is told unknown_document
    # consent records (docs/dmp-api.md, "Consent records")
    CONSENT_MISSING = "consent_missing"
    CONSENT_INVALID = "consent_invalid"
    CONSENT_FORGED = "consent_forged"
    CONSENT_EXPIRED = "consent_expired"
    CONSENT_NOT_YET_VALID = "consent_not_yet_valid"
    CONSENT_REPLAYED = "consent_replayed"
    CONSENT_MISMATCH = "consent_mismatch"
    # emergency
    EMERGENCY_OPPOSED = "emergency_opposed"
    REASON_REQUIRED = "reason_required"
    NOT_REGULATING_DOCTOR = "not_regulating_doctor"
    # the record and its documents
    INS_INVALID = "ins_invalid"
    INS_MISMATCH = "ins_mismatch"
    CDA_INVALID = "cda_invalid"
    DMP_NOT_FOUND = "dmp_not_found"
    DMP_EXISTS = "dmp_exists"
    DMP_CLOSED = "dmp_closed"
    UNKNOWN_DOCUMENT = "unknown_document"
    DOCUMENT_EXISTS = "document_exists"
    NOT_AUTHOR = "not_author"
    NOT_PERMITTED = "not_permitted"
    DELETION_NOT_REQUESTED = "deletion_not_requested"
    VISIBILITY_CONFLICT = "visibility_conflict"
    # the patient's login
    LOGIN_FAILED = "login_failed"
    LOGIN_LOCKED = "login_locked"
    CODE_INVALID = "code_invalid"


_STATUS: dict[Reason, int] = {
    Reason.BAD_REQUEST: 400, Reason.REASON_REQUIRED: 400, Reason.CONSENT_INVALID: 400,
    Reason.TRANSFER_INCOMPLETE: 400,
    Reason.UNAUTHENTICATED: 401, Reason.CHALLENGE_INVALID: 401, Reason.SIGNATURE_INVALID: 401,
    Reason.CERTIFICATE_INVALID: 401, Reason.CERTIFICATE_EXPIRED: 401, Reason.LOGIN_FAILED: 401,
    Reason.CODE_INVALID: 401,
    Reason.NOT_FOUND: 404, Reason.DMP_NOT_FOUND: 404, Reason.UNKNOWN_DOCUMENT: 404,
    Reason.MASKED_BY_PATIENT: 404, Reason.HIDDEN_FROM_PATIENT: 404,
    Reason.METHOD_NOT_ALLOWED: 405,
    Reason.DMP_EXISTS: 409, Reason.DMP_CLOSED: 409, Reason.DOCUMENT_EXISTS: 409,
    Reason.DELETION_NOT_REQUESTED: 409, Reason.VISIBILITY_CONFLICT: 409,
    Reason.LENGTH_REQUIRED: 411, Reason.TOO_LARGE: 413,
    Reason.INS_INVALID: 422, Reason.INS_MISMATCH: 422, Reason.CDA_INVALID: 422,
    Reason.LOGIN_LOCKED: 429,
    Reason.INTERNAL_ERROR: 500,
}


def status_of(reason: Reason) -> int:
    """The HTTP status a refusal is answered with (403 unless listed)."""
    return _STATUS.get(reason, 403)
