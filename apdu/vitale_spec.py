"""Vitale 2 identifiers (docs/cards.md) and the stand-in layout of its protected data.

Public: the ATR, the VITALE and MF_VITALE AIDs and the TLVs 65 (beneficiary) and 66 (card).
STAND-IN: how the insured person, the beneficiaries and their rights sit on the chip is not
public; the tags and file identifiers below marked STAND-IN are of our own design, behind the
same SELECT / READ BINARY / READ RECORD interface. See docs/vitale-standin.md.
"""

from __future__ import annotations

import enum

__all__ = [
    "ATR_VITALE2",
    "MF_VITALE_AID",
    "VITALE_AID",
    "BenefTag",
    "CardTag",
    "InsuredTag",
    "RightsTag",
    "StandinFid",
    "is_test_card",
    "is_vitale1_atr",
    "is_vitale2_atr",
]

ATR_VITALE2 = bytes.fromhex("3B 75 13 00 00 44 09 EA 90 00")  # byte 6 varies 43..4C
VITALE_AID = bytes.fromhex("D2 50 00 00 02 56 49 54 41 4C 45")  # "VITALE"
MF_VITALE_AID = bytes.fromhex("D2 50 00 00 02 4D 46 5F 56 49 54 41 4C 45")  # "MF_VITALE"


class StandinFid(enum.IntEnum):
    """STAND-IN file identifiers inside the two applications."""

    PUBLIC = 0x2001  # in VITALE: 66 card + one 65 per beneficiary
    INSURED = 0xE001  # in MF_VITALE: 70 insured person
    BENEFICIARIES = 0xE002  # in MF_VITALE: record file, one 71 per beneficiary
    RIGHTS = 0xE003  # in MF_VITALE: record file, one 72 per rights period


class CardTag(enum.IntEnum):
    """Public TLVs (docs/cards.md): 66 card {80 validity start}; 65 beneficiary {...}."""

    CARD = 0x66
    VALIDITY_START = 0x80
    BENEFICIARY = 0x65
    NAME = 0x80
    FIRST_NAME = 0x81
    BIRTH_DATE = 0x82  # ASCII YYYYMMDD, possibly lunar
    NATIONALITY = 0x90
    NIR = 0x93


class InsuredTag(enum.IntEnum):
    """STAND-IN: 70 insured person (the SESAM-Vitale 'assuré' group)."""

    TEMPLATE = 0x70
    CARD_TYPE = 0x80
    SERIAL = 0x81
    END_OF_VALIDITY = 0x82
    HOLDER_TYPE = 0x83
    NIR = 0x84  # 13 characters + key
    REGIME = 0x85
    CAISSE = 0x86
    CENTRE = 0x87


class BenefTag(enum.IntEnum):
    """STAND-IN: 71 beneficiary (the SESAM-Vitale 'bénéficiaire' group)."""

    TEMPLATE = 0x71
    NAME = 0x80
    BIRTH_NAME = 0x81
    FIRST_NAME = 0x82
    BIRTH_DATE = 0x83
    BIRTH_RANK = 0x84
    QUALITY = 0x85
    CERTIFIED_NIR = 0x86
    NATIONALITY = 0x87


class RightsTag(enum.IntEnum):
    """STAND-IN: 72 AMO rights period of one beneficiary."""

    TEMPLATE = 0x72
    BENEFICIARY = 0x80  # 1-based index in the beneficiaries file
    START = 0x81
    END = 0x82


def is_vitale2_atr(atr: bytes) -> bool:
    """True for the Vitale 2 ATR, whose sixth byte varies between 43 and 4C (docs/cards.md)."""
    return (len(atr) == len(ATR_VITALE2) and atr[:5] == ATR_VITALE2[:5]
            and 0x43 <= atr[5] <= 0x4C and atr[6:] == ATR_VITALE2[6:])


def is_vitale1_atr(atr: bytes) -> bool:
    """True for a Vitale 1 card (inverse convention, 3F 65 25 ...)."""
    return atr[:3] == bytes.fromhex("3F6525")


def is_test_card(caisse: str, centre: str) -> bool:
    """Test cards carry caisse 349 / centre 0349 (docs/cards.md)."""
    return caisse == "349" and centre == "0349"
