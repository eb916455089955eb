"""The card services' dataclasses as the API returns them (JSON-shaped dicts)."""

from __future__ import annotations

import base64
from typing import Any

from cryptography.hazmat.primitives.serialization import Encoding

from bifente.apdu.cps import PinStatus
from bifente.apdu.vitale import VitaleCard
from bifente.edged.services.cards import CpsInfo, PinOutcome, Signature

__all__ = ["cps_info", "pin_outcome", "pin_status", "signature", "vitale_card"]


def vitale_card(card: VitaleCard) -> dict[str, Any]:
    """The Vitale card (full identifiers: the caller has identity:read)."""
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


def pin_status(status: PinStatus) -> dict[str, Any]:
    """The PIN's counters."""
    return {"tries_left": status.tries_left, "max_tries": status.max_tries,
            "blocked": status.blocked}


def cps_info(info: CpsInfo) -> dict[str, Any]:
    """The professional and the PIN's counters."""
    h = info.identity.holder
    return {"serial": info.identity.serial, "card_type": h.card_type,
            "card_type_name": h.card_type_name, "id_type": h.id_type,
            "national_id": h.national_id, "name": h.name, "first_name": h.first_name,
            "display_name": h.display_name, "profession": h.profession,
            "specialty": h.specialty or None, "pin": pin_status(info.pin)}


def pin_outcome(outcome: PinOutcome) -> dict[str, Any]:
    """ok / wrong / blocked / cancelled and the tries left."""
    return {"result": str(outcome.result), "tries_left": outcome.tries_left}


def signature(sig: Signature) -> dict[str, Any]:
    """The signature and its certificate, base64."""
    return {"algorithm": sig.algorithm,
            "signature": base64.b64encode(sig.signature).decode(),
            "certificate": base64.b64encode(sig.certificate.public_bytes(Encoding.DER)).decode()}
