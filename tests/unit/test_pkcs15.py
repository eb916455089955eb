"""PKCS#15 directory files: hex vectors, CPS round trips, padding, skipped choices, fuzzing."""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import replace as dataclasses_replace
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bifente.apdu import pkcs15
from bifente.apdu.errors import MalformedData
from bifente.apdu.pkcs15 import (
    CertInfo,
    DataObjectInfo,
    KeyInfo,
    PinInfo,
    TokenInfo,
    decode_aodf,
    decode_cdf,
    decode_dodf,
    decode_odf,
    decode_prkdf,
    decode_token_info,
    encode_aodf,
    encode_cdf,
    encode_dodf,
    encode_odf,
    encode_prkdf,
    encode_token_info,
)

APP = bytes.fromhex("3F000001")  # docs/cards.md: the IAS application DF


def fid(hexstr: str) -> bytes:
    """Absolute path of a file of the CPS application."""
    return APP + bytes.fromhex(hexstr)


def tlv(tag: int, body: bytes) -> bytes:
    """Short-form TLV for the hand-made test vectors (bodies under 128 bytes)."""
    assert len(body) < 0x80
    return bytes((tag, len(body))) + body


# CPS-like content (docs/cards.md). Directory and certificate FIDs are STAND-INs.
CPS_PIN = PinInfo("PIN CPS", b"\x01", 0x01, min_length=4, max_length=4, stored_length=8)
CPS_PUK = PinInfo("PUK CPS", b"\x02", 0x02, min_length=8, max_length=8, stored_length=8,
                  flags=frozenset({"local", "initialized", "unblockingPin"}))  # STAND-IN
CPS_KEYS = (
    KeyInfo("CPS_PRIV_SIG", b"\x01", b"\x01", 0x81, 2048, frozenset({"nonRepudiation"}), APP),
    KeyInfo("CPS_PRIV_AUT", b"\x02", b"\x01", 0x82, 2048, frozenset({"sign", "decrypt"}), APP),
)
CPS_CERTS = (
    CertInfo("Certificat de Signature CPS", b"\x01", fid("7101")),
    CertInfo("Certificat d'Authentification CPS", b"\x02", fid("7102")),
)
CPS_DATA = (
    DataObjectInfo("CPS_NAME_PS", "CPS", fid("D100")),
    DataObjectInfo("CPS_INFO_PS", "CPS", fid("D101")),
    DataObjectInfo("CPS_ACTIVITY_01_PS", "CPS", fid("D120"), auth_id=b"\x01"),
)
CPS_ODF = {"aodf": fid("7001"), "prkdf": fid("7002"), "pukdf": fid("7003"),
           "cdf": fid("7004"), "dodf": fid("7005")}
CPS_TOKEN = TokenInfo(serial=bytes.fromhex("80250000012345678901"), manufacturer="ANS",
                      label="CPS3 (simulated)", flags=frozenset({"loginRequired",
                                                                 "prnGeneration"}))

# (encoder, decoder, CPS value) for every directory file.
DIRECTORIES: list[tuple[Callable[[Any], bytes], Callable[[bytes], Any], Any]] = [
    (encode_odf, decode_odf, CPS_ODF),
    (encode_aodf, decode_aodf, (CPS_PIN, CPS_PUK)),
    (encode_prkdf, decode_prkdf, CPS_KEYS),
    (encode_cdf, decode_cdf, CPS_CERTS),
    (encode_dodf, decode_dodf, CPS_DATA),
]
DECODERS = [decode_odf, decode_aodf, decode_prkdf, decode_cdf, decode_dodf, decode_token_info]
DIR_IDS = ["odf", "aodf", "prkdf", "cdf", "dodf"]


# --- Hex vectors, worked out by hand from OpenSC's templates --------------------------------

# PrKDF privateRSAKey: SEQUENCE { common { label, flags private(0), authId 01 },
#   CommonKeyAttributes { iD 01, usage nonRepudiation(9), keyReference 0x81 },
#   [1] EXPLICIT PrivateRSAKeyAttributes { value Path 3F000001, modulusLength 2048 } }
PRKDF_SIG = bytes.fromhex(
    "3035"
    "3015 0C0C 4350535F505249565F534947 030207 80 040101"
    "300C 040101 030306 0040 02020081"
    "A10E 300C 3006 0404 3F000001 02020800"
)
# AODF pin: SEQUENCE { common { label }, { authId 01 }, [1] EXPLICIT PinAttributes {
#   pinFlags local(1)+initialized(4), ascii-numeric, min 4, stored 8, max 4, [0] ref 01 } }
AODF_PIN = bytes.fromhex(
    "3027"
    "3009 0C07 50494E20435053"
    "3003 040101"
    "A115 3013 030203 48 0A0101 020104 020108 020104 800101"
)
# ODF privateKeys [0] EXPLICIT Path { 3F0000017001 }
ODF_PRKDF = bytes.fromhex("A00A 3008 0406 3F0000017001")


def test_prkdf_vector() -> None:
    assert encode_prkdf(CPS_KEYS[:1]) == PRKDF_SIG
    assert decode_prkdf(PRKDF_SIG) == CPS_KEYS[:1]


def test_aodf_vector() -> None:
    assert encode_aodf([CPS_PIN]) == AODF_PIN
    assert decode_aodf(AODF_PIN) == (CPS_PIN,)


def test_odf_vector() -> None:
    assert encode_odf({"prkdf": fid("7001")}) == ODF_PRKDF
    assert decode_odf(ODF_PRKDF) == {"prkdf": fid("7001")}


# A real CPS3's TokenInfo entry (OpenSC #2267): AlgorithmInfo { reference 4,
#   CKM_SHA256_RSA_PKCS 0x40, NULL, operations compute-signature(1), sha256WithRSAEncryption,
#   algRef 0x42 }, the whole list under [2] IMPLICIT (OpenSC pkcs15.c c_asn1_algorithm_info).
ALGO_SHA256_RSA = pkcs15.AlgorithmInfo(4, 0x40, frozenset({"compute-signature"}),
                                       "1.2.840.113549.1.1.11", 0x42)
ALGO_VECTOR = bytes.fromhex(
    "A21C 301A 020104 020140 0500 03020640 06092A864886F70D01010B 020142")


def test_supported_algorithms_vector() -> None:
    token = TokenInfo(b"\x01", "", "", algorithms=(ALGO_SHA256_RSA,))
    encoded = encode_token_info(token)
    assert ALGO_VECTOR in encoded
    assert decode_token_info(encoded).algorithms == (ALGO_SHA256_RSA,)


def test_supported_algorithms_with_ec_parameters_are_skipped() -> None:
    # An ECC entry has an OID where RSA has NULL: the host does not use it, it is dropped.
    ec = bytes.fromhex("3015 020101 02021041 06052B81040022 03020780 020101")
    body = encode_token_info(CPS_TOKEN)[2:]
    with_algos = body + bytes([0xA2, len(ec) + len(ALGO_VECTOR) - 2]) + ec + ALGO_VECTOR[2:]
    assert decode_token_info(tlv(0x30, with_algos)).algorithms == (ALGO_SHA256_RSA,)


def test_pin_names_its_puk_and_keys_carry_access_flags_and_rules() -> None:
    # As a real CPS3 (OpenSC #2267): the PIN object's authId is the PUK's; the keys are
    # sensitive, never extractable, and used under the PIN for the operations their rules list.
    pin = dataclasses_replace(CPS_PIN, unblocked_by=b"\x02")
    assert decode_aodf(encode_aodf([pin, CPS_PUK])) == (pin, CPS_PUK)
    key = dataclasses_replace(
        CPS_KEYS[1], access_flags=frozenset({"sensitive", "alwaysSensitive",
                                             "neverExtractable"}),
        access_rules=(pkcs15.AccessRule(frozenset({"pso_decrypt"}), b"\x01"),
                      pkcs15.AccessRule(frozenset({"int_auth"}), b"\x01")))
    encoded = encode_prkdf([key])
    assert bytes.fromhex("3007 03020001 040101") in encoded  # pso_decrypt(7) : authId 01
    assert decode_prkdf(encoded) == (key,)


def test_key_with_the_empty_path_of_a_real_cps3() -> None:
    # A real CPS3's keys have an empty path (OpenSC #2267 "Path: <AID>::"): read, not refused.
    key = dataclasses_replace(CPS_KEYS[0], path=b"")
    encoded = encode_prkdf([key])
    assert bytes.fromhex("A10A 3008 3002 0400 02020800") in encoded  # Path { path "" }
    assert decode_prkdf(encoded) == (key,)


def test_key_reference_is_a_positive_integer() -> None:
    # 0x81 must not read as -127: INTEGER 02 02 00 81.
    assert bytes.fromhex("02020081") in encode_prkdf(CPS_KEYS[:1])


# --- Round trips --------------------------------------------------------------------------------

@pytest.mark.parametrize(("encode", "decode", "value"), DIRECTORIES, ids=DIR_IDS)
def test_round_trip(encode: Callable[[Any], bytes], decode: Callable[[bytes], Any],
                    value: Any) -> None:
    assert decode(encode(value)) == value


def test_token_info_round_trip() -> None:
    assert decode_token_info(encode_token_info(CPS_TOKEN)) == CPS_TOKEN
    bare = TokenInfo(serial=b"", manufacturer="", label="")
    assert decode_token_info(encode_token_info(bare)) == bare


def test_pin_with_path_and_pad_char_round_trips() -> None:
    pin = PinInfo("PIN CPS", b"\x01", 0x01, 4, 4, 8, flags=frozenset({"local", "initialized",
                                                                      "needs-padding"}),
                  path=APP, pad_char=0xFF)
    assert decode_aodf(encode_aodf([pin])) == (pin,)


def test_certificate_authority_round_trips() -> None:
    ca = CertInfo("AC IGC-SANTE TEST", b"\xca", fid("7110"), authority=True)
    assert decode_cdf(encode_cdf([ca])) == (ca,)


@pytest.mark.parametrize("length", [0, 1, 0x7F, 0x80, 0xFF])
def test_label_boundary_lengths(length: int) -> None:
    cert = CertInfo("é" * length, b"\x01", fid("7101"))  # 2 bytes each in UTF-8: long forms
    assert decode_cdf(encode_cdf([cert])) == (cert,)


def test_empty_directories() -> None:
    for encode, decode, _value in DIRECTORIES:
        assert encode({} if encode is encode_odf else ()) == b""
        assert not decode(b"")


def test_many_entries_use_long_lengths() -> None:
    data = [DataObjectInfo(f"CPS_ACTIVITY_{n:02}_PS", "CPS", fid(f"D1{n + 0x20:02X}"), b"\x01")
            for n in range(16)]
    assert decode_dodf(encode_dodf(data)) == tuple(data)


def test_odf_is_written_in_tag_order() -> None:
    encoded = encode_odf(CPS_ODF)
    assert [encoded[0]] == [0xA0]
    assert list(decode_odf(encoded)) == ["prkdf", "pukdf", "cdf", "dodf", "aodf"]


# --- Padding -------------------------------------------------------------------------------------

@pytest.mark.parametrize("pad", [0x00, 0xFF])
@pytest.mark.parametrize("size", [1, 200])
@pytest.mark.parametrize(("encode", "decode", "value"), DIRECTORIES, ids=DIR_IDS)
def test_padding_ends_the_directory(encode: Callable[[Any], bytes],
                                    decode: Callable[[bytes], Any], value: Any,
                                    pad: int, size: int) -> None:
    padded = encode(value) + bytes([pad]) * size
    assert decode(padded) == value
    # Whatever follows the padding is not read (the file is bigger than its content).
    assert decode(padded + b"\x30\x03garbage") == value


@pytest.mark.parametrize("pad", [0x00, 0xFF])
def test_token_info_padding(pad: int) -> None:
    assert decode_token_info(encode_token_info(CPS_TOKEN) + bytes([pad]) * 64) == CPS_TOKEN


def test_token_info_trailing_data_is_malformed() -> None:
    with pytest.raises(MalformedData):
        decode_token_info(encode_token_info(CPS_TOKEN) + b"\x04\x00")


# --- Unknown alternatives are skipped -----------------------------------------------------------

# An ECC key ([0]), an authKey ([1]), an attribute certificate ([0]), an oidDO ([1]),
# a trustedCertificates ODF entry ([5]): valid TLVs whose contents we do not look at.
UNKNOWN = {
    "odf": tlv(0xA5, tlv(0x30, tlv(0x04, fid("7006")))),
    "prkdf": tlv(0xA0, tlv(0x30, b"\x30\x00")),
    "aodf": tlv(0xA1, b"\x30\x00\x30\x00"),
    "cdf": tlv(0xA0, b"\x05\x00"),
    "dodf": tlv(0xA1, b""),
}


@pytest.mark.parametrize(("encode", "decode", "value"), DIRECTORIES, ids=DIR_IDS)
def test_unknown_choice_is_skipped(encode: Callable[[Any], bytes],
                                   decode: Callable[[bytes], Any], value: Any) -> None:
    unknown = UNKNOWN[DIR_IDS[[d[1] for d in DIRECTORIES].index(decode)]]
    assert decode(unknown + encode(value) + unknown) == value


def test_odf_keeps_the_first_directory_of_a_kind() -> None:
    first, second = encode_odf({"cdf": fid("7004")}), encode_odf({"cdf": fid("7104")})
    assert decode_odf(first + second) == {"cdf": fid("7004")}


# --- What real cards add ------------------------------------------------------------------------

def test_token_info_optional_fields_of_real_cards_are_accepted() -> None:
    body = encode_token_info(CPS_TOKEN)[2:]  # short form: the content after 30 len
    extra = (tlv(0xA1, tlv(0x80, b"\x10"))  # recordInfo { oDFRecordLength [0] }
             + tlv(0x83, b"issuer")  # issuerId [3]
             + tlv(0xA5, tlv(0x18, b"20240101000000Z"))  # lastUpdate [5] GeneralizedTime
             + tlv(0x13, b"fr"))  # preferredLanguage
    assert decode_token_info(tlv(0x30, body + extra)) == CPS_TOKEN


def test_pin_defaults_as_opensc() -> None:
    # No label, empty pinFlags, no maxLength (-> storedLength), pinReference written as the
    # negative one-byte INTEGER 81 by OpenSC <= 0.11.4 (-> 0x81).
    attributes = (tlv(0x03, b"\x00") + tlv(0x0A, b"\x01") + tlv(0x02, b"\x04")
                  + tlv(0x02, b"\x08") + tlv(0x80, b"\x81"))
    entry = tlv(0x30, tlv(0x30, b"") + tlv(0x30, tlv(0x04, b"\x01"))
                + tlv(0xA1, tlv(0x30, attributes)))
    assert decode_aodf(entry) == (PinInfo("", b"\x01", 0x81, 4, 8, 8, flags=frozenset()),)


def test_bcd_pin_without_max_length_counts_digits() -> None:
    attributes = tlv(0x03, b"\x00") + tlv(0x0A, b"\x00") + tlv(0x02, b"\x04") + tlv(0x02, b"\x04")
    entry = tlv(0x30, tlv(0x30, b"") + tlv(0x30, tlv(0x04, b"\x01"))
                + tlv(0xA1, tlv(0x30, attributes)))
    (pin,) = decode_aodf(entry)
    assert (pin.pin_type, pin.max_length, pin.reference) == ("bcd", 8, 0)


def test_data_object_auth_id_without_private_flag_is_public() -> None:
    entry = tlv(0x30, tlv(0x30, tlv(0x0C, b"X") + tlv(0x04, b"\x01")) + tlv(0x30, b"")
                + tlv(0xA1, tlv(0x30, tlv(0x04, b"\x3f\x00"))))
    assert decode_dodf(entry) == (DataObjectInfo("X", "", b"\x3f\x00"),)


def test_common_private_key_attributes_are_accepted() -> None:
    # [0] EXPLICIT CommonPrivateKeyAttributes { subjectName Name }, as OpenSC writes it.
    sub_class = tlv(0xA0, tlv(0x30, tlv(0x30, tlv(0x31, b""))))
    body = PRKDF_SIG[2:]
    split = body.index(bytes.fromhex("A10E"))
    data = tlv(0x30, body[:split] + sub_class + body[split:])
    assert decode_prkdf(data) == CPS_KEYS[:1]


def test_unknown_usage_bits_are_ignored() -> None:
    usage = bytes.fromhex("030306 0060")  # nonRepudiation(9) and bit 10 (not in v1.1)
    data = PRKDF_SIG.replace(bytes.fromhex("030306 0040"), usage)
    assert decode_prkdf(data) == CPS_KEYS[:1]


# --- Malformed data -----------------------------------------------------------------------------

@pytest.mark.parametrize(("encode", "decode", "value"), DIRECTORIES, ids=DIR_IDS)
def test_truncated_entries_are_malformed(encode: Callable[[Any], bytes],
                                         decode: Callable[[bytes], Any], value: Any) -> None:
    encoded = encode(value)
    for cut in (1, 2, 5):
        with pytest.raises(MalformedData):
            decode(encoded[:-cut])


@pytest.mark.parametrize(
    ("decode", "data"),
    [
        (decode_prkdf, PRKDF_SIG.replace(bytes.fromhex("02020800"), bytes.fromhex("04020800"))),
        (decode_prkdf, PRKDF_SIG.replace(bytes.fromhex("A10E"), bytes.fromhex("A20E"))),
        (decode_aodf, AODF_PIN.replace(bytes.fromhex("0A0101"), bytes.fromhex("0A0107"))),
        (decode_aodf, AODF_PIN.replace(bytes.fromhex("030203 48"), bytes.fromhex("040203 48"))),
        (decode_odf, bytes.fromhex("A004 3002 0400")),  # empty path
        (decode_odf, bytes.fromhex("A007 3005 0403 3F0000")),  # odd path
        (decode_odf, bytes.fromhex("A080 3004 04023F00 0000")),  # indefinite length
        (decode_cdf, bytes.fromhex("3080 0000")),
        (decode_token_info, b""),
        (decode_token_info, b"\x00"),
        (decode_token_info, bytes.fromhex("3003 020100")),  # no tokenflags
    ],
)
def test_malformed(decode: Callable[[bytes], Any], data: bytes) -> None:
    with pytest.raises(MalformedData):
        decode(data)


def test_key_without_reference_is_malformed() -> None:
    data = PRKDF_SIG.replace(bytes.fromhex("300C 040101 030306 0040 02020081"),
                             bytes.fromhex("3008 040101 030306 0040"))
    data = bytes.fromhex("3031") + data[2:]
    with pytest.raises(MalformedData, match="keyReference"):
        decode_prkdf(data)


def test_caps() -> None:
    with pytest.raises(MalformedData):
        decode_dodf(encode_dodf(CPS_DATA) * 2000)  # over MAX_DIRECTORY_SIZE
    with pytest.raises(MalformedData):
        decode_prkdf(bytes.fromhex("A000") * (pkcs15.MAX_ENTRIES + 1))
    assert decode_prkdf(bytes.fromhex("A000") * pkcs15.MAX_ENTRIES) == ()


# --- Builder arguments --------------------------------------------------------------------------

@pytest.mark.parametrize(
    "build",
    [
        lambda: KeyInfo("K", b"\x01", b"\x01", 0x81, 2048, frozenset({"sign"}), b"\x3f\x00\x01"),
        lambda: KeyInfo("K", b"\x01", b"\x01", 0x81, 2048, frozenset({"sing"}), APP),
        lambda: KeyInfo("K", b"", b"\x01", 0x81, 2048, frozenset(), APP),
        lambda: KeyInfo("K", b"\x01", b"\x01", 0x181, 2048, frozenset(), APP),
        lambda: PinInfo("P", b"\x01", 1, 8, 4, 8),
        lambda: PinInfo("P", b"\x01", 1, 4, 4, 8, pin_type="morse"),
        lambda: PinInfo("P", b"\x01", 1, 4, 4, 8, flags=frozenset({"sopin"})),
        lambda: CertInfo("x" * 256, b"\x01", APP),
        lambda: CertInfo("C", b"\x01", b""),
        lambda: DataObjectInfo("D", "CPS", APP + b"\x00" * 14),
        lambda: TokenInfo(b"", "", "", flags=frozenset({"readOnly"})),
        lambda: encode_odf({"skdf": APP}),
    ],
)
def test_bad_arguments(build: Callable[[], object]) -> None:
    with pytest.raises(ValueError):
        build()


# --- Fuzzing ------------------------------------------------------------------------------------

def _decodes_or_malformed(decode: Callable[[bytes], Any], data: bytes) -> None:
    try:
        result = decode(data)
    except MalformedData:
        return
    assert isinstance(result, tuple | dict | TokenInfo)


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=300), index=st.integers(0, len(DECODERS) - 1))
def test_arbitrary_bytes(data: bytes, index: int) -> None:
    _decodes_or_malformed(DECODERS[index], data)


@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_mutated_encodings(data: st.DataObject) -> None:
    encoders = [(e, d, v) for e, d, v in DIRECTORIES] + [
        (encode_token_info, decode_token_info, CPS_TOKEN)]
    encode, decode, value = data.draw(st.sampled_from(encoders))
    encoded = bytearray(encode(value))
    for _ in range(data.draw(st.integers(1, 3))):
        position = data.draw(st.integers(0, len(encoded) - 1))
        action = data.draw(st.sampled_from(["flip", "drop", "insert"]))
        if action == "flip":
            encoded[position] ^= data.draw(st.integers(1, 255))
        elif action == "drop":
            del encoded[position]
        else:
            encoded.insert(position, data.draw(st.integers(0, 255)))
        if not encoded:
            break
    _decodes_or_malformed(decode, bytes(encoded))


labels = st.text(max_size=40)
ids = st.binary(min_size=1, max_size=20)
paths = st.lists(st.binary(min_size=2, max_size=2), min_size=1, max_size=8).map(b"".join)
bytes_ = st.integers(0, 0xFF)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.builds(KeyInfo, labels, ids, ids, bytes_, st.integers(1, 16384),
                          st.frozensets(st.sampled_from(pkcs15.KEY_USAGES)), paths),
                max_size=4))
def test_key_round_trip_property(keys: list[KeyInfo]) -> None:
    assert decode_prkdf(encode_prkdf(keys)) == tuple(keys)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(labels, ids, bytes_, st.integers(0, 16), st.integers(0, 16),
                          st.integers(0, 32), st.sampled_from(pkcs15.PIN_TYPES),
                          st.frozensets(st.sampled_from(pkcs15.PIN_FLAGS)),
                          st.none() | paths, st.none() | bytes_), max_size=3))
def test_pin_round_trip_property(rows: list[tuple[Any, ...]]) -> None:
    pins = [PinInfo(label, auth, ref, min(a, b), max(a, b), stored, kind, flags, path, pad)
            for label, auth, ref, a, b, stored, kind, flags, path, pad in rows]
    assert decode_aodf(encode_aodf(pins)) == tuple(pins)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.builds(CertInfo, labels, ids, paths, st.booleans()), max_size=4),
       st.lists(st.builds(DataObjectInfo, labels, labels, paths, st.none() | ids), max_size=4),
       st.dictionaries(st.sampled_from(pkcs15.ODF_KEYS), paths))
def test_cdf_dodf_odf_round_trip_property(certs: list[CertInfo], objs: list[DataObjectInfo],
                                          odf: dict[str, bytes]) -> None:
    assert decode_cdf(encode_cdf(certs)) == tuple(certs)
    assert decode_dodf(encode_dodf(objs)) == tuple(objs)
    assert decode_odf(encode_odf(odf)) == odf


@settings(max_examples=100, deadline=None)
@given(st.builds(TokenInfo, st.binary(max_size=16), labels, labels, st.integers(0, 3),
                 st.frozensets(st.sampled_from(pkcs15.TOKEN_FLAGS))))
def test_token_info_round_trip_property(info: TokenInfo) -> None:
    assert decode_token_info(encode_token_info(info)) == info


# --- Interop ------------------------------------------------------------------------------------

@pytest.mark.interop
@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl not installed")
def test_openssl_parses_the_prkdf_entry() -> None:
    result = subprocess.run(["openssl", "asn1parse", "-inform", "DER", "-i"],
                            input=encode_prkdf(CPS_KEYS[:1]), capture_output=True, check=True,
                            timeout=30)
    out = result.stdout.decode()
    assert f"l={len(PRKDF_SIG) - 2:4} cons: SEQUENCE" in out  # one TLV, all of it
    assert re.search(r"d=1 .* cont \[ 1 \]\s*\n.*d=2 .* SEQUENCE", out)  # [1] EXPLICIT
    assert re.search(r"UTF8STRING\s+:CPS_PRIV_SIG", out)
    assert re.search(r"INTEGER\s+:81\n", out)  # keyReference, positive
    assert re.search(r"INTEGER\s+:0800\n", out)  # modulusLength 2048
