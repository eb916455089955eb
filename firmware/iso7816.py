"""ISO/IEC 7816-3 interface-device side of one slot: activation, ATR, PPS, T=0, T=1, deactivation."""
# Clause numbers are ISO/IEC 7816-3:2006. The slot hardware is injected (docs/firmware.md,
# "Slot hardware"): slot_hw.Rp2SlotHw on the Pico, a simulated line on the unix port.
# Timeouts are given to the hardware in card clock cycles, so they hold at any etu.
# 61xx and 6Cxx are returned to the host as they are: the host's protocol layer (apdu/protocol.py)
# issues GET RESPONSE and the Le retry, as it does over PC/SC.

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

_NULL = const(0x60)
_PPSS = const(0xFF)
_TS_DIRECT = const(0x3B)
_TS_INVERSE = const(0x3F)
_TS_INVERSE_AS_DIRECT = const(0x03)  # §8.1: an inverse-convention TS read in direct convention


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


class _Resynched(Exception):
    """T=1: the card was resynchronised (S(RESYNCH)); the APDU in progress was lost."""


class HardwareFault(CardError):
    """The interface chip refused or dropped activation (short circuit, overheat)."""


class AtrInfo:
    """What the reader needs from an ATR (§8.2): convention, TA1, TC1, TA2, TC2, protocols."""

    def __init__(self) -> None:
        self.ts = _TS_DIRECT
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


def _bits(y: int) -> int:
    return (y & 1) + ((y >> 1) & 1) + ((y >> 2) & 1) + ((y >> 3) & 1)


def atr_length(atr: "Buffer", n: int) -> int:
    """Full ATR length implied by its first n bytes, or 0 if more bytes are needed to know."""
    if n < 2:
        return 0
    pos = 2
    y = atr[1] >> 4
    tck = False
    while y:
        pos += _bits(y)
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
    if info.ts not in (_TS_DIRECT, _TS_INVERSE):
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


class CardSlot:
    """One slot's state machine and ISO 7816-3 engine over an injected slot hardware object."""

    def __init__(self, hw: "Any", index: int) -> None:
        self.hw = hw
        self.index = index
        self.state = EMPTY
        self.protocol = 0
        self.fidi = 0x11  # TA1 coding of the F and D in use
        self.info = AtrInfo()
        self.atr = bytearray(MAX_ATR)
        self.atr_len = 0
        self.wwt = 0  # work waiting time in clocks
        self.pps_status = "none"  # none | accepted | refused | failed | specific
        self._hdr = bytearray(5)
        self._pb = bytearray(2)
        self._pps = bytearray(6)
        # T=1 state (§11): sequence numbers, sizes, waiting times in clocks, block buffers.
        self.ifsc = T1_DEFAULT_IFSC
        self.ns = 0  # N(S) of our next I-block
        self.nr = 0  # N(S) we expect in the card's next I-block
        self.bwt = 0
        self.cwt = 0
        self.crc = False
        self.wtx_seen = 0  # S(WTX) requests answered (for tests and the bench)
        self.resynchs = 0
        self._t1tx = bytearray(3 + T1_IFSD + 2)  # NAD PCB LEN INF EDC
        self._t1rx = bytearray(3 + T1_IFSD + 2)
        self._t1tx_len = 0

    # -- presence --
    def set_present(self, present: bool) -> None:
        """Debounced card-detect result from the poller: EMPTY <-> PRESENT (deactivates)."""
        if present:
            if self.state == EMPTY:
                self.state = PRESENT
        else:
            if self.state in (POWERED, ERROR):
                self.hw.power_off()
            self.state = EMPTY
            self.atr_len = 0

    def fault(self) -> None:
        """The interface chip deactivated the card by itself (OFF line): ERROR until power off."""
        if self.state == POWERED:
            self.hw.power_off()
            self.state = ERROR

    # -- activation --
    async def power_on(self) -> bytes:
        """Cold reset (§6.2): ATR, then PPS to the fastest supported Fi/Di; returns the ATR."""
        if self.state == EMPTY and not self.hw.present():
            raise NoCard()
        if self.state in (POWERED, ERROR):
            self.hw.power_off()
            await self.hw.sleep_ms(CLASS_RETRY_MS)
        self.state = PRESENT
        # §6.2.4: start with the lowest class the board has (B, 3 V), then class A (5 V).
        last = None  # type: Any
        for class_a in (False, True):
            try:
                await self._cold_reset(class_a)
                break
            except CardMute as exc:
                last = exc
                self.hw.power_off()
                if not self.hw.present():
                    self.state = EMPTY
                    raise CardRemoved()
                await self.hw.sleep_ms(CLASS_RETRY_MS)
        else:
            self.state = ERROR
            raise last
        info = self.info
        try:
            await self._select_parameters(info, class_a)
        except CardError:
            self._deactivate_after_error()
            raise
        self.wwt = WT_FACTOR * info.wi * info.fi()
        if self.protocol == 1:
            try:
                await self._t1_start(info)
            except CardError:
                self._deactivate_after_error()
                raise
        self.state = POWERED
        return bytes(self.atr[:self.atr_len])

    def power_off(self) -> None:
        """Deactivation (§6.4): RST low, CLK stopped, I/O low, VCC off (the chip sequences it)."""
        if self.state in (POWERED, ERROR):
            self.hw.power_off()
        self.state = PRESENT if self.hw.present() else EMPTY

    async def _cold_reset(self, class_a: bool) -> None:
        hw = self.hw
        hw.set_rst(0)
        hw.set_inverse(False)
        hw.set_timing(DEFAULT_F, DEFAULT_D, 0)
        self.fidi = 0x11
        self.pps_status = "none"
        if not await hw.power_on(class_a):  # VCC, CLK, I/O in reception (§6.2.1)
            self.state = ERROR if hw.present() else EMPTY
            raise HardwareFault("activation refused")
        await hw.delay_clocks(RESET_LOW_CLOCKS)
        hw.set_rst(1)
        await self._read_atr()

    async def _read_atr(self) -> None:
        hw = self.hw
        atr = self.atr
        if await hw.recv(atr, 0, 1, ATR_FIRST_CLOCKS) != 1:
            raise CardMute("no ATR")
        if atr[0] == _TS_INVERSE_AS_DIRECT:
            hw.set_inverse(True)
            atr[0] = _TS_INVERSE
        elif atr[0] != _TS_DIRECT:
            self._deactivate_after_error()
            raise BadAtr("TS %02X" % atr[0])
        wt = INITIAL_WT_ETU * DEFAULT_F  # clocks at D = 1
        n = 1
        want = 2
        while True:
            if want > MAX_ATR:
                self._deactivate_after_error()
                raise BadAtr("ATR longer than %d bytes" % MAX_ATR)
            got = await hw.recv(atr, n, want - n, wt)
            n += got
            if n < want:
                self._check_removed()
                self._deactivate_after_error()
                raise BadAtr("ATR stopped after %d bytes" % n)
            total = atr_length(atr, n)
            if total == 0:
                want = n + 1
            elif total > n:
                want = total
            else:
                break
        self.atr_len = n
        try:
            self.info = parse_atr(memoryview(atr)[:n])
        except BadAtr:
            self._deactivate_after_error()
            raise

    async def _select_parameters(self, info: AtrInfo, class_a: bool) -> None:
        hw = self.hw
        guard = info.tc1 if info.tc1 != 255 else 0  # §8.3: N = 255 means minimum guard time
        if info.ta2 >= 0:  # specific mode (§8.3, TA2): no PPS, the card's values apply
            t = info.ta2 & 0x0F
            if t != 0:
                raise UnsupportedCard("specific mode T=%d" % t)
            if info.ta2 & 0x10 or info.ta1 < 0:
                f, d = DEFAULT_F, DEFAULT_D  # b5 set: implicit values; we use the defaults
            else:
                f, d = info.fi(), info.di()
                if not self._usable(info.ta1 >> 4, d):
                    raise UnsupportedCard("specific mode Fi=%d Di=%d" % (f, d))
                self.fidi = info.ta1
            hw.set_timing(f, d, guard)
            self.pps_status = "specific"
            self.protocol = 0
            return
        if info.offers(0):
            self.protocol = 0
        elif info.offers(1):
            self.protocol = 1  # issue 3 §2: T=1 when the card offers only T=1
        else:
            raise UnsupportedCard("neither T=0 nor T=1 offered")
        hw.set_timing(DEFAULT_F, DEFAULT_D, guard)
        fidi = self._best_fidi(info)
        if fidi == 0x11:
            return
        try:
            accepted = await self._pps_exchange(fidi)
        except CardRemoved:
            raise
        except CardError:
            # §9.3: an erroneous or missing PPS response: deactivate; we then cold reset
            # once more and stay at Fd/Dd without PPS.
            hw.power_off()
            await hw.sleep_ms(CLASS_RETRY_MS)
            await self._cold_reset(class_a)
            hw.set_timing(DEFAULT_F, DEFAULT_D, guard)
            self.pps_status = "failed"
            return
        if accepted:
            hw.set_timing(FI_TABLE[fidi >> 4], DI_TABLE[fidi & 0x0F], guard)
            self.fidi = fidi
            self.pps_status = "accepted"
        else:
            self.pps_status = "refused"

    def _usable(self, fi_index: int, d: int) -> bool:
        f = FI_TABLE[fi_index]
        if not f or not d or self.hw.clock_hz > FMAX_KHZ[fi_index] * 1000:
            return False
        return self.hw.supports(f, d)

    def _best_fidi(self, info: AtrInfo) -> int:
        # PPS1 proposes Fi with any Di up to the card's (§9.2); pick the smallest etu = F/D.
        if info.ta1 < 0:
            return 0x11
        fi_index = info.ta1 >> 4
        f = FI_TABLE[fi_index]
        best = 0x11
        best_etu = DEFAULT_F * 64  # compare F/D as F * 64 / D, integers only
        for di_index in range(1, 10):
            d = DI_TABLE[di_index]
            if d > info.di() or not self._usable(fi_index, d):
                continue
            etu = f * 64 // d
            if etu < best_etu:
                best, best_etu = (fi_index << 4) | di_index, etu
        return best

    async def _pps_exchange(self, fidi: int) -> bool:
        # §9.1-9.3: PPSS PPS0 PPS1 PCK; the echo accepts, a PPS0' without PPS1 refuses.
        hw = self.hw
        req = self._pps
        req[0] = _PPSS
        req[1] = 0x10 | self.protocol
        req[2] = fidi
        req[3] = req[0] ^ req[1] ^ req[2]
        hw.flush()
        if await hw.send(req, 0, 4) != 4:
            self._check_removed()
            raise CardProtocolError("PPS request not sent")
        wt = INITIAL_WT_ETU * DEFAULT_F
        rsp = bytearray(6)
        if await hw.recv(rsp, 0, 2, wt) != 2:
            self._check_removed()
            raise CardMute("no PPS response")
        if rsp[0] != _PPSS or (rsp[1] & 0x0F) != self.protocol:
            raise CardProtocolError("bad PPS response")
        extra = _bits((rsp[1] >> 4) & 0x07) + 1  # PPS1..PPS3 present bits, then PCK
        if await hw.recv(rsp, 2, extra, wt) != extra:
            self._check_removed()
            raise CardMute("truncated PPS response")
        x = 0
        for k in range(2 + extra):
            x ^= rsp[k]
        if x:
            raise CardProtocolError("PPS response PCK mismatch")
        if not rsp[1] & 0x10:
            return False  # PPS1' absent: Fd, Dd (§9.3)
        if rsp[2] != fidi:
            raise CardProtocolError("PPS1 not echoed")
        return True

    # -- T=0 --
    async def transmit(self, apdu: "Buffer", out: "Union[bytearray, memoryview]",
                       off: int = 0) -> int:
        """Send a short APDU (T=0 or T=1); write response + SW at out[off:]; return its length."""
        if self.state != POWERED:
            if self.state == EMPTY and not self.hw.present():
                raise NoCard()
            raise NotPowered()
        n = len(apdu)
        if n < 4:
            raise BadApdu("APDU of %d bytes" % n)
        if self.protocol == 1:
            return await self._t1_transmit(apdu, out, off)
        lc = 0
        le = 0
        if n == 5:
            le = apdu[4] or 256  # case 2S
        elif n > 5:
            lc = apdu[4]
            if lc == 0:
                raise BadApdu("extended length needs ENVELOPE over T=0")
            if n == 6 + lc:
                pass  # case 4S: Le is dropped; the card answers 61xx or 9000 (§12.2.4 mapping)
            elif n != 5 + lc:
                raise BadApdu("Lc %d does not match %d bytes" % (lc, n))
        if len(out) - off < MAX_RESPONSE:
            raise BadApdu("response buffer too small")
        hdr = self._hdr
        for k in range(4):
            hdr[k] = apdu[k]
        hdr[4] = lc if lc else (le & 0xFF)
        try:
            return await self._t0(hdr, apdu, lc, le, out, off)
        except CardError:
            self._deactivate_after_error()
            raise

    async def _t0(self, hdr: bytearray, apdu: "Buffer", lc: int, le: int,
                  out: "Union[bytearray, memoryview]", off: int) -> int:
        hw = self.hw
        wwt = self.wwt
        ins = hdr[1]
        pb = self._pb
        hw.flush()
        if await hw.send(hdr, 0, 5) != 5:
            self._check_removed()
            raise CardProtocolError("header not sent")
        sent = 0
        got = 0
        nulls = 0
        while True:
            if await hw.recv(pb, 0, 1, wwt) != 1:
                self._check_removed()
                raise CardMute("no procedure byte within WWT")
            p = pb[0]
            if p == _NULL:  # §10.3.3: NULL, wait again (restarts WT)
                nulls += 1
                if nulls > MAX_NULLS:
                    raise CardMute("more than %d NULL bytes" % MAX_NULLS)
                continue
            if (p & 0xF0) == 0x60 or (p & 0xF0) == 0x90:  # SW1; SW2 follows
                if await hw.recv(pb, 1, 1, wwt) != 1:
                    self._check_removed()
                    raise CardMute("no SW2")
                out[off + got] = p
                out[off + got + 1] = pb[1]
                return got + 2
            if p == ins:  # ACK: all remaining data bytes
                if sent < lc:
                    k = await hw.send(apdu, 5 + sent, lc - sent)
                    if k != lc - sent:
                        self._check_removed()
                        raise CardProtocolError("data not sent")
                    sent = lc
                elif got < le:
                    k = await hw.recv(out, off + got, le - got, wwt)
                    got += k
                    if got < le:
                        self._check_removed()
                        raise CardMute("response data stopped")
                else:
                    raise CardProtocolError("ACK with nothing left to transfer")
            elif p == ins ^ 0xFF:  # ~INS: one data byte
                if sent < lc:
                    if await hw.send(apdu, 5 + sent, 1) != 1:
                        self._check_removed()
                        raise CardProtocolError("data byte not sent")
                    sent += 1
                elif got < le:
                    if await hw.recv(out, off + got, 1, wwt) != 1:
                        self._check_removed()
                        raise CardMute("response byte missing")
                    got += 1
                else:
                    raise CardProtocolError("~INS with nothing left to transfer")
            else:
                raise CardProtocolError("procedure byte %02X" % p)

    # -- T=1 (§11) --
    async def _t1_start(self, info: AtrInfo) -> None:
        """Block parameters from the ATR, then S(IFS request) with our IFSD (§11.4.2)."""
        f = FI_TABLE[self.fidi >> 4]
        d = DI_TABLE[self.fidi & 0x0F]
        self.ifsc = info.ifsc
        self.crc = info.crc
        # §11.4.3: CWT = (11 + 2^CWI) etu; BWT = 11 etu + 2^BWI x 960 x Fd/f.
        self.cwt = (11 + (1 << info.cwi)) * f // d
        self.bwt = 11 * f // d + (1 << info.bwi) * 960 * DEFAULT_F
        self.ns = 0
        self.nr = 0
        tx = self._t1tx
        for _ in range(T1_MAX_RETRIES):
            tx[3] = T1_IFSD  # (an R-block sent meanwhile wrote its EDC there)
            try:
                pcb = await self._t1_block(0xC1, tx, 3, 1)
            except _Resynched:
                continue
            if pcb == 0xE1 and self._t1rx[2] == 1 and self._t1rx[3] == T1_IFSD:
                return
        raise CardProtocolError("no S(IFS response)")

    def _edc(self, buf: "Buffer", n: int) -> int:
        """LRC (§11.4.4) or CRC (ISO/IEC 13239, reflected 0x8408, preset FFFF) of buf[:n]."""
        if not self.crc:
            x = 0
            for k in range(n):
                x ^= buf[k]
            return x
        crc = 0xFFFF
        for k in range(n):
            crc ^= buf[k]
            for _ in range(8):
                crc = (crc >> 1) ^ 0x8408 if crc & 1 else crc >> 1
        return crc

    async def _t1_write(self, pcb: int, src: "Buffer", off: int, n: int) -> None:
        """Build NAD PCB LEN INF EDC in the send buffer (src may be it, at offset 3) and send."""
        tx = self._t1tx
        tx[0] = 0  # NAD: no addressing
        tx[1] = pcb
        tx[2] = n
        if src is not tx:
            for k in range(n):
                tx[3 + k] = src[off + k]
        await self._t1_resend(3 + n)

    async def _t1_resend(self, length: int) -> None:
        tx = self._t1tx
        edc = self._edc(tx, length)
        if self.crc:
            tx[length] = edc >> 8
            tx[length + 1] = edc & 0xFF
            length += 2
        else:
            tx[length] = edc
            length += 1
        self._t1tx_len = length
        self.hw.flush()
        if await self.hw.send(tx, 0, length) != length:
            self._check_removed()
            raise CardProtocolError("block not sent")

    async def _t1_read(self, wait: int) -> int:
        """Receive one block into _t1rx: 0 valid, 1 EDC/parity error, 2 other error, 3 nothing."""
        hw = self.hw
        rx = self._t1rx
        if await hw.recv(rx, 0, 1, wait) != 1:
            self._check_removed()
            return 3
        if await hw.recv(rx, 1, 2, self.cwt) != 2:
            self._check_removed()
            return 1  # §11.4.3: CWT exceeded or a parity error stopped the reception
        n = rx[2]
        if n == 0xFF:
            return 2
        tail = n + (2 if self.crc else 1)
        if await hw.recv(rx, 3, tail, self.cwt) != tail:
            self._check_removed()
            return 1
        edc = self._edc(rx, 3 + n)
        if self.crc:
            if rx[3 + n] != edc >> 8 or rx[4 + n] != edc & 0xFF:
                return 1
        elif rx[3 + n] != edc:
            return 1
        if rx[0] != 0 or n > T1_IFSD:
            return 2
        pcb = rx[1]
        if pcb & 0xC0 == 0x80 and (pcb & 0x2C or n):  # R-block: b6 0, error code 0..2, no INF
            return 2
        if not pcb & 0x80 and pcb & 0x1F:  # I-block: b5..b1 are 0
            return 2
        return 0

    async def _t1_block(self, pcb: int, src: "Buffer", off: int, n: int) -> int:
        """Send one block, return the PCB of the card's valid answer (in _t1rx).

        Card S-requests are answered here: WTX (the next wait is multiplied), IFS (new IFSC),
        ABORT (CardProtocolError). A bad or missing answer is asked again with an R-block
        (§11.6.3, at most 3 times); then RESYNCH; a card that never answers is CardMute.
        """
        await self._t1_write(pcb, src, off, n)
        rx = self._t1rx
        wait = self.bwt
        errors = 0
        silent = True
        wtx_in_row = 0
        while True:
            status = await self._t1_read(wait)
            wait = self.bwt
            if status == 0:
                rpcb = rx[1]
                if rpcb & 0xE0 != 0xC0:  # not an S-request from the card
                    return rpcb
                kind = rpcb & 0x1F
                if kind == 3 and rx[2] == 1:  # S(WTX request): BWT x INF for the next block
                    self.wtx_seen += 1
                    wtx_in_row += 1
                    if wtx_in_row > T1_MAX_WTX_IN_ROW:
                        raise CardMute("more than %d S(WTX) requests" % T1_MAX_WTX_IN_ROW)
                    mult = rx[3] or 1
                    await self._t1_write(0xE3, rx, 3, 1)
                    wait = self.bwt * min(mult, T1_MAX_WTX)
                elif kind == 1 and rx[2] == 1 and 0 < rx[3] < 0xFF:  # S(IFS request)
                    self.ifsc = rx[3]
                    await self._t1_write(0xE1, rx, 3, 1)
                elif kind == 2:  # S(ABORT request): end the chain, the APDU is lost
                    await self._t1_write(0xE2, rx, 3, 0)
                    raise CardProtocolError("card aborted the exchange")
                else:
                    status = 2
                if status == 0:
                    errors = 0
                    continue
            if status != 3:
                silent = False
            errors += 1
            if errors > T1_MAX_RETRIES:
                await self._t1_resynch(silent)
            # §11.6.3: ask again with R(N(R)) carrying the error; the card repeats its last
            # block (or, if it lost ours, answers with an R-block asking for it again).
            await self._t1_write(0x80 | (self.nr << 4) | (1 if status == 1 else 2), rx, 0, 0)

    async def _t1_resynch(self, silent: bool) -> None:
        """S(RESYNCH request) up to 3 times (§11.6.3.2); raises _Resynched, or the card is lost."""
        rx = self._t1rx
        for _ in range(T1_MAX_RETRIES):
            await self._t1_write(0xC0, rx, 0, 0)
            status = await self._t1_read(self.bwt)
            if status == 0 and rx[1] == 0xE0:
                self.ns = 0
                self.nr = 0
                self.ifsc = self.info.ifsc
                self.resynchs += 1
                raise _Resynched()
            if status != 3:
                silent = False
        if silent:
            raise CardMute("no T=1 block within BWT")
        raise CardProtocolError("T=1 errors, RESYNCH failed")

    async def _t1_transmit(self, apdu: "Buffer", out: "Union[bytearray, memoryview]",
                           off: int) -> int:
        if len(out) - off < MAX_RESPONSE:
            raise BadApdu("response buffer too small")
        try:
            try:
                return await self._t1_apdu(apdu, out, off)
            except _Resynched:
                return await self._t1_apdu(apdu, out, off)  # once more, from N(S) = 0
        except _Resynched:
            self._deactivate_after_error()
            raise CardProtocolError("T=1 resynchronised twice")
        except CardError:
            self._deactivate_after_error()
            raise

    async def _t1_apdu(self, apdu: "Buffer", out: "Union[bytearray, memoryview]",
                       off: int) -> int:
        """One APDU as I-blocks, chained to IFSC (§11.6.2); the answer chained back."""
        rx = self._t1rx
        total = len(apdu)
        pos = 0
        while True:  # our I-blocks
            chunk = min(self.ifsc, total - pos)
            more = pos + chunk < total
            pcb = (self.ns << 6) | (0x20 if more else 0)
            rpcb = await self._t1_block(pcb, apdu, pos, chunk)
            tries = 0
            while rpcb & 0xC0 == 0x80:  # R-block
                if more and (rpcb >> 4) & 1 != self.ns:
                    break  # acknowledges this chained block: next one
                tries += 1  # the card asks for our block again
                if tries > T1_MAX_RETRIES:
                    await self._t1_resynch(False)
                rpcb = await self._t1_block(pcb, apdu, pos, chunk)
            self.ns ^= 1
            if more:
                if rpcb & 0xC0 != 0x80:
                    raise CardProtocolError("PCB %02X while chaining" % rpcb)
                pos += chunk
                continue
            break
        got = 0
        while True:  # the card's I-blocks
            if rpcb & 0x80:
                raise CardProtocolError("PCB %02X instead of an I-block" % rpcb)
            n = rx[2]
            if (rpcb >> 6) & 1 == self.nr:
                if got + n > MAX_RESPONSE or got + n > T1_MAX_CHAIN:
                    raise CardProtocolError("response longer than %d" % MAX_RESPONSE)
                for k in range(n):
                    out[off + got + k] = rx[3 + k]
                got += n
                self.nr ^= 1
            # else: a repeated block we already have; acknowledge again
            if not rpcb & 0x20:
                if got < 2:
                    raise CardProtocolError("response without SW")
                return got
            rpcb = await self._t1_block(0x80 | (self.nr << 4), rx, 0, 0)
            tries = 0
            while rpcb & 0xC0 == 0x80:  # our R-block got lost: send it again
                tries += 1
                if tries > T1_MAX_RETRIES:
                    await self._t1_resynch(False)
                rpcb = await self._t1_block(0x80 | (self.nr << 4), rx, 0, 0)

    # -- error paths --
    def _check_removed(self) -> None:
        if not self.hw.present():
            self.hw.power_off()
            self.state = EMPTY
            self.atr_len = 0
            raise CardRemoved()
        if self.hw.fault():
            self.hw.power_off()
            self.state = ERROR
            raise HardwareFault("interface chip deactivated the card")

    def _deactivate_after_error(self) -> None:
        self.hw.power_off()
        if self.state != EMPTY:
            self.state = ERROR if self.hw.present() else EMPTY
