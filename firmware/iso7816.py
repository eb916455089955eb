"""ISO/IEC 7816-3 for the interface device: slot states, timings, tables, errors, the ATR."""
# Clause numbers are ISO/IEC 7816-3:2006. The vocabulary the slot engine (slot.py: activation,
# PPS, T=0; t1.py: T=1) and the terminal share, and the ATR parser.

from micropython import const

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Optional, Union

    Buffer = Union[bytes, bytearray, memoryview]

# Slot states (habit 7). Same numbers as link.SLOT_*: the status answer is the state itself.
EMPTY = const(0)
PRESENT = const(1)
POWERED = const(2)
ERROR = const(3)

# --- Timing, in card clock cycles -----------------------------------------------------------------
RESET_LOW_CLOCKS = const(42_000)  # §6.2.2: RST low >= 400 clocks (tb); NXP's TDA8035 driver: 42 000
ATR_FIRST_CLOCKS = const(40_000)  # §6.2.2: the ATR starts 400..40 000 clocks after RST rises (tf)
INITIAL_WT_ETU = const(9600)  # §7.2/§8.1: <= 9600 etu between ATR characters; also PPS (§9.1)
DEFAULT_F = const(372)  # §8.3: Fd
DEFAULT_D = const(1)  # §8.3: Dd
DEFAULT_WI = const(10)  # §10.2: WI when TC2 is absent
WT_FACTOR = const(960)  # §10.2: WT = WI x 960 x Fi / f  (work waiting time, T=0)
MAX_NULLS = const(1000)  # NULL (60) bytes tolerated in one command before the card counts as mute
CLASS_RETRY_MS = const(10)  # §6.2.4: deactivated at least 10 ms before trying the next class
MAX_ATR = const(33)  # §8.2.1: TS + at most 32 characters
MAX_RESPONSE = const(258)  # 256 data bytes + SW1 SW2
# T=1 (§11). Times in clocks are worked out from these at power on.
T1_IFSD = const(254)  # §11.4.2: the largest information field we take; sent in S(IFS request)
T1_DEFAULT_IFSC = const(32)  # §11.4.2: IFSC when TA3 is absent
T1_DEFAULT_BWI = const(4)  # §11.4.3: TB3 absent
T1_DEFAULT_CWI = const(13)
T1_MAX_RETRIES = const(3)  # §11.6.3: a block is repeated at most this many times, then RESYNCH
T1_MAX_WTX = const(255)
T1_MAX_WTX_IN_ROW = const(60)  # S(WTX) requests for one block before the card counts as mute
T1_MAX_CHAIN = const(1024)  # a card that chains more than this is broken (APDU + SW <= 258)

# ISO 7816-3 Table 7 (Fi by FI; 0 = RFU) and the matching f(max) in kHz.
FI_TABLE = (372, 372, 558, 744, 1116, 1488, 1860, 0, 0, 512, 768, 1024, 1536, 2048, 0, 0)
FMAX_KHZ = (4000, 5000, 6000, 8000, 12000, 16000, 20000, 0, 0, 5000, 7500, 10000, 15000, 20000,
            0, 0)
# ISO 7816-3 Table 8 (Di by DI; 0 = RFU).
DI_TABLE = (0, 1, 2, 4, 8, 16, 32, 64, 12, 20, 0, 0, 0, 0, 0, 0)

TS_DIRECT = const(0x3B)
TS_INVERSE = const(0x3F)
TS_INVERSE_AS_DIRECT = const(0x03)  # §8.1: an inverse-convention TS read in direct convention


class CardError(Exception):
    """Base of the slot's typed errors."""


class NoCard(CardError):
    """No card in the slot."""


class NotPowered(CardError):
    """The card is not powered (POWER_ON first)."""


class CardMute(CardError):
    """The card did not answer within the waiting time; it has been deactivated."""


class CardRemoved(CardError):
    """The card left the slot during an exchange; the slot is EMPTY."""


class CardProtocolError(CardError):
    """The card broke the character or T=0 protocol; it has been deactivated."""


class BadAtr(CardError):
    """The ATR is not ISO 7816-3; the card has been deactivated."""


class UnsupportedCard(CardError):
    """The card needs something this terminal does not do (T=1 only, specific-mode F/D)."""


class BadApdu(CardError):
    """The command cannot go over the protocol (T=0: extended length, inconsistent Lc)."""


class HardwareFault(CardError):
    """The interface chip refused or dropped activation (short circuit, overheat)."""


class AtrInfo:
    """What the reader needs from an ATR (§8.2): convention, TA1, TC1, TA2, TC2, protocols."""

    def __init__(self) -> None:
        self.ts = TS_DIRECT
        self.ta1 = -1  # -1: absent (Fd, Dd)
        self.tc1 = 0  # extra guard time N
        self.ta2 = -1  # present: specific mode (§8.3)
        self.wi = DEFAULT_WI
        self.protocols = 0  # bit T set for each offered protocol; 0 means T=0 only
        self.first_protocol = 0
        self.ifsc = T1_DEFAULT_IFSC  # §11.4.2: first TA for T=1 (TA3); only for T=1
        self.bwi = T1_DEFAULT_BWI  # §11.4.3: first TB for T=1, high nibble
        self.cwi = T1_DEFAULT_CWI  # §11.4.3: first TB for T=1, low nibble
        self.crc = False  # §11.4.4: first TC for T=1, bit 1: CRC instead of LRC
        self.length = 0

    def fi(self) -> int:
        """Fi from TA1 (372 by default)."""
        return FI_TABLE[self.ta1 >> 4] if self.ta1 >= 0 else DEFAULT_F

    def di(self) -> int:
        """Di from TA1 (1 by default)."""
        return DI_TABLE[self.ta1 & 0x0F] if self.ta1 >= 0 else DEFAULT_D

    def offers(self, t: int) -> bool:
        """True if protocol T is offered (T=0 when no TD1)."""
        return bool(self.protocols & (1 << t)) if self.protocols else t == 0


def bit_count(y: int) -> int:
    return (y & 1) + ((y >> 1) & 1) + ((y >> 2) & 1) + ((y >> 3) & 1)


def atr_length(atr: "Buffer", n: int) -> int:
    """Full ATR length implied by its first n bytes, or 0 if more bytes are needed to know."""
    if n < 2:
        return 0
    pos = 2
    y = atr[1] >> 4
    tck = False
    while y:
        pos += bit_count(y)
        if not y & 0x8:
            break
        if pos > n:
            return 0
        td = atr[pos - 1]
        if td & 0x0F:
            tck = True  # §8.2.5: TCK absent only when T=0 alone is indicated
        y = td >> 4
    return pos + (atr[1] & 0x0F) + (1 if tck else 0)


def parse_atr(atr: "Buffer") -> AtrInfo:
    """Parse a complete ATR (TS already in direct coding); BadAtr on anything malformed."""
    n = len(atr)
    if n < 2 or n > MAX_ATR:
        raise BadAtr("ATR length %d" % n)
    info = AtrInfo()
    info.ts = atr[0]
    if info.ts not in (TS_DIRECT, TS_INVERSE):
        raise BadAtr("TS %02X" % info.ts)
    pos = 2
    y = atr[1] >> 4
    i = 1
    tck = False
    t_prev = -1  # protocol announced by TD(i-1)
    t1_seen = False
    while True:
        vals = [-1, -1, -1, -1]
        for bit in range(4):
            if y & (1 << bit):
                if pos >= n:
                    raise BadAtr("truncated interface bytes")
                vals[bit] = atr[pos]
                pos += 1
        ta, tb, tc, td = vals
        if i == 1:
            info.ta1 = ta
            info.tc1 = tc if tc >= 0 else 0
        elif i == 2:
            info.ta2 = ta
            if tc >= 0:
                if tc == 0:
                    raise BadAtr("TC2=00 (WI=0 is RFU, §10.2)")
                info.wi = tc
        elif t_prev == 1 and not t1_seen:  # §11.4: the first TA/TB/TC for T=1 (i >= 3)
            t1_seen = True
            if ta >= 0:
                if ta == 0 or ta == 0xFF:
                    raise BadAtr("IFSC %d (§11.4.2: 1..254)" % ta)
                info.ifsc = ta
            if tb >= 0:
                info.bwi = tb >> 4
                info.cwi = tb & 0x0F
                if info.bwi > 9:
                    raise BadAtr("BWI %d is RFU (§11.4.3)" % info.bwi)
            if tc >= 0:
                info.crc = bool(tc & 1)
        if td < 0:
            break
        t = td & 0x0F
        if t != 0:
            tck = True
        if t != 15:
            if not info.protocols:
                info.first_protocol = t
            info.protocols |= 1 << t
        elif i == 1:
            raise BadAtr("TD1 indicates T=15 (§8.2.3)")
        t_prev = t
        y = td >> 4
        i += 1
    if info.ta1 >= 0 and (not FI_TABLE[info.ta1 >> 4] or not DI_TABLE[info.ta1 & 0x0F]):
        raise BadAtr("TA1 %02X is RFU (Tables 7, 8)" % info.ta1)
    pos += atr[1] & 0x0F
    if tck:
        pos += 1
    if pos != n:
        raise BadAtr("ATR length %d, structure says %d" % (n, pos))
    if tck:
        x = 0
        for k in range(1, n):
            x ^= atr[k]
        if x:
            raise BadAtr("TCK mismatch (§8.2.5)")
    info.length = n
    return info
