"""The CPS card's part in a DMP login: who holds it, the PIN on the keypad, the signed challenge.

Run in the card's arbiter queue (edged/readers/arbiter.py) by edged/services/dmp.py; the host
session and the emergency accesses it records are kept per client and card insertion
(docs/security.md).
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from cryptography.hazmat.primitives.serialization import Encoding

from bifente.apdu.cps_spec import KeyRef
from bifente.apdu.errors import PinBlocked, PinCancelled, SecurityStatusNotSatisfied, WrongPin
from bifente.edged.readers.session import InsertedCps
from bifente.edged.services.errors import Family, ServiceError

__all__ = ["AuditHook", "Emergency", "NotThisProfessional", "ProSession", "card_login",
           "verify_pin_audited"]


class NotThisProfessional(ServiceError):
    """The CPS card in the terminal is not the one a queued feed needs."""

    def __init__(self, message: str) -> None:
        super().__init__(Family.CARD, "other_professional", message)


AuditHook = Callable[..., Any]  # audit(event, **fields): durable when it returns


def verify_pin_audited(session: InsertedCps, client: str, pin_timeout: float,
                        audit: AuditHook | None, via: str) -> None:
    """The keypad PIN for `client`, with its intent recorded before and its outcome after
    (review M5)."""
    if audit is None:
        session.verify_for(client, timeout=pin_timeout)
        return
    audit("pin.verify", outcome="asked", via=via)
    try:
        session.verify_for(client, timeout=pin_timeout)
    except WrongPin as exc:
        audit("pin.verify", outcome="wrong", tries_left=exc.tries_left, via=via)
        raise
    except PinBlocked:
        audit("pin.verify", outcome="blocked", tries_left=0, via=via)
        raise
    except PinCancelled:
        audit("pin.verify", outcome="cancelled", via=via)
        raise
    except Exception as exc:
        audit("pin.verify", outcome="error", error=type(exc).__name__, via=via)
        raise
    audit("pin.verify", outcome="ok", via=via)


def card_login(session: InsertedCps, challenge: bytes, pin_timeout: float,
                client: str | None, *, allow_pin: bool = True,
                expected: str | None = None, audit: AuditHook | None = None,
                via: str = "dmp.login") -> dict[str, Any]:
    """Identity, then INTERNAL AUTHENTICATE of the challenge with this client's PIN state
    (typed on the keypad if needed and allowed; every attempt goes to `audit`). `client` None
    is the background queue: it uses the card as it is and never prompts."""
    holder = session.identity().holder
    if expected is not None and holder.national_id != expected:
        raise NotThisProfessional("the CPS card in the terminal is another professional's")
    if client is not None:
        session.claim(client)
    try:
        signature = session.authenticate(challenge)
    except SecurityStatusNotSatisfied:
        if not allow_pin or client is None:
            raise
        verify_pin_audited(session, client, pin_timeout, audit, via)
        signature = session.authenticate(challenge)
    der = session.certificate(KeyRef.AUTHENTICATION).public_bytes(Encoding.DER)
    return {"national_id": holder.national_id, "display_name": holder.display_name,
            "signature": base64.b64encode(signature).decode(),
            "certificate": base64.b64encode(der).decode()}


@dataclass
class ProSession:
    """A professional's session on the host, for one client and one CPS card insertion."""

    token: str = field(repr=False)  # the host's bearer token: never in a log line or trace
    national_id: str
    display_name: str
    arbiter: Any  # the card insertion (a new arbiter per insertion)
    professional: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Emergency:
    """An emergency access ("bris de glace", centre 15): who declared it, for whom, why."""

    client: str  # the client context that declared it; nobody else reads under it
    professional: str  # national id of the CPS holder who declared it
    ins: str = field(repr=False)
    mode: str
    reason: str = field(repr=False)
    until: float  # time.monotonic()
    arbiter: Any = field(repr=False)  # the card insertion it was declared with
