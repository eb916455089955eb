"""Map every exception the daemon raises to one JSON-RPC error (STYLE.md habit 4)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from bifente.apdu.errors import (
    ApduError,
    CardError,
    CardRemoved,
    MalformedData,
    PinBlocked,
    PinCancelled,
    PinNotAvailable,
    SecurityStatusNotSatisfied,
    UnexpectedCard,
    WrongPin,
)
from bifente.client.codes import (
    CARD_ERROR,
    CONSENT_ERROR,
    DMP_ERROR,
    FORBIDDEN,
    MAIL_ERROR,
    PAIRING_ERROR,
    PIN_ERROR,
    RATE_LIMITED,
    STORAGE_FULL,
)
from bifente.edged.api.jsonrpc import INTERNAL_ERROR, INVALID_PARAMS, RpcError
from bifente.edged.api.pairing import PairingError
from bifente.edged.api.schema import SchemaError
from bifente.edged.readers.arbiter import Busy, OperationTimeout
from bifente.edged.readers.pcsc import NoCard as NoReaderCard
from bifente.edged.services import cms, smime
from bifente.edged.services.errors import Family, NoCard, ServiceError, TerminalUnavailable
from bifente.edged.services.mail import MailError
from bifente.edged.state.clients import DuplicateClient, UnknownClient
from bifente.edged.state.space import DiskFull

__all__ = ["NoCard", "TerminalUnavailable", "to_rpc_error"]

log = logging.getLogger(__name__)

_FAMILY_CODES = {Family.CARD: CARD_ERROR, Family.PIN: PIN_ERROR, Family.CONSENT: CONSENT_ERROR,
                 Family.MAIL: MAIL_ERROR, Family.DMP: DMP_ERROR, Family.PAIRING: PAIRING_ERROR,
                 Family.FORBIDDEN: FORBIDDEN, Family.RATE_LIMITED: RATE_LIMITED}


def _simple(code: int, reason: str) -> Callable[[Any], RpcError]:
    return lambda exc: RpcError(code, str(exc), reason)


def _mail(reason: str) -> Callable[[Any], RpcError]:
    return _simple(MAIL_ERROR, reason)


def _pairing(exc: PairingError) -> RpcError:
    return RpcError(PAIRING_ERROR, exc.message, str(exc.code),
                    **{k: v for k, v in exc.data.items() if k != "code"})


# Exception class -> its JSON-RPC error; the most specific class of an exception's MRO wins.
_BY_TYPE: dict[type[BaseException], Callable[[Any], RpcError]] = {
    SchemaError: _simple(INVALID_PARAMS, "invalid_params"),
    # Every service's domain errors, the DMP host's refusals and outages included
    # (edged/services/dmp_host.py): the family gives the code, the error its reason and data.
    ServiceError: lambda exc: RpcError(_FAMILY_CODES[exc.family], exc.message, exc.reason,
                                       **exc.data),
    PairingError: _pairing,
    DuplicateClient: _simple(PAIRING_ERROR, "duplicate_name"),
    UnknownClient: _simple(INVALID_PARAMS, "unknown_client"),
    DiskFull: lambda exc: RpcError(STORAGE_FULL, str(exc), "disk_full", free_bytes=exc.free,
                                   needed_bytes=exc.needed, reserve_bytes=exc.reserve),
    NoReaderCard: _simple(CARD_ERROR, "no_card"),  # a terminal slot found empty
    CardRemoved: _simple(CARD_ERROR, "card_removed"),
    Busy: _simple(CARD_ERROR, "card_busy"),
    OperationTimeout: _simple(CARD_ERROR, "timeout"),
    WrongPin: lambda exc: RpcError(PIN_ERROR, str(exc), "wrong_pin", tries_left=exc.tries_left),
    PinBlocked: _simple(PIN_ERROR, "pin_blocked"),
    PinCancelled: _simple(PIN_ERROR, "pin_cancelled"),
    PinNotAvailable: _simple(PIN_ERROR, "no_pin_pad"),
    SecurityStatusNotSatisfied: lambda exc: RpcError(
        PIN_ERROR, "the card needs the PIN first (cps.verify_pin)", "pin_required"),
    UnexpectedCard: _simple(CARD_ERROR, "card_unreadable"),
    MalformedData: _simple(CARD_ERROR, "card_unreadable"),
    ApduError: lambda exc: RpcError(CARD_ERROR, str(exc), "card_refused", sw=f"{exc.sw:04X}"),
    CardError: _simple(CARD_ERROR, "reader_error"),
    # Secure mail (edged/services/mail.py, cms/, smime/): MAIL_ERROR + reason.
    MailError: lambda exc: RpcError(MAIL_ERROR, str(exc), exc.reason, **exc.data),
    cms.SignatureInvalid: lambda exc: RpcError(MAIL_ERROR, str(exc), "signature_invalid",
                                               detail=str(exc.reason)),
    cms.CertificateInvalid: lambda exc: RpcError(MAIL_ERROR, str(exc), "certificate_invalid",
                                                 detail=str(exc.reason)),
    cms.NotForThisRecipient: _mail("not_for_this_recipient"),
    cms.DecryptionFailed: _mail("decryption_failed"),
    smime.AttachmentTooLarge: lambda exc: RpcError(
        MAIL_ERROR, str(exc), "attachment_too_large", filename=exc.name, size=exc.size,
        limit=exc.limit),
    smime.MessageTooLarge: _mail("message_too_large"),
    cms.ContentTooLarge: _mail("message_too_large"),
    smime.SenderMismatch: _mail("sender_mismatch"),
    smime.NotEncrypted: _mail("not_encrypted"),
    smime.NotSigned: _mail("not_signed"),
    cms.UnsuitableRecipient: _mail("unsuitable_recipient"),
    cms.UnsupportedAlgorithm: _mail("unsupported_algorithm"),
    smime.MalformedMessage: _mail("malformed_message"),
    cms.MalformedCms: _mail("malformed_message"),
    cms.SigningFailed: _mail("signing_failed"),
}


def to_rpc_error(exc: BaseException) -> RpcError:
    """The JSON-RPC error for an exception, by lookup; unexpected ones are logged only."""
    if isinstance(exc, RpcError):
        return exc
    for cls in type(exc).__mro__:
        render = _BY_TYPE.get(cls)
        if render is not None:
            return render(exc)
    log.error("internal error: %s", type(exc).__name__, exc_info=exc)
    return RpcError(INTERNAL_ERROR, "internal error", "internal_error")
