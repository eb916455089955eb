"""Card operations as the API offers them, on the insertion's session (run in its arbiter).

Each returns a dataclass; edged/api/render.py turns them into JSON.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from cryptography import x509

from bifente.apdu.cps import CpsIdentity, CpsSession, PinStatus
from bifente.apdu.cps_spec import KeyRef
from bifente.apdu.errors import PinBlocked, PinCancelled, WrongPin
from bifente.apdu.vitale import VitaleCard, VitaleSession
from bifente.edged.readers.arbiter import CardArbiter
from bifente.edged.readers.manager import ReaderLost
from bifente.edged.readers.pcsc import CardKind
from bifente.edged.readers.session import InsertedCps
from bifente.edged.services.context import ServiceContext
from bifente.edged.services.errors import Family, NoCard, ServiceError

T = TypeVar("T")

# The DMP host's login challenge is 32 random bytes (docs/dmp-api.md, "Authentication"), and
# only the daemon answers it (docs/security.md): a client's own signature with the
# authentication key never covers 32 bytes, so it cannot be turned into a DMP login.
DMP_CHALLENGE_BYTES = 32

__all__ = [
    "DMP_CHALLENGE_BYTES",
    "CpsInfo",
    "PinOutcome",
    "PinResult",
    "Signature",
    "arbiter_for",
    "authenticate",
    "check_not_host_challenge",
    "cps_info",
    "missing",
    "on_card",
    "pin_status",
    "sign",
    "verify_pin",
    "vitale_read",
]


@dataclass(frozen=True)
class CpsInfo:
    """The professional on the card and the PIN's counters."""

    identity: CpsIdentity
    pin: PinStatus


class PinResult(enum.StrEnum):
    """How a PIN entry on the keypad ended."""

    OK = "ok"
    WRONG = "wrong"
    BLOCKED = "blocked"
    CANCELLED = "cancelled"


@dataclass(frozen=True)
class PinOutcome:
    """The outcome of a PIN entry, never the PIN."""

    result: PinResult
    tries_left: int


@dataclass(frozen=True)
class Signature:
    """RSA PKCS#1 v1.5 over SHA-256 by the card, with the key's certificate."""

    signature: bytes
    certificate: x509.Certificate
    algorithm: str = "sha256WithRSAEncryption"


def missing(ctx: ServiceContext, kind: CardKind) -> Exception:
    """Why no card of this kind is at hand: ReaderLost while a lost reader holds one
    (`reader_error`, SlotRegistry.lost_reason), else NoCard (`no_card`)."""
    if lost := ctx.slots.lost_reason(kind):
        return ReaderLost(lost)
    return NoCard(f"no {'CPS' if kind is CardKind.CPS else 'Vitale'} card is inserted")


def arbiter_for(ctx: ServiceContext, kind: CardKind) -> CardArbiter:
    """The arbiter of the inserted card of this kind (its insertion); NoCard or ReaderLost
    (`missing`) when there is none."""
    slot = ctx.slots.find(kind)
    if slot is None or slot.arbiter is None:
        raise missing(ctx, kind)
    return slot.arbiter


async def on_card(ctx: ServiceContext, client: str, kind: CardKind, fn: Callable[[Any], T],
                  label: str, timeout: float | None = None) -> T:
    """Run fn on the session of the card of this kind, in its arbiter's queue, for client."""
    return await arbiter_for(ctx, kind).run(client, fn, label=label,
                                            timeout=timeout or ctx.config.card_timeout)


def check_not_host_challenge(data: bytes) -> None:
    """Refuse to sign, with the authentication key, what has the DMP host's challenge shape."""
    if len(data) == DMP_CHALLENGE_BYTES:
        raise ServiceError(Family.FORBIDDEN, "challenge_reserved",
                           f"{DMP_CHALLENGE_BYTES}-byte challenges are the DMP host's: only "
                           "the daemon logs in there with the card (use another length)")


def vitale_read(session: VitaleSession) -> VitaleCard:
    """The Vitale card's contents."""
    return session.read()


def cps_info(session: CpsSession) -> CpsInfo:
    """The holder and the card, no PIN needed."""
    return CpsInfo(session.identity(), session.pin_status())


def certificates(session: CpsSession) -> tuple[x509.Certificate, x509.Certificate]:
    """(signature, authentication = encryption) certificates; an inserted card's session
    reads each once per insertion (a second or more on the terminal's serial line)."""
    return session.certificate(KeyRef.SIGNATURE), session.certificate(KeyRef.AUTHENTICATION)


def pin_status(session: CpsSession) -> PinStatus:
    """The PIN's try counters."""
    return session.pin_status()


def verify_pin(session: CpsSession, timeout: float, client: str | None = None) -> PinOutcome:
    """The reader's keypad collects the PIN (for this client); the outcome, never the PIN."""
    try:
        if isinstance(session, InsertedCps) and client is not None:
            session.verify_for(client, timeout=timeout)
        else:
            session.verify_pin(None, timeout=timeout)
    except WrongPin as exc:
        return PinOutcome(PinResult.WRONG, exc.tries_left)
    except PinBlocked:
        return PinOutcome(PinResult.BLOCKED, 0)
    except PinCancelled:
        return PinOutcome(PinResult.CANCELLED, session.pin_status().tries_left)
    return PinOutcome(PinResult.OK, session.pin_status().tries_left)


def sign(session: InsertedCps, client: str, data: bytes, key: KeyRef) -> Signature:
    """SHA-256 + RSA PKCS#1 v1.5 by the card (split hash) with this client's PIN state."""
    session.claim(client)
    return Signature(session.sign(data, key), session.certificate(key))


def authenticate(session: InsertedCps, client: str, challenge: bytes) -> Signature:
    """INTERNAL AUTHENTICATE of SHA-256(challenge) with this client's PIN state."""
    session.claim(client)
    return Signature(session.authenticate(challenge),
                     session.certificate(KeyRef.AUTHENTICATION))
