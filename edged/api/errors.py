"""Map every exception the daemon raises to one JSON-RPC error (STYLE.md habit 4)."""

from __future__ import annotations

import logging

from apdu.errors import (
    ApduError,
    CardError,
    CardRemoved,
    MalformedData,
    PinBlocked,
    PinCancelled,
    PinNotAvailable,
    SecurityStatusNotSatisfied,
    TransportError,
    UnexpectedCard,
    WrongPin,
)
from edged.api.jsonrpc import INTERNAL_ERROR, INVALID_PARAMS, RpcError
from edged.api.schema import SchemaError
from edged.readers.arbiter import Busy, OperationTimeout
from edged.services.errors import Family, ServiceError

__all__ = [
    "CARD_ERROR",
    "CONSENT_ERROR",
    "DMP_ERROR",
    "FORBIDDEN",
    "MAIL_ERROR",
    "NOT_PAIRED",
    "PAIRING_ERROR",
    "PIN_ERROR",
    "RATE_LIMITED",
    "REVOKED",
    "STORAGE_FULL",
    "TOO_LARGE",
    "NoCard",
    "TerminalUnavailable",
    "to_rpc_error",
]

log = logging.getLogger(__name__)

# Application error codes (JSON-RPC 2.0 §5.1: -32000..-32099 are implementation-defined).
NOT_PAIRED = -32000
FORBIDDEN = -32001
REVOKED = -32002
RATE_LIMITED = -32003
TOO_LARGE = -32004
STORAGE_FULL = -32005  # the state's disk is nearly full: new durable work refused
CARD_ERROR = -32010
PIN_ERROR = -32020
PAIRING_ERROR = -32030
CONSENT_ERROR = -32040
MAIL_ERROR = -32050
DMP_ERROR = -32060  # the DMP host refused: data.reason is the host's reason code


_FAMILY_CODES = {Family.CARD: CARD_ERROR, Family.PIN: PIN_ERROR, Family.CONSENT: CONSENT_ERROR,
                 Family.MAIL: MAIL_ERROR, Family.DMP: DMP_ERROR, Family.PAIRING: PAIRING_ERROR,
                 Family.FORBIDDEN: FORBIDDEN}


class NoCard(Exception):
    """No card of the kind the method needs is inserted."""


class TerminalUnavailable(Exception):
    """The method needs the terminal's display and keys, and there is no terminal."""


def to_rpc_error(exc: BaseException) -> RpcError:
    """The JSON-RPC error for an exception; unexpected ones are logged, not detailed."""
    if isinstance(exc, RpcError):
        return exc
    if isinstance(exc, SchemaError):
        return RpcError(INVALID_PARAMS, str(exc), "invalid_params")
    if isinstance(exc, ServiceError):
        return RpcError(_FAMILY_CODES[exc.family], exc.message, exc.reason, **exc.data)
    from edged.api.pairing import PairingError
    from edged.state.clients import DuplicateClient, UnknownClient
    from edged.state.space import DiskFull

    if isinstance(exc, PairingError):
        data = {k: v for k, v in exc.data.items() if k != "code"}
        return RpcError(PAIRING_ERROR, exc.message, str(exc.code), **data)
    if isinstance(exc, DuplicateClient):
        return RpcError(PAIRING_ERROR, str(exc), "duplicate_name")
    if isinstance(exc, UnknownClient):
        return RpcError(INVALID_PARAMS, str(exc), "unknown_client")
    if isinstance(exc, DiskFull):
        return RpcError(STORAGE_FULL, str(exc), "disk_full", free_bytes=exc.free,
                        needed_bytes=exc.needed, reserve_bytes=exc.reserve)
    if isinstance(exc, NoCard):
        return RpcError(CARD_ERROR, str(exc), "no_card")
    if isinstance(exc, CardRemoved):
        return RpcError(CARD_ERROR, str(exc), "card_removed")
    if isinstance(exc, Busy):
        return RpcError(CARD_ERROR, str(exc), "card_busy")
    if isinstance(exc, OperationTimeout):
        return RpcError(CARD_ERROR, str(exc), "timeout")
    if isinstance(exc, WrongPin):
        return RpcError(PIN_ERROR, str(exc), "wrong_pin", tries_left=exc.tries_left)
    if isinstance(exc, PinBlocked):
        return RpcError(PIN_ERROR, str(exc), "pin_blocked")
    if isinstance(exc, PinCancelled):
        return RpcError(PIN_ERROR, str(exc), "pin_cancelled")
    if isinstance(exc, PinNotAvailable):
        return RpcError(PIN_ERROR, str(exc), "no_pin_pad")
    if isinstance(exc, SecurityStatusNotSatisfied):
        return RpcError(PIN_ERROR, "the card needs the PIN first (cps.verify_pin)",
                        "pin_required")
    if isinstance(exc, TerminalUnavailable):
        return RpcError(CONSENT_ERROR, str(exc), "no_terminal")
    if isinstance(exc, UnexpectedCard | MalformedData):
        return RpcError(CARD_ERROR, str(exc), "card_unreadable")
    if isinstance(exc, ApduError):
        return RpcError(CARD_ERROR, str(exc), "card_refused", sw=f"{exc.sw:04X}")
    if isinstance(exc, TransportError | CardError):
        return RpcError(CARD_ERROR, str(exc), "reader_error")
    mail = _mail_error(exc)
    if mail is not None:
        return mail
    log.error("internal error: %s", type(exc).__name__, exc_info=exc)
    return RpcError(INTERNAL_ERROR, "internal error", "internal_error")


def _mail_error(exc: BaseException) -> RpcError | None:
    """Secure mail failures (edged/services/mail.py, cms.py, smime.py): MAIL_ERROR + reason."""
    from edged.services import cms, smime
    from edged.services.mail import MailError

    if isinstance(exc, MailError):
        return RpcError(MAIL_ERROR, str(exc), exc.reason, **exc.data)
    if isinstance(exc, cms.SignatureInvalid):
        return RpcError(MAIL_ERROR, str(exc), "signature_invalid", detail=str(exc.reason))
    if isinstance(exc, cms.CertificateInvalid):
        return RpcError(MAIL_ERROR, str(exc), "certificate_invalid", detail=str(exc.reason))
    if isinstance(exc, cms.NotForThisRecipient):
        return RpcError(MAIL_ERROR, str(exc), "not_for_this_recipient")
    if isinstance(exc, cms.DecryptionFailed):
        return RpcError(MAIL_ERROR, str(exc), "decryption_failed")
    if isinstance(exc, smime.AttachmentTooLarge):
        return RpcError(MAIL_ERROR, str(exc), "attachment_too_large", filename=exc.name,
                        size=exc.size, limit=exc.limit)
    if isinstance(exc, smime.MessageTooLarge | cms.ContentTooLarge):
        return RpcError(MAIL_ERROR, str(exc), "message_too_large")
    if isinstance(exc, smime.SenderMismatch):
        return RpcError(MAIL_ERROR, str(exc), "sender_mismatch")
    if isinstance(exc, smime.NotEncrypted):
        return RpcError(MAIL_ERROR, str(exc), "not_encrypted")
    if isinstance(exc, smime.NotSigned):
        return RpcError(MAIL_ERROR, str(exc), "not_signed")
    if isinstance(exc, cms.UnsuitableRecipient):
        return RpcError(MAIL_ERROR, str(exc), "unsuitable_recipient")
    if isinstance(exc, cms.UnsupportedAlgorithm):
        return RpcError(MAIL_ERROR, str(exc), "unsupported_algorithm")
    if isinstance(exc, smime.MalformedMessage | cms.MalformedCms):
        return RpcError(MAIL_ERROR, str(exc), "malformed_message")
    if isinstance(exc, cms.SigningFailed):
        return RpcError(MAIL_ERROR, str(exc), "signing_failed")
    return None
