"""BER-TLV codec: vectors, boundary lengths, caps, truncation, padding, trees, fuzzing."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bifente.apdu import tlv
from bifente.apdu.errors import MalformedData
from bifente.apdu.tlv import Tlv

BOUNDARY_LENGTHS = [0, 1, 0x7F, 0x80, 0xFF, 0x100, 0xFFFF, 0x10000]
# An FCI-like tree: 6F { 84 AID, A5 { 50 "ABC", BF0C { 9F36 0001 } } }
FCI = bytes.fromhex("6F18 8407A0000000031010 A50D 5003414243 BF0C05 9F36020001")


@pytest.mark.parametrize(
    ("tag", "hexstr"),
    [(0x5A, "5A"), (0x9F36, "9F36"), (0xBF8101, "BF8101"), (0xDF818201, "DF818201"),
     (0x6F, "6F"), (0x9F02, "9F02")],
)
def test_encode_tag(tag: int, hexstr: str) -> None:
    assert tlv.encode_tag(tag) == bytes.fromhex(hexstr)


@pytest.mark.parametrize(
    "tag",
    [0, -1, 0xFF, 0x1F, 0x9F, 0x5A01, 0x9F81, 0x9F0101, 0xDF81828301, 0xFF01],
)
def test_encode_tag_invalid(tag: int) -> None:
    with pytest.raises(ValueError):
        tlv.encode_tag(tag)


@pytest.mark.parametrize(
    ("n", "hexstr"),
    [(0, "00"), (1, "01"), (0x7F, "7F"), (0x80, "8180"), (0xFF, "81FF"), (0x100, "820100"),
     (0xFFFF, "82FFFF"), (0x10000, "83010000"), (0xFFFFFF, "83FFFFFF"),
     (0x1000000, "8401000000"), (0xFFFFFFFF, "84FFFFFFFF")],
)
def test_encode_length(n: int, hexstr: str) -> None:
    assert tlv.encode_length(n) == bytes.fromhex(hexstr)


@pytest.mark.parametrize("n", [-1, 0x100000000])
def test_encode_length_invalid(n: int) -> None:
    with pytest.raises(ValueError):
        tlv.encode_length(n)


def test_vectors() -> None:
    assert tlv.encode(0x5A, bytes.fromhex("1234")) == bytes.fromhex("5A021234")
    assert tlv.encode(0x9F36, b"\x00\x01") == bytes.fromhex("9F36020001")
    assert tlv.encode(0xBF8101, b"") == bytes.fromhex("BF810100")
    built = tlv.encode_constructed(
        0x6F,
        tlv.encode(0x84, bytes.fromhex("A0000000031010")),
        tlv.encode_constructed(
            0xA5,
            tlv.encode(0x50, b"ABC"),
            tlv.encode_constructed(0xBF0C, tlv.encode(0x9F36, b"\0\1")),
        ),
    )
    assert built == FCI
    (fci,) = tlv.decode(FCI)
    assert fci == Tlv(0x6F, FCI[2:])
    assert fci.constructed
    assert [c.tag for c in fci.children()] == [0x84, 0xA5]
    assert fci.to_bytes() == FCI
    assert Tlv.parse(FCI) == fci


def test_encode_constructed_needs_constructed_tag() -> None:
    with pytest.raises(ValueError, match="primitive"):
        tlv.encode_constructed(0x84, b"")


@pytest.mark.parametrize("n", BOUNDARY_LENGTHS)
@pytest.mark.parametrize("tag", [0x5A, 0x9F36, 0xBF8101])
def test_boundary_lengths(n: int, tag: int) -> None:
    value = bytes(i & 0xFF for i in range(n))
    raw = tlv.encode(tag, value)
    assert raw == tlv.encode_tag(tag) + tlv.encode_length(n) + value
    if n > tlv.DEFAULT_MAX_LENGTH:
        with pytest.raises(MalformedData, match="exceeds the cap"):
            tlv.decode(raw)
        with pytest.raises(MalformedData, match="exceeds the cap"):
            tlv.decode_one(raw)
        assert tlv.decode(raw, max_length=n) == (Tlv(tag, value),)
    else:
        assert tlv.decode(raw) == (Tlv(tag, value),)
        assert tlv.decode_one(raw) == (Tlv(tag, value), len(raw))
    assert Tlv(tag, value).to_bytes() == raw


def test_cap_checked_before_value() -> None:
    # 4 GiB announced, 0 bytes present: the cap, not the truncation, must answer.
    with pytest.raises(MalformedData, match="exceeds the cap"):
        tlv.decode(bytes.fromhex("5A84FFFFFFFF"))
    with pytest.raises(MalformedData, match="exceeds the cap"):
        tlv.decode(bytes.fromhex("5A0201"), max_length=1)


@pytest.mark.parametrize(
    ("hexstr", "message"),
    [
        ("3080", "indefinite length for tag 30 at offset 1"),
        ("5A850000000001", "5 length bytes"),
        ("5AFF", "127 length bytes"),
        ("DF8182838400", "tag longer than 4 bytes at offset 0"),
        ("DF81828384", "tag longer than 4 bytes"),
        ("9F", "truncated tag at offset 0"),
        ("9F81", "truncated tag at offset 0"),
        ("5A", "missing length for tag 5A at offset 1"),
        ("5A82", "truncated length for tag 5A at offset 1"),
        ("5A8201", "truncated length"),
        ("5A0301", "truncated value for tag 5A at offset 2: need 3, have 1"),
        ("5A00 9F", "truncated tag at offset 2"),
    ],
)
def test_malformed_messages(hexstr: str, message: str) -> None:
    with pytest.raises(MalformedData, match=message):
        tlv.decode(bytes.fromhex(hexstr))


def test_padding_skipped_in_decode_only() -> None:
    raw = bytes.fromhex("00FF 5A0112 0000FF 9F3600 FF")
    assert tlv.decode(raw) == (Tlv(0x5A, b"\x12"), Tlv(0x9F36, b""))
    assert tlv.decode(b"\x00\xff\x00") == ()
    assert tlv.decode(b"") == ()
    for bad in (b"\x00\x5a\x00", b"\xff\x5a\x00", b""):
        with pytest.raises(MalformedData):
            tlv.decode_one(bad)
    # Padding inside a constructed value is skipped by children() too.
    assert Tlv(0x70, bytes.fromhex("00 5A0112 FF")).children() == (Tlv(0x5A, b"\x12"),)


def test_non_minimal_length_accepted_and_re_encoded_minimally() -> None:
    (t,) = tlv.decode(bytes.fromhex("5A810112"))
    assert t == Tlv(0x5A, b"\x12")
    assert t.to_bytes() == bytes.fromhex("5A0112")


def test_decode_one_reports_consumed() -> None:
    assert tlv.decode_one(bytes.fromhex("5A0112 9F3600")) == (Tlv(0x5A, b"\x12"), 3)
    with pytest.raises(MalformedData, match="trailing"):
        Tlv.parse(bytes.fromhex("5A0112 00"))


@pytest.mark.parametrize("blob", [FCI, tlv.encode(0xBF8101, bytes(0x100)),
                                  tlv.encode(0x9F36, bytes(0x80))])
def test_truncated_at_every_cut(blob: bytes) -> None:
    for cut in range(1, len(blob)):
        with pytest.raises(MalformedData):
            tlv.decode(blob[:cut])
        with pytest.raises(MalformedData):
            tlv.decode_one(blob[:cut])


def test_find_and_find_path() -> None:
    top = tlv.decode(FCI + tlv.encode(0x5A, b"\x01") + tlv.encode(0x5A, b"\x02"))
    assert tlv.find(top, 0x5A) == Tlv(0x5A, b"\x01")
    assert tlv.find(top, 0x84) is None  # top level only
    assert tlv.find_path(FCI, 0x6F, 0x84) == bytes.fromhex("A0000000031010")
    assert tlv.find_path(FCI, 0x6F, 0xA5, 0x50) == b"ABC"
    assert tlv.find_path(FCI, 0x6F, 0xA5, 0xBF0C, 0x9F36) == b"\x00\x01"
    assert tlv.find_path(FCI, 0x6F) == FCI[2:]
    assert tlv.find_path(FCI, 0x6F, 0x99) is None
    assert tlv.find_path(FCI, 0x70, 0x84) is None
    assert tlv.find_path(FCI, 0x6F, 0x84, 0x01) is None  # 84 is primitive
    with pytest.raises(ValueError):
        tlv.find_path(FCI)
    with pytest.raises(MalformedData):
        tlv.find_path(FCI[:-1], 0x6F, 0x84)


def test_tlv_value_object() -> None:
    t = Tlv(0x5F20, bytearray(b"DUPONT"))
    assert type(t.value) is bytes
    assert "DUPONT" not in repr(t) and "5F20" in repr(t)
    assert not t.constructed
    assert Tlv(0xBF8101).constructed
    with pytest.raises(MalformedData, match="primitive"):
        t.children()
    with pytest.raises(ValueError):
        Tlv(0x1F, b"")
    assert hash(t) == hash(Tlv(0x5F20, b"DUPONT"))


# --- Hypothesis -------------------------------------------------------------------------------


@given(st.binary(max_size=600))
def test_decode_total(raw: bytes) -> None:
    try:
        tlvs = tlv.decode(raw)
    except MalformedData:
        return
    assert tlv.decode(b"".join(t.to_bytes() for t in tlvs)) == tlvs
    for t in tlvs:
        if t.constructed:
            with contextlib.suppress(MalformedData):
                t.children()


@given(st.binary(max_size=300))
def test_decode_one_total(raw: bytes) -> None:
    try:
        t, used = tlv.decode_one(raw)
    except MalformedData:
        return
    assert 0 < used <= len(raw)
    assert tlv.decode_one(t.to_bytes()) == (t, len(t.to_bytes()))


@st.composite
def tags(draw: st.DrawFn, constructed: bool) -> int:
    """A valid 1-4 byte BER tag with the requested constructed bit."""
    cls = draw(st.integers(0, 3)) << 6
    first_flag = 0x20 if constructed else 0
    if draw(st.booleans()):
        number = draw(st.integers(0, 0x1E))
        first = cls | first_flag | number
        if first == 0:  # 00 is padding, not a tag
            first = 0x01
        return first
    first = cls | first_flag | 0x1F
    if first == 0xFF:  # FF is padding, not a tag; keep the constructed bit
        first = 0xBF
    extra = draw(st.integers(1, 3))
    rest = [draw(st.integers(0x80, 0xFF)) for _ in range(extra - 1)]
    rest.append(draw(st.integers(0x00, 0x7F)))
    return int.from_bytes(bytes([first, *rest]), "big")


# A tree is (tag, bytes) for a primitive or (tag, [subtrees]) for a constructed object.
trees = st.recursive(
    st.tuples(tags(constructed=False), st.binary(max_size=300)),
    lambda children: st.tuples(tags(constructed=True), st.lists(children, max_size=4)),
    max_leaves=20,
)


def _encode_tree(tree: tuple) -> bytes:
    tag, body = tree
    if isinstance(body, bytes):
        return tlv.encode(tag, body)
    return tlv.encode_constructed(tag, *(_encode_tree(c) for c in body))


def _decode_tree(t: Tlv) -> tuple:
    if not t.constructed:
        return (t.tag, t.value)
    return (t.tag, [_decode_tree(c) for c in t.children()])


@given(st.lists(trees, max_size=4))
def test_tree_round_trip(forest: list[tuple]) -> None:
    raw = b"".join(_encode_tree(t) for t in forest)
    decoded = tlv.decode(raw)
    assert [_decode_tree(t) for t in decoded] == forest
    assert b"".join(t.to_bytes() for t in decoded) == raw
