"""IAS-ECC security data objects (SDO) as GET DATA `00 CB 3F FF` serves them on a CPx card.

The request is `4D { 70 { BF <class|80> <ref> { <wanted tag> 80 } } }` (ISO 7816-4 §8.5.1
extended header list; OpenSC iasecc-sdo.c). Classes (OpenSC iasecc-sdo.h): 01 CHV (PIN),
10 RSA private key, 7B security environment. The answer is `70 { BF cc rr { ... } }`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from bifente.apdu import tlv
from bifente.apdu.errors import MalformedData

__all__ = [
    "CHV",
    "CHV_ACL_PIN",
    "CHV_ACL_PUK",
    "DOCP",
    "RSA_PRIVATE",
    "SE",
    "SdoRequest",
    "chv_answer",
    "key_answer",
    "parse_request",
    "se_answer",
]

CHV, RSA_PRIVATE, SE = 0x01, 0x10, 0x7B  # SDO classes (IASECC_SDO_CLASS_*)
DOCP = 0xA0  # data object control parameters: sizes, counters, ACL
# The CHV ACLs a real CPS3 returns (8C: AMB F3, then the SCBs of change, verify, reset,
# put data, get data...). PIN: OpenSC issue #2275 (a real CPx through the vendor's
# middleware): reset = 13, user authentication through SE 3, the PUK. PUK: OpenSC PR #2217
# (iasecc-tool on a real CPx): never changed, never reset.
CHV_ACL_PIN = bytes.fromhex("F3000013FF00")
CHV_ACL_PUK = bytes.fromhex("F3FF00FFFF00")


@dataclass(frozen=True)
class SdoRequest:
    """What a GET DATA asks for: SDO class, reference, and the tag wanted (A0, 7F41...)."""

    sdo_class: int
    reference: int
    wanted: int


def parse_request(data: bytes) -> SdoRequest:
    """Read `4D { 70 { BF cc rr { tag 80 } } }`; MalformedData for anything else."""
    (outer,) = _only(tlv.decode(data), "one 4D")
    if outer.tag != 0x4D:
        raise MalformedData("GET DATA of an SDO needs a 4D extended header list")
    # 4D is tagged primitive but holds TLVs (ISO 7816-4 §8.5.1).
    (template,) = _only(tlv.decode(outer.value), "one 70 in 4D")
    if template.tag != 0x70:
        raise MalformedData("no 70 SDO template")
    (header,) = _only(template.children(), "one SDO in 70")
    if header.tag >> 16 != 0xBF or not (header.tag >> 8) & 0x80:
        raise MalformedData("no BF header of a local SDO")
    return SdoRequest((header.tag >> 8) & 0x7F, header.tag & 0xFF, _wanted(header.value))


def _wanted(header_list: bytes) -> int:
    # A header list element is a tag and a length byte, not a TLV: `A0 80`, `7F 41 80`.
    size = 2 if header_list[:1] and header_list[0] & 0x1F == 0x1F else 1
    if len(header_list) != size + 1:
        raise MalformedData("GET DATA: expected one wanted tag and its length byte")
    return int.from_bytes(header_list[:size], "big")


def _only(items: Sequence[tlv.Tlv], what: str) -> Sequence[tlv.Tlv]:
    if len(items) != 1:
        raise MalformedData(f"GET DATA: expected {what}")
    return items


def _answer(sdo_class: int, reference: int, *body: bytes) -> bytes:
    header = 0xBF0000 | (sdo_class | 0x80) << 8 | reference
    return tlv.encode_constructed(0x70, tlv.encode_constructed(header, *body))


def chv_answer(reference: int, max_tries: int, tries_left: int, acl: bytes,
               usage: int | None = None) -> bytes:
    """The CHV DOCP: 9A max tries, 9B tries left, [9C/9D uses], A1 { 8C ACL }."""
    items = [tlv.encode(0x9A, bytes([max_tries])), tlv.encode(0x9B, bytes([tries_left]))]
    if usage is not None:  # IASECC_DOCP_TAG_USAGE_MAXIMUM / _REMAINING
        items += [tlv.encode(0x9C, bytes([usage])), tlv.encode(0x9D, bytes([usage]))]
    items.append(tlv.encode_constructed(0xA1, tlv.encode(0x8C, acl)))
    return _answer(CHV, reference, tlv.encode_constructed(DOCP, *items))


def key_answer(reference: int, modulus_bits: int, acl: bytes, non_repudiation: int) -> bytes:
    """The RSA private key's DOCP: A1 { 8C ACL }, 80 size in bytes, 9E non-repudiation.

    The order is the one of a real IAS-ECC card's answer (OpenSC issue #2158 log).
    """
    return _answer(RSA_PRIVATE, reference, tlv.encode_constructed(
        DOCP, tlv.encode_constructed(0xA1, tlv.encode(0x8C, acl)),
        tlv.encode(0x80, (modulus_bits // 8).to_bytes(2, "big")),
        tlv.encode(0x9E, bytes([non_repudiation]))))


def se_answer(reference: int, chv: int | None) -> bytes:
    """An SE; with `chv`, one AT CRT: user password (95 08) is CHV `chv` (83).

    The CRT layout is what OpenSC's iasecc_crt_parse reads; without `chv` the SE is empty.
    """
    if chv is None:
        return _answer(SE, reference, tlv.encode(SE, b""))
    crt = tlv.encode_constructed(0xA4, tlv.encode(0x83, bytes([chv])),
                                 tlv.encode(0x95, b"\x08"))
    return _answer(SE, reference, tlv.encode_constructed(SE, crt))
