"""CPS methods beyond read/verify/sign (registered in edged/api/methods.py), and display.show.

- `cps.certificates`: both certificates of the inserted card, without any PIN, read once per
  insertion (a CAdES/XAdES signer needs the certificate before it signs).
- `cps.pin_state`: the try counters and whether the PIN is verified now (ISO 7816-4
  §11.5.6: VERIFY without data answers 9000 when verified, 63Cx otherwise).
- `cps.logout`: end the verified state (VERIFY with P1=FF, ISO 7816-4 §11.5.6), so that no
  other client can sign with a PIN typed for someone else.
- `cps.sign_digest`: a signature of a SHA-256 digest computed by the caller, with the
  authentication key (INTERNAL AUTHENTICATE of a DigestInfo). The CPS3 signature key signs
  only through the card's split hash (the card finishes the hash itself), so a digest
  cannot be signed with it: use `cps.sign` with the CMS signed attributes instead.
- `display.show`: a message on the terminal's display, with its own scope.
"""

from __future__ import annotations

import base64
import datetime
from typing import TYPE_CHECKING, Any

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from bifente.apdu.command import CommandApdu
from bifente.apdu.cps import SHA256_DIGEST_INFO
from bifente.apdu.cps_spec import CPS_AID, Algo, KeyRef, PinRef
from bifente.apdu.errors import ApduError, AuthMethodBlocked
from bifente.apdu.ins import INS
from bifente.client.codes import CARD_ERROR, CONSENT_ERROR, PIN_ERROR
from bifente.edged.api.method import BOOL, STR, Method, b64_param, obj, on_card
from bifente.edged.readers.pcsc import CardKind
from bifente.edged.readers.session import InsertedCps
from bifente.edged.readers.ui import fit_lines
from bifente.edged.services import cards
from bifente.edged.services.errors import TerminalUnavailable
from bifente.edged.services.prompts import one_prompt
from bifente.edged.services.signing import DIGEST_DIGITS

if TYPE_CHECKING:
    from bifente.apdu.protocol import CardProtocol
    from bifente.edged.api.context import ApiContext, Caller

__all__ = ["METHODS", "certificate_info", "pin_verified"]

SOON_DAYS = 30  # a certificate expiring within this many days is flagged


def pin_verified(protocol: CardProtocol) -> bool:
    """True when the CPS PIN is verified now (VERIFY with no data: a status query, no try)."""
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


def _sign_digest(session: InsertedCps, client: str, digest: bytes) -> dict[str, Any]:
    session.claim(client)  # this client's PIN state, never another's (docs/security.md)
    protocol = session.protocol
    protocol.select_aid(CPS_AID)
    data = bytes([0x84, 1, KeyRef.AUTHENTICATION, 0x80, 1, Algo.RSA_PKCS1_INTERNAL_AUTH])
    protocol.transceive(CommandApdu(0x00, INS.MANAGE_SECURITY_ENVIRONMENT, 0x41, 0xA4, data))
    signature = protocol.transceive(CommandApdu(0x00, INS.INTERNAL_AUTHENTICATE, 0x00, 0x00,
                                                SHA256_DIGEST_INFO + digest, le=256))
    cert = session.certificate(KeyRef.AUTHENTICATION).public_bytes(Encoding.DER)
    return {"algorithm": "sha256WithRSAEncryption",
            "signature": base64.b64encode(signature).decode(),
            "certificate": base64.b64encode(cert).decode()}


# -- handlers -------------------------------------------------------------------------------

async def cps_certificates(daemon: ApiContext, conn: Caller, params: dict[str, Any]) -> Any:
    """cps.certificates: read once per insertion (edged/readers/session.py)."""
    signature, authentication = await on_card(daemon, conn, CardKind.CPS, cards.certificates,
                                              "cps.certificates")
    return {"signature": certificate_info(signature),
            "authentication": certificate_info(authentication)}


async def cps_pin_state(daemon: ApiContext, conn: Caller, params: dict[str, Any]) -> Any:
    """cps.pin_state: `verified` is for this client (another client's PIN does not count)."""
    def read(session: InsertedCps) -> dict[str, Any]:
        status = session.pin_status()
        mine = session.verified_for == conn.client_id
        return {"tries_left": status.tries_left, "max_tries": status.max_tries,
                "blocked": status.blocked,
                "verified": mine and not status.blocked and pin_verified(session.protocol)}

    return await on_card(daemon, conn, CardKind.CPS, read, "cps.pin_state")


async def cps_logout(daemon: ApiContext, conn: Caller, params: dict[str, Any]) -> Any:
    """cps.logout: this client's PIN must be typed again before its next signature."""
    def logout(session: InsertedCps) -> int:
        # Only this client's own verified state is ended: a client cannot log another out.
        if session.verified_for in (conn.client_id, None):
            session.reset_verification()
        return session.pin_status().tries_left

    tries_left = await on_card(daemon, conn, CardKind.CPS, logout, "cps.logout")
    daemon.audit_event("pin.logout", conn)
    daemon.bus.publish("pin.state", result="reset", tries_left=tries_left)
    return {"verified": False}


async def cps_sign_digest(daemon: ApiContext, conn: Caller, params: dict[str, Any]) -> Any:
    """cps.sign_digest: confirmed on the terminal, like a non-repudiation signature.

    A digest gives no way to tell a DMP host login challenge from a document (the caller
    hashes), so unlike cps.authenticate no shape can be refused: the holder confirms instead.
    """
    digest = b64_param(params["digest"], "digest", 32)
    if len(digest) != 32:
        from bifente.edged.api.jsonrpc import INVALID_PARAMS, RpcError

        raise RpcError(INVALID_PARAMS, "digest must be a SHA-256 digest (32 bytes)",
                       "invalid_params")
    insertion = cards.arbiter_for(daemon, CardKind.CPS)
    await daemon.signatures.approve(daemon.ui, conn.client_id, conn.client_name or "?",
                                    params.get("title", ""), digest, insertion=insertion,
                                    gate=lambda: one_prompt(daemon, conn))
    result = await on_card(daemon, conn, CardKind.CPS,
                           lambda s: _sign_digest(s, conn.client_id, digest),
                           "cps.sign_digest")
    daemon.audit_event("cps.sign_digest", conn, certificate="authentication",
                       digest=digest.hex()[:DIGEST_DIGITS])
    return result


async def display_show(daemon: ApiContext, conn: Caller, params: dict[str, Any]) -> Any:
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
_SIGNATURE = obj({"algorithm": {"type": "string", "enum": ["sha256WithRSAEncryption"]},
                  "signature": {"type": "string", "contentEncoding": "base64"},
                  "certificate": {"type": "string", "contentEncoding": "base64",
                                  "contentMediaType": "application/pkix-cert"}},
                 ("algorithm", "signature", "certificate"))
_IDENTITY = frozenset({"identity:read"})
_SIGN = frozenset({"cps:sign"})
_AUTHENTICATE = frozenset({"cps:authenticate"})
_CARD = (CARD_ERROR, PIN_ERROR)  # a CPS card method's own refusals

METHODS: list[Method] = [
    Method("cps.certificates", cps_certificates, "Both CPS certificates (signature and "
           "authentication) with their validity, without the PIN: what a CAdES/XAdES "
           "signer needs before it signs.", _IDENTITY | _SIGN, obj({}),
           obj({"signature": _CERT, "authentication": _CERT},
               ("signature", "authentication")), errors=_CARD),
    Method("cps.pin_state", cps_pin_state, "PIN try counters and whether the PIN is verified "
           "now for this client (a PIN typed for another client does not count: the card "
           "asks this client for its own, docs/security.md).", _IDENTITY | _SIGN, obj({}),
           obj({"tries_left": _COUNT, "max_tries": _COUNT, "blocked": BOOL, "verified": BOOL},
               ("tries_left", "max_tries", "blocked", "verified")), errors=_CARD),
    Method("cps.logout", cps_logout, "End this client's verified state: the holder types the "
           "PIN again before its next signature (pin.state event with result reset).",
           _SIGN | _AUTHENTICATE, obj({}),
           obj({"verified": {"type": "boolean", "enum": [False]}}, ("verified",)),
           errors=_CARD),
    Method("cps.sign_digest", cps_sign_digest, "Sign a SHA-256 digest computed by the caller "
           "with the authentication key (PKCS#1 v1.5 DigestInfo); needs the PIN verified for "
           "this client and the holder's OK on the terminal (which shows the client, the title "
           "and the digest's first hex digits). The signature key signs only whole data "
           "(cps.sign: the card finishes the hash).",
           _AUTHENTICATE, obj({"digest": {"type": "string", "contentEncoding": "base64",
                                          "minLength": 44, "maxLength": 44,
                                          "description": "base64 of the 32-byte SHA-256 "
                                          "digest"},
                               "title": {"type": "string", "maxLength": 64,
                                         "description": "what is signed, shown on the "
                                         "terminal"}},
                              ("digest",)), _SIGNATURE, errors=(*_CARD, CONSENT_ERROR)),
    Method("display.show", display_show, "Show a message on the terminal's display (ASCII, "
           "16 columns x 8 lines, word-wrapped); it stays until the next screen.",
           frozenset({"terminal:display"}),
           obj({"text": {"type": "string", "minLength": 1, "maxLength": 200}}, ("text",)),
           obj({"lines": {"type": "array", "maxItems": 8,
                          "items": {"type": "string", "maxLength": 16}}}, ("lines",)),
           errors=(CONSENT_ERROR,)),
]
