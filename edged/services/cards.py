"""Card operations as the API offers them; each runs inside the card's arbiter (sync)."""

from __future__ import annotations

import base64
from typing import Any

from cryptography.hazmat.primitives.serialization import Encoding

from apdu.cps import CpsSession
from apdu.cps_spec import KeyRef
from apdu.errors import PinBlocked, PinCancelled, WrongPin
from apdu.protocol import CardProtocol
from apdu.vitale import VitaleCard, VitaleSession

__all__ = [
    "authenticate",
    "cps_info",
    "pin_status",
    "sign",
    "verify_pin",
    "vitale_read",
    "vitale_result",
]


def vitale_result(card: VitaleCard) -> dict[str, Any]:
    """The Vitale card as the API returns it (full identifiers: the caller has identity:read)."""
    return {
        "card": {"type": card.card_type, "serial": card.serial, "test_card": card.test_card,
                 "validity_start": card.validity_start, "end_of_validity": card.end_of_validity},
        "insured": {"nir": card.insured.nir.value, "regime": card.insured.regime,
                    "caisse": card.insured.caisse, "centre": card.insured.centre},
        "beneficiaries": [{
            "quality": b.quality, "quality_name": b.quality_name, "name": b.name,
            "birth_name": b.birth_name, "first_name": b.first_name, "birth_date": b.birth_date,
            "lunar_birth_date": b.lunar_birth_date, "birth_rank": b.birth_rank,
            "nationality": b.nationality, "nir": b.nir.value, "temporary": b.nir.temporary,
            "ins": {"value": b.ins.value, "oid": b.ins.oid.value, "kind": b.ins.kind},
            "ins_c": b.ins_c,
            "rights": [{"start": r.start, "end": r.end} for r in b.rights],
        } for b in card.beneficiaries],
    }


def vitale_read(protocol: CardProtocol) -> dict[str, Any]:
    """vitale.read."""
    return vitale_result(VitaleSession(protocol).read())


def cps_info(protocol: CardProtocol) -> dict[str, Any]:
    """cps.info: the holder and the card, no PIN needed."""
    session = CpsSession(protocol)
    identity = session.identity()
    h = identity.holder
    status = session.pin_status()
    return {"serial": identity.serial, "card_type": h.card_type,
            "card_type_name": h.card_type_name, "id_type": h.id_type,
            "national_id": h.national_id, "name": h.name, "first_name": h.first_name,
            "display_name": h.display_name, "profession": h.profession,
            "specialty": h.specialty or None,
            "pin": {"tries_left": status.tries_left, "max_tries": status.max_tries,
                    "blocked": status.blocked}}


def pin_status(protocol: CardProtocol) -> dict[str, Any]:
    """cps.pin_status."""
    status = CpsSession(protocol).pin_status()
    return {"tries_left": status.tries_left, "max_tries": status.max_tries,
            "blocked": status.blocked}


def verify_pin(protocol: CardProtocol, timeout: float) -> dict[str, Any]:
    """cps.verify_pin: the reader's keypad collects the PIN; the outcome, never the PIN."""
    session = CpsSession(protocol)
    try:
        session.verify_pin(None, timeout=timeout)
    except WrongPin as exc:
        return {"result": "wrong", "tries_left": exc.tries_left}
    except PinBlocked:
        return {"result": "blocked", "tries_left": 0}
    except PinCancelled:
        return {"result": "cancelled", "tries_left": session.pin_status().tries_left}
    return {"result": "ok", "tries_left": session.pin_status().tries_left}


def sign(protocol: CardProtocol, data: bytes, key: str) -> dict[str, Any]:
    """cps.sign: SHA-256 + RSA PKCS#1 v1.5 by the card (split hash), with the certificate."""
    session = CpsSession(protocol)
    ref = KeyRef.SIGNATURE if key == "signature" else KeyRef.AUTHENTICATION
    signature = session.sign(data, ref)
    cert = session.certificate(ref).public_bytes(Encoding.DER)
    return {"algorithm": "sha256WithRSAEncryption",
            "signature": base64.b64encode(signature).decode(),
            "certificate": base64.b64encode(cert).decode()}


def authenticate(protocol: CardProtocol, challenge: bytes) -> dict[str, Any]:
    """cps.authenticate: INTERNAL AUTHENTICATE of SHA-256(challenge) with the auth key."""
    session = CpsSession(protocol)
    signature = session.authenticate(challenge)
    cert = session.certificate(KeyRef.AUTHENTICATION).public_bytes(Encoding.DER)
    return {"algorithm": "sha256WithRSAEncryption",
            "signature": base64.b64encode(signature).decode(),
            "certificate": base64.b64encode(cert).decode()}
