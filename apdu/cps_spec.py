"""CPS3 (IAS-ECC CPx) identifiers and references shared by host and simulator (docs/cards.md)."""

from __future__ import annotations

import enum

__all__ = [
    "ATR_CONTACT",
    "ATR_CONTACTLESS",
    "ATR_MASK",
    "CPS_AID",
    "CPS_AID_CONTACTLESS",
    "ISSUER_PREFIX",
    "MAX_RESPONSE",
    "Algo",
    "Fid",
    "KeyRef",
    "PinRef",
    "is_cps_atr",
    "pin_counter_query",
]

ATR_CONTACT = bytes.fromhex("3B AC 00 40 2A 00 12 25 00 64 80 00 03 10 00 90 00")
# OpenSC's mask for the CPx ATR: bytes 1-3 and 11-13 vary between card batches.
ATR_MASK = bytes.fromhex("FF000000 00FFFFFF FFFFFF00 0000FFFF FF")
ATR_CONTACTLESS = bytes.fromhex("3B8F8001 0031B864 04B0ECC1 73940180 82 90000E")
CPS_AID = bytes.fromhex("E828BD080F8025000001FF0010")
CPS_AID_CONTACTLESS = bytes.fromhex("E828BD080F8025000001FF0020")
ISSUER_PREFIX = bytes.fromhex("8025000001")  # ANS issuer number, first bytes of the PAN
MAX_RESPONSE = 0xE7  # the card sends at most this many bytes before 61xx


class Fid(enum.IntEnum):
    """Public file identifiers (docs/cards.md, the simulated CPS3)."""

    MF = 0x3F00
    EF_DIR = 0x2F00
    EF_ATR = 0x2F01
    EF_SN_ICC = 0xD003
    EF_ACTUA = 0xD010
    IAS_DF = 0x0001
    IAS_CL_DF = 0x0002  # the contactless IAS application (docs/cards.md)
    ODF = 0x5031
    TOKEN_INFO = 0x5032
    SITUATION_FIRST = 0xD120  # 16 practice-situation files D120..D12F
    SITUATION_LAST = 0xD12F


class KeyRef(enum.IntEnum):
    """Private key references."""

    SIGNATURE = 0x81  # CPS_PRIV_SIG, non-repudiation, PSO CDS
    AUTHENTICATION = 0x82  # CPS_PRIV_AUT, INTERNAL AUTHENTICATE and PSO DECIPHER


class PinRef(enum.IntEnum):
    """PIN references: the holder's PIN and (STAND-IN reference) its unblocking code."""

    PIN = 0x01
    PUK = 0x02


class Algo(enum.IntEnum):
    """Algorithm references sent in MSE SET tag 80 (IAS-ECC crypto descriptors).

    Values are the algRefs of a real CPS3's TokenInfo (OpenSC issue #2267), which OpenSC's
    IAS-ECC driver puts in MSE SET. A real CPS3 lists one decipherment, PKCS#1 v1.5: no
    OAEP, so a host never asks the card for it (docs/cards.md).
    """

    RSA_PKCS1_SHA256_PARTIAL_HASH = 0x42  # PSO HASH (split) + PSO CDS
    RSA_PKCS1_SHA1_PARTIAL_HASH = 0x12  # the same with SHA-1 (listed by a real CPS3)
    RSA_PKCS1_INTERNAL_AUTH = 0x02  # INTERNAL AUTHENTICATE of a DigestInfo, PKCS#1 v1.5
    RSA_PKCS1_DECIPHER = 0x1A  # PSO DECIPHER, PKCS#1 v1.5 type 2 padding


def is_cps_atr(atr: bytes) -> bool:
    """True when the ATR matches the CPS3 contact ATR under OpenSC's mask."""
    if len(atr) != len(ATR_CONTACT):
        return False
    return all((a & m) == (b & m) for a, b, m in zip(atr, ATR_CONTACT, ATR_MASK, strict=True))


def pin_counter_query(ref: int) -> bytes:
    """GET DATA field for a PIN's counters (docs/cards.md): 4D 08 70 06 BF 81 ref 02 A0 80."""
    return bytes([0x4D, 0x08, 0x70, 0x06, 0xBF, 0x81, ref, 0x02, 0xA0, 0x80])
