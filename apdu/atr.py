"""Answer-to-Reset (ISO/IEC 7816-3 §8): TS, T0, interface bytes, historical bytes, TCK."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from fractions import Fraction

from bifente.apdu.errors import MalformedData
from bifente.contracts.iso7816_3 import DI_TABLE, FI_TABLE, FMAX_HZ

__all__ = ["MAX_ATR_LENGTH", "Atr", "Convention", "InterfaceBytes"]

MAX_ATR_LENGTH = 33  # TS plus at most 32 characters (ISO 7816-3 §8.2.1)

DEFAULT_FI = 372  # ISO 7816-3 §8.3: Fi=372, Di=1, f(max)=5 MHz when TA1 is absent
DEFAULT_DI = 1
DEFAULT_F_MAX_HZ = 5_000_000
DEFAULT_WI = 10  # ISO 7816-3 §10.2, when TC2 is absent
DEFAULT_IFSC = 32  # ISO 7816-3 §11.4.2, when no TA for T=1 is present

_T_GLOBAL = 15  # TDi with T=15 announces global interface bytes, not a protocol (§8.2.3)
_T1 = 1


class Convention(enum.StrEnum):
    """Character coding announced by TS (ISO 7816-3 §8.1)."""

    DIRECT = "direct"  # TS = 3B
    INVERSE = "inverse"  # TS = 3F (bytes here are already decoded by the reader)


_TS = {0x3B: Convention.DIRECT, 0x3F: Convention.INVERSE}


@dataclass(frozen=True)
class InterfaceBytes:
    """TAi, TBi, TCi, TDi of one group i (each None when absent)."""

    ta: int | None = None
    tb: int | None = None
    tc: int | None = None
    td: int | None = None

    @property
    def next_protocol(self) -> int | None:
        """Protocol T announced by TDi (low nibble), or None without TDi."""
        return None if self.td is None else self.td & 0x0F


@dataclass(frozen=True)
class Atr:
    """A parsed ATR; build it with `parse()`. `interface[0]` is group i=1 (TA1..TD1)."""

    raw: bytes
    ts: int
    t0: int
    interface: tuple[InterfaceBytes, ...]
    historical: bytes
    tck: int | None

    @classmethod
    def parse(cls, raw: bytes) -> Atr:
        """Parse an ATR as delivered by the reader; MalformedData on anything not ISO 7816-3."""
        raw = bytes(raw)
        n = len(raw)
        if n > MAX_ATR_LENGTH:
            raise MalformedData(f"ATR too long: {n} bytes (max {MAX_ATR_LENGTH})")
        if n < 2:
            raise MalformedData(f"truncated ATR: {n} bytes, need at least TS and T0")
        ts, t0 = raw[0], raw[1]
        if ts not in _TS:
            raise MalformedData(f"invalid TS {ts:02X} at offset 0 (expected 3B or 3F)")

        groups: list[InterfaceBytes] = []
        tck_needed = False
        pos = 2
        y = t0 >> 4  # Y1 (§8.2.2): bits 5-8 say which of TA1..TD1 follow
        while True:
            present: list[int | None] = []
            for bit in range(4):  # TA, TB, TC, TD in that order
                if y & (1 << bit):
                    if pos >= n:
                        i = len(groups) + 1
                        raise MalformedData(
                            f"truncated ATR: T{'ABCD'[bit]}{i} missing at offset {pos}"
                        )
                    present.append(raw[pos])
                    pos += 1
                else:
                    present.append(None)
            group = InterfaceBytes(*present)
            groups.append(group)
            if group.td is None:
                break
            # §8.2.5: TCK is absent only if T=0 alone is indicated; T=15 counts too.
            tck_needed |= (group.td & 0x0F) != 0
            y = group.td >> 4
        if groups[-1] == InterfaceBytes():  # Y=0 in T0 or the last TD: no group follows
            groups.pop()

        k = t0 & 0x0F
        if pos + k > n:
            raise MalformedData(
                f"truncated ATR: {k} historical bytes announced at offset {pos}, {n - pos} left"
            )
        historical = raw[pos:pos + k]
        pos += k

        tck: int | None = None
        if tck_needed:
            if pos >= n:
                raise MalformedData(f"truncated ATR: TCK missing at offset {pos}")
            tck = raw[pos]
            pos += 1
            check = 0
            for b in raw[1:pos]:  # §8.2.5: XOR of T0 to TCK inclusive is zero
                check ^= b
            if check:
                raise MalformedData(f"TCK mismatch: {tck:02X} at offset {pos - 1}")
        if pos != n:
            raise MalformedData(f"{n - pos} unexpected bytes after the ATR at offset {pos}")

        atr = cls(raw, ts, t0, tuple(groups), historical, tck)
        atr._check_values()
        return atr

    def _check_values(self) -> None:
        """Refuse invalid or RFU values that a reader could not act on."""
        if self._group(1).next_protocol == _T_GLOBAL:
            raise MalformedData("TD1 indicates T=15, which is invalid in TD1 (ISO 7816-3 §8.2.3)")
        ta1 = self._group(1).ta
        if ta1 is not None:
            if FI_TABLE[ta1 >> 4] == 0:
                raise MalformedData(f"TA1={ta1:02X}: FI={ta1 >> 4:X} is RFU (ISO 7816-3 Table 7)")
            if DI_TABLE[ta1 & 0x0F] == 0:
                raise MalformedData(f"TA1={ta1:02X}: DI={ta1 & 0x0F:X} is RFU (ISO 7816-3 Table 8)")
        if self._group(2).tc == 0:
            raise MalformedData("TC2=00: WI=0 is RFU (ISO 7816-3 §10.2)")
        ifsc = self._t1_ta()
        if ifsc is not None and ifsc in (0x00, 0xFF):
            raise MalformedData(f"IFSC={ifsc:02X} is RFU (ISO 7816-3 §11.4.2)")

    def _group(self, i: int) -> InterfaceBytes:
        """Interface bytes of group i (1-based); all None when absent."""
        return self.interface[i - 1] if i <= len(self.interface) else InterfaceBytes()

    def _t1_ta(self) -> int | None:
        """First TAi (i >= 3) following a TD(i-1) that indicates T=1 (ISO 7816-3 §11.4.2)."""
        for i in range(3, len(self.interface) + 1):
            if self._group(i - 1).next_protocol == _T1 and self._group(i).ta is not None:
                return self._group(i).ta
        return None

    def to_bytes(self) -> bytes:
        """The ATR bytes exactly as parsed."""
        return self.raw

    @property
    def convention(self) -> Convention:
        """Direct (TS=3B) or inverse (TS=3F) convention."""
        return _TS[self.ts]

    @property
    def protocols(self) -> tuple[int, ...]:
        """Offered protocols T in ATR order; (0,) when there is no TD1 (ISO 7816-3 §8.2.3)."""
        out: list[int] = []
        for group in self.interface:
            t = group.next_protocol
            if t is not None and t != _T_GLOBAL and t not in out:
                out.append(t)
        return tuple(out) or (0,)

    @property
    def fi(self) -> int:
        """Clock rate conversion integer Fi from TA1 (Table 7), 372 by default."""
        ta1 = self._group(1).ta
        return DEFAULT_FI if ta1 is None else _fi_entry(ta1)[0]

    @property
    def di(self) -> int:
        """Baud rate adjustment integer Di from TA1 (Table 8), 1 by default."""
        ta1 = self._group(1).ta
        if ta1 is None:
            return DEFAULT_DI
        di = DI_TABLE[ta1 & 0x0F]
        if di == 0:
            raise MalformedData(f"TA1={ta1:02X}: DI is RFU")
        return di

    @property
    def f_max_hz(self) -> int:
        """Maximum clock frequency f(max) from TA1 (Table 7), 5 MHz by default."""
        ta1 = self._group(1).ta
        return DEFAULT_F_MAX_HZ if ta1 is None else _fi_entry(ta1)[1]

    @property
    def etu_clocks(self) -> Fraction:
        """Clock cycles per elementary time unit, Fi/Di (ISO 7816-3 §7.1)."""
        return Fraction(self.fi, self.di)

    @property
    def specific_mode(self) -> bool:
        """True when TA2 is present: the card runs in specific mode, no PPS (§8.3)."""
        return self._group(2).ta is not None

    @property
    def guard_time_n(self) -> int:
        """Extra guard time integer N from TC1, 0 by default (§8.3)."""
        tc1 = self._group(1).tc
        return 0 if tc1 is None else tc1

    @property
    def wi(self) -> int:
        """Waiting time integer WI from TC2 (T=0), 10 by default (§10.2)."""
        tc2 = self._group(2).tc
        return DEFAULT_WI if tc2 is None else tc2

    @property
    def ifsc(self) -> int:
        """T=1 information field size of the card from the first TA for T=1, 32 by default."""
        ta = self._t1_ta()
        return DEFAULT_IFSC if ta is None else ta

    def describe(self) -> str:
        """A short human summary, e.g. 'T=0, Fi=372 Di=1, 13 historical bytes'."""
        parts = [", ".join(f"T={t}" for t in self.protocols), f"Fi={self.fi} Di={self.di}"]
        if self.specific_mode:
            parts.append("specific mode")
        k = len(self.historical)
        parts.append(f"{k} historical byte{'' if k == 1 else 's'}")
        if self.convention is Convention.INVERSE:
            parts.append("inverse convention")
        return ", ".join(parts)

    def __repr__(self) -> str:
        return f"Atr({self.raw.hex(' ').upper()})"


def _fi_entry(ta1: int) -> tuple[int, int]:
    """(Fi, f(max)) for TA1; MalformedData on an RFU FI."""
    fi = FI_TABLE[ta1 >> 4]
    if fi == 0:
        raise MalformedData(f"TA1={ta1:02X}: FI is RFU")
    return fi, FMAX_HZ[ta1 >> 4]
