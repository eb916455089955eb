"""CPS methods beyond read/verify/sign (registered in edged/api/methods.py), and display.show.

- `cps.certificates`: both certificates of the inserted card, without any PIN, read once per
  insertion (a CAdES/XAdES signer needs the certificate before it signs).
- `cps.pin_state`: the try counters and whether the PIN is verified now (ISO 7816-4
  §11.5.6: VERIFY without data answers 9000 when verified, 63Cx otherwise).
- `cps.logout`: end the verified state (VERIFY with P1=FF, ISO 7816-4 §11.5.6), so that no
  other client can sign with a PIN typed for someone else.
- `display.show`: a message on the terminal's display, with its own scope.

No sign-a-digest: the CPS3 signature key signs only through the card's split hash (the card
finishes the hash itself), and letting a client have the authentication key sign any
32-byte digest would let it answer other services' authentication challenges. A CAdES or
XAdES signer signs its signed attributes (a few hundred bytes, holding the document's
digest) with `cps.sign`, which is the digest-sized operation such formats need.

The card functions take the card's session (a CpsSession) or its CardProtocol, whichever
the slot's arbiter hands over.
"""

from __future__ import annotations

import base64
import datetime
import weakref
from typing import TYPE_CHECKING, Any

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from apdu.command import CommandApdu
from apdu.cps import CpsSession
from apdu.cps_spec import CPS_AID, KeyRef, PinRef
from apdu.errors import ApduError, AuthMethodBlocked
from apdu.ins import INS
from edged.api.errors import TerminalUnavailable
from edged.api.method import BOOL, STR, Method, obj, on_card
from edged.readers.ui import fit_lines

if TYPE_CHECKING:
    from apdu.protocol import CardProtocol
    from edged.api.server import Connection
    from edged.daemon import Daemon

__all__ = ["METHODS", "certificate_info", "pin_verified"]

# The certificates of the inserted card, read once per insertion (each arbiter is one
# insertion): on the terminal's serial line a certificate is a second or more of APDUs.
_CERTIFICATES: weakref.WeakKeyDictionary[Any, tuple[x509.Certificate, x509.Certificate]] = \
    weakref.WeakKeyDictionary()


def _session(card: Any) -> CpsSession:
    return card if isinstance(card, CpsSession) else CpsSession(card)


def _protocol(card: Any) -> CardProtocol:
    return card.protocol if isinstance(card, CpsSession) else card

SOON_DAYS = 30  # a certificate expiring within this many days is flagged


def pin_verified(card: Any) -> bool:
    """True when the CPS PIN is verified now (VERIFY with no data: a status query, no try)."""
    protocol = _protocol(card)
    protocol.select_aid(CPS_AID)
    try:
        protocol.transceive(CommandApdu(0x00, INS.VERIFY, 0x00, PinRef.PIN))
    except AuthMethodBlocked:
        return False
    except ApduError as exc:
        if exc.sw >> 4 == 0x63C:
            return False
        raise
    return True


def _logout(card: Any) -> int:
    reset = getattr(card, "reset_verification", None)
    if reset is not None:  # a session that tracks whose PIN is verified
        reset()
    else:
        protocol = _protocol(card)
        protocol.select_aid(CPS_AID)
        protocol.transceive(CommandApdu(0x00, INS.VERIFY, 0xFF, PinRef.PIN))
    return _session(card).pin_status().tries_left


def certificate_info(cert: x509.Certificate, now: datetime.datetime | None = None
                     ) -> dict[str, Any]:
    """A certificate for the API: DER (base64), subject, validity and whether it expired."""
    now = now or datetime.datetime.now(datetime.UTC)
    not_after = cert.not_valid_after_utc
    days = (not_after - now).total_seconds() / 86400
    return {"certificate": base64.b64encode(cert.public_bytes(Encoding.DER)).decode(),
            "subject": cert.subject.rfc4514_string(),
            "not_before": cert.not_valid_before_utc.isoformat(),
            "not_after": not_after.isoformat(),
            "expired": days < 0 or now < cert.not_valid_before_utc,
            "expires_soon": 0 <= days <= SOON_DAYS}


# -- handlers -------------------------------------------------------------------------------

async def cps_certificates(daemon: Daemon, conn: Connection, params: dict[str, Any]) -> Any:
    """cps.certificates."""
    slot = daemon.slots.find("cps")
    arbiter = slot.arbiter if slot is not None else None
    certificates = _CERTIFICATES.get(arbiter) if arbiter is not None else None
    if certificates is None:
        def read(card: Any) -> tuple[x509.Certificate, x509.Certificate]:
            session = _session(card)
            return (session.certificate(KeyRef.SIGNATURE),
                    session.certificate(KeyRef.AUTHENTICATION))

        certificates = await on_card(daemon, conn, "cps", read, "cps.certificates")
        if arbiter is not None:
            _CERTIFICATES[arbiter] = certificates
    signature, authentication = certificates
    return {"signature": certificate_info(signature),
            "authentication": certificate_info(authentication)}


async def cps_pin_state(daemon: Daemon, conn: Connection, params: dict[str, Any]) -> Any:
    """cps.pin_state."""
    def read(card: Any) -> dict[str, Any]:
        status = _session(card).pin_status()
        owner = getattr(card, "verified_for", None)  # a session bound to one client's PIN
        mine = owner is None or owner == conn.client_id
        return {"tries_left": status.tries_left, "max_tries": status.max_tries,
                "blocked": status.blocked,
                "verified": mine and not status.blocked and pin_verified(card)}

    return await on_card(daemon, conn, "cps", read, "cps.pin_state")


async def cps_logout(daemon: Daemon, conn: Connection, params: dict[str, Any]) -> Any:
    """cps.logout: the PIN must be typed again before the next signature."""
    tries_left = await on_card(daemon, conn, "cps", _logout, "cps.logout")
    daemon.audit_event("pin.logout", conn)
    daemon.bus.publish("pin.state", result="reset", tries_left=tries_left)
    return {"verified": False}


async def display_show(daemon: Daemon, conn: Connection, params: dict[str, Any]) -> Any:
    """display.show: text on the terminal's display (folded to its ASCII font)."""
    if daemon.ui is None:
        raise TerminalUnavailable("no terminal display")
    lines = fit_lines(params["text"])
    await daemon.ui.show(lines)
    daemon.audit_event("display.show", conn, lines=len(lines))
    return {"lines": lines}


_CERT = obj({"certificate": {"type": "string", "contentEncoding": "base64",
                             "contentMediaType": "application/pkix-cert",
                             "description": "X.509 certificate (DER)"},
             "subject": STR, "not_before": {"type": "string", "format": "date-time"},
             "not_after": {"type": "string", "format": "date-time"},
             "expired": {**BOOL, "description": "outside its validity period now"},
             "expires_soon": {**BOOL, "description": f"expires within {SOON_DAYS} days"}},
            ("certificate", "subject", "not_before", "not_after", "expired", "expires_soon"))
_COUNT = {"type": "integer", "minimum": 0}
_IDENTITY = frozenset({"identity:read"})
_SIGN = frozenset({"cps:sign"})

METHODS: list[Method] = [
    Method("cps.certificates", cps_certificates, "Both CPS certificates (signature and "
           "authentication) with their validity, without the PIN: what a CAdES/XAdES "
           "signer needs before it signs.", _IDENTITY | _SIGN, obj({}),
           obj({"signature": _CERT, "authentication": _CERT},
               ("signature", "authentication"))),
    Method("cps.pin_state", cps_pin_state, "PIN try counters and whether the PIN is verified "
           "now (a verified card signs for any client with cps:sign until it is removed or "
           "cps.logout).", _IDENTITY | _SIGN, obj({}),
           obj({"tries_left": _COUNT, "max_tries": _COUNT, "blocked": BOOL, "verified": BOOL},
               ("tries_left", "max_tries", "blocked", "verified"))),
    Method("cps.logout", cps_logout, "End the verified state: the holder types the PIN again "
           "before the next signature (pin.state event with result reset).", _SIGN, obj({}),
           obj({"verified": {"type": "boolean", "enum": [False]}}, ("verified",))),
    Method("display.show", display_show, "Show a message on the terminal's display (ASCII, "
           "16 columns x 8 lines, word-wrapped); it stays until the next screen.",
           frozenset({"terminal:display"}),
           obj({"text": {"type": "string", "minLength": 1, "maxLength": 200}}, ("text",)),
           obj({"lines": {"type": "array", "maxItems": 8,
                          "items": {"type": "string", "maxLength": 16}}}, ("lines",))),
]
