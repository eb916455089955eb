"""Command and response APDU codec: hex vectors per case, boundary lengths, round trips."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bifente.apdu.command import MAX_LC, MAX_LE, CommandApdu, ResponseApdu
from bifente.apdu.errors import MalformedData

BOUNDARY_LENGTHS = [0, 1, 0x7F, 0x80, 0xFF, 0x100, 0xFFFF]
D256 = bytes(range(256))

VECTORS = [
    # (case, hex, value)
    ("1", "00A40400", CommandApdu(0x00, 0xA4, 0x04, 0x00)),
    ("2S", "00B0000010", CommandApdu(0x00, 0xB0, le=16)),
    ("2S Le=256", "00B0000000", CommandApdu(0x00, 0xB0, le=256)),
    ("3S", "002000010431323334", CommandApdu(0x00, 0x20, 0x00, 0x01, b"1234")),
    (
        "4S",
        "00A4040007A000000003101000",
        CommandApdu(0x00, 0xA4, 0x04, 0x00, bytes.fromhex("A0000000031010"), le=256),
    ),
    ("2E", "00B00000000101", CommandApdu(0x00, 0xB0, le=257)),
    ("2E Le=65536", "00B00000000000", CommandApdu(0x00, 0xB0, le=65536)),
    ("2E small Le", "00B00000000010", CommandApdu(0x00, 0xB0, le=16, extended=True)),
    ("3E", "00D60000000100" + D256.hex(), CommandApdu(0x00, 0xD6, data=D256)),
    (
        "4E",
        "002A8086000100" + D256.hex() + "0000",
        CommandApdu(0x00, 0x2A, 0x80, 0x86, D256, le=65536),
    ),
    (
        "4E small",
        "0088000000000211220100",
        CommandApdu(0x00, 0x88, data=b"\x11\x22", le=256, extended=True),
    ),
]


@pytest.mark.parametrize(("case", "hexstr", "value"), VECTORS, ids=[v[0] for v in VECTORS])
def test_vectors(case: str, hexstr: str, value: CommandApdu) -> None:
    raw = bytes.fromhex(hexstr)
    assert value.to_bytes() == raw
    assert CommandApdu.parse(raw) == value
    assert value.case == int(case[0])


def test_le_256_short_and_65536_extended() -> None:
    assert CommandApdu(0x00, 0xC0, le=256).to_bytes()[-1:] == b"\x00"
    assert CommandApdu(0x00, 0xC0, le=65536).to_bytes()[-3:] == b"\x00\x00\x00"
    assert CommandApdu(0x00, 0xC0, le=65536).extended
    assert CommandApdu(0x00, 0xC0, data=b"x", le=65536).to_bytes()[-2:] == b"\x00\x00"


@pytest.mark.parametrize("n", BOUNDARY_LENGTHS)
@pytest.mark.parametrize("le", [None, 1, 256, 257, 65536])
def test_boundary_data_lengths(n: int, le: int | None) -> None:
    data = bytes(i & 0xFF for i in range(n))
    apdu = CommandApdu(0x80, 0xCA, 0x01, 0x02, data, le=le)
    raw = apdu.to_bytes()
    extended = n > 0xFF or (le or 0) > 256
    if not extended:
        expected = 4 + (1 + n if n else 0) + (1 if le is not None else 0)
    else:
        expected = 4 + ((1 + 2 + n) if n else 0) + (0 if le is None else (2 if n else 3))
    assert len(raw) == expected
    assert apdu.extended == extended
    assert CommandApdu.parse(raw) == apdu
    assert CommandApdu.parse(raw).to_bytes() == raw


def test_data_too_long_is_refused() -> None:
    with pytest.raises(ValueError, match="too long"):
        CommandApdu(0x00, 0xD6, data=bytes(MAX_LC + 1))


@pytest.mark.parametrize("le", [0, -1, MAX_LE + 1])
def test_bad_le_is_refused(le: int) -> None:
    with pytest.raises(ValueError):
        CommandApdu(0x00, 0xB0, le=le)


@pytest.mark.parametrize("name", ["cla", "ins", "p1", "p2"])
def test_header_bytes_must_be_bytes(name: str) -> None:
    kwargs = {"cla": 0, "ins": 0xA4, "p1": 0, "p2": 0, name: 0x100}
    with pytest.raises(ValueError, match=name):
        CommandApdu(**kwargs)


def test_extended_case_1_renders_short() -> None:
    assert CommandApdu(0x00, 0xA4, extended=True).to_bytes() == bytes.fromhex("00A40000")


def test_with_le() -> None:
    apdu = CommandApdu(0x00, 0xB0, le=256)
    assert apdu.with_le(0x12).to_bytes() == bytes.fromhex("00B0000012")
    assert apdu.with_le(None).case == 1


@pytest.mark.parametrize(
    "hexstr",
    [
        "",
        "00",
        "00A404",
        "00A4040002AA",  # short Lc=2, one data byte
        "00A4040002AABBCCDD",  # short Lc=2, two bytes too many
        "00A4040000AA",  # extended marker then one byte
        "00A4040000000011",  # extended Lc=0 is not allowed
        "00A40400000002112233",  # extended Lc=2, one byte too many
        "00A404000000021122334455",  # extended Lc=2, one byte too many for case 4E
    ],
)
def test_malformed(hexstr: str) -> None:
    with pytest.raises(MalformedData):
        CommandApdu.parse(bytes.fromhex(hexstr))


@pytest.mark.parametrize("hexstr", ["00A40400000000", "00A404000000021122"])
def test_near_misses_that_are_valid(hexstr: str) -> None:
    # 00 0000 alone is case 2E with Le=65536; 00 0002 1122 is case 3E.
    raw = bytes.fromhex(hexstr)
    assert CommandApdu.parse(raw).to_bytes() == raw


def test_repr_hides_data() -> None:
    assert "3132" not in repr(CommandApdu(0x00, 0x20, 0x00, 0x01, b"1234"))
    assert "1234" not in repr(CommandApdu(0x00, 0x20, 0x00, 0x01, b"1234"))


def test_response_vectors() -> None:
    assert ResponseApdu.parse(bytes.fromhex("9000")) == ResponseApdu()
    r = ResponseApdu.parse(bytes.fromhex("01026110"))
    assert (r.data, r.sw, r.sw1, r.sw2, r.ok) == (b"\x01\x02", 0x6110, 0x61, 0x10, False)
    assert r.to_bytes() == bytes.fromhex("01026110")
    assert ResponseApdu.parse(bytes(MAX_LE) + b"\x90\x00").data == bytes(MAX_LE)


@pytest.mark.parametrize("n", [0, 1, MAX_LE + 3])
def test_response_bad_length(n: int) -> None:
    with pytest.raises(MalformedData):
        ResponseApdu.parse(bytes(n))


def test_response_coerces_and_checks() -> None:
    r = ResponseApdu(bytearray(b"\x01"), 0x9000)
    assert type(r.to_bytes()) is bytes
    assert hash(r) == hash(ResponseApdu(b"\x01"))
    with pytest.raises(ValueError):
        ResponseApdu(b"", 0x10000)
    assert "01" not in repr(ResponseApdu(b"\x01\x01\x01"))


# Hypothesis: arbitrary bytes, plus bytes shaped like APDUs so the valid branches get hit.
_shaped = st.builds(
    lambda head, lc, body: head + lc + body,
    st.binary(min_size=4, max_size=4),
    st.sampled_from([b"", b"\x00", b"\x01", b"\x02", b"\xff", b"\x00\x00", b"\x00\x00\x02"]),
    st.binary(max_size=300),
)


@given(st.one_of(st.binary(max_size=600), _shaped))
def test_command_parse_total(raw: bytes) -> None:
    try:
        apdu = CommandApdu.parse(raw)
    except MalformedData:
        return
    assert apdu.to_bytes() == raw


@given(st.binary(max_size=600))
def test_response_parse_total(raw: bytes) -> None:
    try:
        resp = ResponseApdu.parse(raw)
    except MalformedData:
        return
    assert resp.to_bytes() == raw


_apdus = st.builds(
    CommandApdu,
    cla=st.integers(0, 0xFF),
    ins=st.integers(0, 0xFF),
    p1=st.integers(0, 0xFF),
    p2=st.integers(0, 0xFF),
    data=st.one_of(st.binary(max_size=300), st.integers(0xFF00, MAX_LC).map(bytes)),
    le=st.one_of(st.none(), st.integers(1, MAX_LE), st.sampled_from([256, 257, MAX_LE])),
    extended=st.booleans(),
)


@given(_apdus)
def test_command_round_trip(apdu: CommandApdu) -> None:
    raw = apdu.to_bytes()
    assert CommandApdu.parse(raw) == apdu
    assert CommandApdu.parse(raw).to_bytes() == raw
