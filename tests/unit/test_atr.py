"""ATR parser: health-card vectors, TCK rules, RFU values, truncation, fuzzing."""

from __future__ import annotations

from fractions import Fraction

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from bifente.apdu.atr import MAX_ATR_LENGTH, Atr, Convention, InterfaceBytes
from bifente.apdu.errors import MalformedData

CPS3 = "3B AC 00 40 2A 00 12 25 00 64 80 00 03 10 00 90 00"
CPS3_CL = "3B 8F 80 01 00 31 B8 64 04 B0 EC C1 73 94 01 80 82 90 00 0E"
CPS4 = "3B 9B 18 80 01 00 12 25 00 64 80 04 01 00 00 90 44"
VITALE2 = "3B 75 13 00 00 44 09 EA 90 00"
VITALE1 = "3F 65 25 08 22 04 68 90 00"  # constructed for the test: TB1, TC1, 5 historical bytes
JCOP = "3B F8 18 00 FF 81 31 FE 45 4A 43 4F 50 76 32 34 31 43"  # T=1 only, IFSC in TA3

IB = InterfaceBytes

EXPECTED = {
    CPS3: dict(
        ts=0x3B, t0=0xAC, interface=(IB(tb=0x00, td=0x40), IB(tc=0x2A)),
        historical="00 12 25 00 64 80 00 03 10 00 90 00", tck=None, convention="direct",
        protocols=(0,), fi=372, di=1, f_max_hz=5_000_000, etu_clocks=372,
        specific_mode=False, guard_time_n=0, wi=42, ifsc=32,
        describe="T=0, Fi=372 Di=1, 12 historical bytes",
    ),
    CPS3_CL: dict(
        ts=0x3B, t0=0x8F, interface=(IB(td=0x80), IB(td=0x01)),
        historical="00 31 B8 64 04 B0 EC C1 73 94 01 80 82 90 00", tck=0x0E,
        convention="direct", protocols=(0, 1), fi=372, di=1, f_max_hz=5_000_000,
        etu_clocks=372, specific_mode=False, guard_time_n=0, wi=10, ifsc=32,
        describe="T=0, T=1, Fi=372 Di=1, 15 historical bytes",
    ),
    CPS4: dict(
        ts=0x3B, t0=0x9B, interface=(IB(ta=0x18, td=0x80), IB(td=0x01)),
        historical="00 12 25 00 64 80 04 01 00 00 90", tck=0x44, convention="direct",
        protocols=(0, 1), fi=372, di=12, f_max_hz=5_000_000, etu_clocks=31,
        specific_mode=False, guard_time_n=0, wi=10, ifsc=32,
        describe="T=0, T=1, Fi=372 Di=12, 11 historical bytes",
    ),
    VITALE2: dict(
        ts=0x3B, t0=0x75, interface=(IB(ta=0x13, tb=0x00, tc=0x00),),
        historical="44 09 EA 90 00", tck=None, convention="direct", protocols=(0,),
        fi=372, di=4, f_max_hz=5_000_000, etu_clocks=93, specific_mode=False,
        guard_time_n=0, wi=10, ifsc=32, describe="T=0, Fi=372 Di=4, 5 historical bytes",
    ),
    VITALE1: dict(
        ts=0x3F, t0=0x65, interface=(IB(tb=0x25, tc=0x08),), historical="22 04 68 90 00",
        tck=None, convention="inverse", protocols=(0,), fi=372, di=1, f_max_hz=5_000_000,
        etu_clocks=372, specific_mode=False, guard_time_n=8, wi=10, ifsc=32,
        describe="T=0, Fi=372 Di=1, 5 historical bytes, inverse convention",
    ),
    JCOP: dict(
        ts=0x3B, t0=0xF8, interface=(IB(0x18, 0x00, 0xFF, 0x81), IB(td=0x31), IB(ta=0xFE, tb=0x45)),
        historical="4A 43 4F 50 76 32 34 31", tck=0x43, convention="direct", protocols=(1,),
        fi=372, di=12, f_max_hz=5_000_000, etu_clocks=31, specific_mode=False,
        guard_time_n=255, wi=10, ifsc=254, describe="T=1, Fi=372 Di=12, 8 historical bytes",
    ),
}


def _render(atr: Atr) -> bytes:
    """Re-render an ATR from its fields, independently of `raw`."""
    out = bytearray((atr.ts, atr.t0))
    for group in atr.interface:
        out += bytes(b for b in (group.ta, group.tb, group.tc, group.td) if b is not None)
    out += atr.historical
    if atr.tck is not None:
        out.append(atr.tck)
    return bytes(out)


@pytest.mark.parametrize("hexstr", list(EXPECTED), ids=["CPS3", "CPS3-CL", "CPS4", "Vitale2",
                                                         "Vitale1", "JCOP"])
def test_vectors(hexstr: str) -> None:
    raw = bytes.fromhex(hexstr)
    atr = Atr.parse(raw)
    want = dict(EXPECTED[hexstr])
    want["historical"] = bytes.fromhex(want["historical"])
    for name, value in want.items():
        got = atr.describe() if name == "describe" else getattr(atr, name)
        assert got == value, name
    assert atr.to_bytes() == raw
    assert _render(atr) == raw
    assert Atr.parse(atr.to_bytes()) == atr
    assert hexstr.replace(" ", "") in repr(atr).replace(" ", "")


@pytest.mark.parametrize("hexstr", list(EXPECTED))
def test_truncated_at_every_cut(hexstr: str) -> None:
    raw = bytes.fromhex(hexstr)
    for cut in range(len(raw)):
        with pytest.raises(MalformedData):
            Atr.parse(raw[:cut])


@pytest.mark.parametrize("hexstr", list(EXPECTED))
def test_trailing_byte(hexstr: str) -> None:
    with pytest.raises(MalformedData, match="unexpected bytes"):
        Atr.parse(bytes.fromhex(hexstr) + b"\x00")


def test_tck_mismatch() -> None:
    raw = bytearray.fromhex(CPS4)
    raw[-1] ^= 0x01
    with pytest.raises(MalformedData, match="TCK mismatch"):
        Atr.parse(bytes(raw))
    raw = bytearray.fromhex(CPS3_CL)
    raw[5] ^= 0x10  # a historical byte
    with pytest.raises(MalformedData, match="TCK mismatch"):
        Atr.parse(bytes(raw))


def test_tck_missing() -> None:
    with pytest.raises(MalformedData, match="TCK missing"):
        Atr.parse(bytes.fromhex(CPS4)[:-1])


def test_t15_requires_tck() -> None:
    # ISO 7816-3 §8.2.5: T=0 and T=15 indicated -> TCK present. TA3 is a global byte.
    atr = Atr.parse(bytes.fromhex("3B 80 80 1F 03 1C"))
    assert atr.protocols == (0,)
    assert atr.tck == 0x1C
    assert atr.interface == (IB(td=0x80), IB(td=0x1F), IB(ta=0x03))
    assert atr.ifsc == 32  # TA3 follows T=15, not T=1
    with pytest.raises(MalformedData, match="TCK missing"):
        Atr.parse(bytes.fromhex("3B 80 80 1F 03"))


def test_t15_in_td1_is_invalid() -> None:
    with pytest.raises(MalformedData, match="T=15"):
        Atr.parse(bytes.fromhex("3B 80 0F 8F"))


@pytest.mark.parametrize("ts", [0x00, 0x3A, 0x3C, 0x3E, 0xFF, 0x03])
def test_bad_ts(ts: int) -> None:
    with pytest.raises(MalformedData, match="TS"):
        Atr.parse(bytes((ts, 0x00)))


def test_minimal() -> None:
    atr = Atr.parse(b"\x3b\x00")
    assert atr.interface == ()
    assert atr.historical == b""
    assert atr.protocols == (0,)
    assert (atr.fi, atr.di, atr.f_max_hz, atr.wi, atr.ifsc) == (372, 1, 5_000_000, 10, 32)
    assert atr.describe() == "T=0, Fi=372 Di=1, 0 historical bytes"
    assert Atr.parse(b"\x3f\x00").convention is Convention.INVERSE


def test_too_long() -> None:
    # 34 bytes are refused on length before anything is parsed.
    with pytest.raises(MalformedData, match="too long"):
        Atr.parse(bytes.fromhex("3B0F") + bytes(MAX_ATR_LENGTH - 1))


@pytest.mark.parametrize(
    ("ta1", "fi", "di", "f_max"),
    [(0x01, 372, 1, 4_000_000), (0x11, 372, 1, 5_000_000), (0x13, 372, 4, 5_000_000),
     (0x18, 372, 12, 5_000_000), (0x19, 372, 20, 5_000_000), (0x25, 558, 16, 6_000_000),
     (0x32, 744, 2, 8_000_000), (0x46, 1116, 32, 12_000_000), (0x57, 1488, 64, 16_000_000),
     (0x64, 1860, 8, 20_000_000), (0x94, 512, 8, 5_000_000), (0x96, 512, 32, 5_000_000),
     (0xA1, 768, 1, 7_500_000), (0xB2, 1024, 2, 10_000_000), (0xC3, 1536, 4, 15_000_000),
     (0xD8, 2048, 12, 20_000_000)],
)
def test_ta1_tables(ta1: int, fi: int, di: int, f_max: int) -> None:
    atr = Atr.parse(bytes((0x3B, 0x10, ta1)))
    assert (atr.fi, atr.di, atr.f_max_hz) == (fi, di, f_max)
    assert atr.etu_clocks == Fraction(fi, di)


@pytest.mark.parametrize("ta1", [0x70, 0x81, 0xE1, 0xF1, 0x10, 0x1A, 0x1F, 0x00])
def test_ta1_rfu(ta1: int) -> None:
    with pytest.raises(MalformedData, match="RFU"):
        Atr.parse(bytes((0x3B, 0x10, ta1)))


def test_specific_mode_and_wi() -> None:
    atr = Atr.parse(bytes.fromhex("3B 90 11 10 00"))  # TA1, TD1 -> TA2 = 00 (T=0)
    assert atr.specific_mode
    assert "specific mode" in atr.describe()
    with pytest.raises(MalformedData, match="WI=0"):
        Atr.parse(bytes.fromhex("3B 80 40 00"))


def test_ifsc_rfu() -> None:
    assert Atr.parse(bytes.fromhex("3B 80 81 11 FE EE")).ifsc == 254
    with pytest.raises(MalformedData, match="IFSC"):
        Atr.parse(bytes.fromhex("3B 80 81 11 00 10"))


# --- Hypothesis -------------------------------------------------------------------------------


@given(st.one_of(st.binary(max_size=40),
                 st.tuples(st.sampled_from([b"\x3b", b"\x3f"]), st.binary(max_size=36))
                 .map(b"".join)))
def test_parse_total(raw: bytes) -> None:
    try:
        atr = Atr.parse(raw)
    except MalformedData:
        return
    assert atr.to_bytes() == raw
    assert _render(atr) == raw
    assert Atr.parse(raw) == atr
    atr.describe()  # every property is computable on a parsed ATR


_VALID_TA1 = [fi << 4 | di for fi in (0, 1, 2, 3, 4, 5, 6, 9, 10, 11, 12, 13)
              for di in range(1, 10)]


@st.composite
def atrs(draw: st.DrawFn) -> tuple[bytes, tuple[int, ...], bool]:
    """A valid ATR, the protocols it offers, and whether it carries a TCK."""
    groups: list[list[int | None]] = []
    protocols: list[int] = []
    n_groups = draw(st.integers(0, 4))
    prev_t: int | None = None
    for i in range(1, n_groups + 1):
        last = i == n_groups
        ta = draw(st.none() | st.integers(0, 0xFF))
        if ta is not None and i == 1:
            ta = draw(st.sampled_from(_VALID_TA1))
        if ta is not None and i >= 3 and prev_t == 1:
            ta = draw(st.integers(1, 0xFE))
        tb = draw(st.none() | st.integers(0, 0xFF))
        tc = draw(st.none() | st.integers(0, 0xFF))
        if tc == 0 and i == 2:
            tc = 1
        t = None if last else draw(st.integers(0, 14 if i == 1 else 15))
        groups.append([ta, tb, tc, t])
        if t is not None:
            protocols.append(t)
        prev_t = t
    k = draw(st.integers(0, 15))
    ts = draw(st.sampled_from([0x3B, 0x3F]))

    def presence(g: list[int | None]) -> int:
        return sum(1 << b for b, v in enumerate(g) if v is not None)

    body = bytearray()
    y = presence(groups[0]) if groups else 0
    for idx, g in enumerate(groups):
        nxt = presence(groups[idx + 1]) if idx + 1 < len(groups) else 0
        ta, tb, tc, t = g
        td = None if t is None else (nxt << 4) | t
        body += bytes(v for v in (ta, tb, tc, td) if v is not None)
    body += draw(st.binary(min_size=k, max_size=k))
    t0 = (y << 4) | k
    has_tck = any(t != 0 for t in protocols)
    out = bytes((ts, t0)) + bytes(body)
    if has_tck:
        check = 0
        for b in out[1:]:
            check ^= b
        out += bytes((check,))
    offered = tuple(dict.fromkeys(t for t in protocols if t != 15)) or (0,)
    return out, offered, has_tck


@given(atrs())
def test_generated_atrs_parse(case: tuple[bytes, tuple[int, ...], bool]) -> None:
    raw, offered, has_tck = case
    assume(len(raw) <= MAX_ATR_LENGTH)
    atr = Atr.parse(raw)
    assert atr.protocols == offered
    assert (atr.tck is not None) == has_tck
    assert _render(atr) == raw
    for cut in range(len(raw)):
        with pytest.raises(MalformedData):
            Atr.parse(raw[:cut])
