"""CPS holder data objects: the professional's identity and practice situations.

STAND-IN (docs/cards.md, STAND-IN encodings): the on-card ASN.1 of CPS_NAME_PS, CPS_INFO_PS
and CPS_ACTIVITY_nn_PS is not public. These definitions are our own; a real card's encodings can
replace them here without touching the sessions, which only see the dataclasses below.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from asn1crypto import core

from bifente.apdu.errors import MalformedData

__all__ = [
    "CARD_TYPES",
    "CIVILITIES",
    "PRACTICE_MODES",
    "CpsHolder",
    "PracticeSituation",
    "decode_activity",
    "decode_info",
    "decode_name",
    "encode_activity",
    "encode_info",
    "encode_name",
]

# Card type as software presents it (docs/cards.md, public facts of the CPS3).
CARD_TYPES = {0: "CPS", 1: "CPF (student)", 2: "CPE (staff)", 3: "CPA (authorised staff)",
              4: "server card"}
# STAND-IN: civility codes of the stand-in CPS_NAME_PS.
CIVILITIES = {0: "", 1: "M.", 2: "Mme", 3: "Dr", 4: "Pr"}
PRACTICE_MODES = {0: "liberal", 1: "salaried", 4: "replacement"}


class _NamePs(core.Sequence):
    _fields = [
        ("card_type", core.Integer),
        ("id_type", core.Integer),
        ("id", core.PrintableString),
        ("civility", core.Integer),
        ("name", core.UTF8String),
        ("first_name", core.UTF8String),
    ]


class _InfoPs(core.Sequence):
    _fields = [
        ("profession", core.PrintableString),  # TRE_G15
        ("specialty", core.PrintableString),  # TRE_R38
        ("pan", core.PrintableString),
    ]


class _ActivityPs(core.Sequence):
    _fields = [
        ("mode", core.Integer),
        ("sector", core.PrintableString),
        ("structure_id", core.PrintableString),
        ("structure_name", core.UTF8String),
        ("email", core.UTF8String, {"optional": True}),
    ]


@dataclass(frozen=True)
class CpsHolder:
    """Who holds the card, as the public data objects say."""

    card_type: int
    id_type: int
    national_id: str
    civility: int
    name: str
    first_name: str
    profession: str
    specialty: str

    @property
    def card_type_name(self) -> str:
        """'CPS', 'CPF (student)', ..."""
        return CARD_TYPES.get(self.card_type, f"type {self.card_type}")

    @property
    def display_name(self) -> str:
        """'Dr Claire MARTIN'."""
        civ = CIVILITIES.get(self.civility, "")
        return " ".join(p for p in (civ, self.first_name, self.name.upper()) if p)


@dataclass(frozen=True)
class PracticeSituation:
    """One of the up to 16 practice situations (readable after the PIN)."""

    index: int
    mode: int
    sector: str
    structure_id: str
    structure_name: str
    email: str | None = None

    @property
    def mode_name(self) -> str:
        """'liberal', 'salaried', 'replacement'."""
        return PRACTICE_MODES.get(self.mode, f"mode {self.mode}")


def _load(cls: type[core.Sequence], data: bytes, what: str, *,
          strict: bool = True) -> dict[str, Any]:
    try:
        value = cls.load(bytes(data), strict=strict)
        native: dict[str, Any] = value.native
        return native
    except (ValueError, TypeError, KeyError) as exc:
        raise MalformedData(f"{what}: {exc}") from exc


def encode_name(h: CpsHolder) -> bytes:
    """DER of the stand-in CPS_NAME_PS."""
    value = _NamePs({"card_type": h.card_type, "id_type": h.id_type, "id": h.national_id,
                     "civility": h.civility, "name": h.name, "first_name": h.first_name})
    return bytes(value.dump())


def encode_info(profession: str, specialty: str, pan: str) -> bytes:
    """DER of the stand-in CPS_INFO_PS."""
    return bytes(_InfoPs({"profession": profession, "specialty": specialty, "pan": pan}).dump())


def decode_name(data: bytes) -> dict[str, Any]:
    """Parse CPS_NAME_PS into a dict of its fields."""
    return _load(_NamePs, data, "CPS_NAME_PS")


def decode_info(data: bytes) -> dict[str, Any]:
    """Parse CPS_INFO_PS into a dict of its fields."""
    return _load(_InfoPs, data, "CPS_INFO_PS")


def encode_activity(s: PracticeSituation) -> bytes:
    """DER of one stand-in CPS_ACTIVITY_nn_PS."""
    fields = {"mode": s.mode, "sector": s.sector, "structure_id": s.structure_id,
              "structure_name": s.structure_name}
    if s.email:
        fields["email"] = s.email
    return bytes(_ActivityPs(fields).dump())


def decode_activity(index: int, data: bytes) -> PracticeSituation | None:
    """Parse one practice-situation file; None for an unused (empty or zero-filled) slot."""
    if not data or not data.strip(b"\x00\xff"):
        return None
    # The file is larger than its object: trailing padding is not an error here.
    d = _load(_ActivityPs, data, f"CPS_ACTIVITY_{index:02d}_PS", strict=False)
    return PracticeSituation(index, d["mode"], d["sector"], d["structure_id"],
                             d["structure_name"], d.get("email"))
