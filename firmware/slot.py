"""ISO/IEC 7816-3 interface-device side of one slot: activation, PPS, T=0, deactivation."""
# Clause numbers are ISO/IEC 7816-3:2006. The slot hardware is injected (docs/firmware.md,
# "Slot hardware"): slot_hw.Rp2SlotHw on the Pico, a simulated line on the unix port.
# Timeouts are given to the hardware in card clock cycles, so they hold at any etu.
# 6Cxx to a case 2 command is handled here, as §12.2.3 (case 2S.3) gives it to the transport
# layer: the command goes again with P3 = SW2, without a round trip to the host. 61xx goes back
# to the host as it is: its protocol layer (apdu/protocol.py) issues GET RESPONSE, as it does
# over PC/SC (and the Le retry too, for a reader that returns 6Cxx). T=1 is t1.py's.

from micropython import const

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Optional, Union

    Buffer = Union[bytes, bytearray, memoryview]

from iso7816 import (
    ATR_FIRST_CLOCKS, AtrInfo, BadApdu, BadAtr, CLASS_RETRY_MS, CardError, CardMute,
    CardProtocolError, CardRemoved, DEFAULT_D, DEFAULT_F, DI_TABLE, EMPTY, ERROR, FI_TABLE,
    FMAX_KHZ, HardwareFault, INITIAL_WT_ETU, MAX_ATR, MAX_NULLS, MAX_RESPONSE, NoCard, NotPowered,
    POWERED, PRESENT, RESET_LOW_CLOCKS, T1_DEFAULT_IFSC, T1_IFSD, TS_DIRECT, TS_INVERSE,
    TS_INVERSE_AS_DIRECT, UnsupportedCard, WT_FACTOR, atr_length, bit_count, parse_atr,
)
from t1 import T1

_NULL = const(0x60)
_PPSS = const(0xFF)


class CardSlot(T1):
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
        if atr[0] == TS_INVERSE_AS_DIRECT:
            hw.set_inverse(True)
            atr[0] = TS_INVERSE
        elif atr[0] != TS_DIRECT:
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
            self.protocol = 1  # docs/firmware.md: T=1 when the card offers only T=1
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
        extra = bit_count((rsp[1] >> 4) & 0x07) + 1  # PPS1..PPS3 present bits, then PCK
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
            r = await self._t0(hdr, apdu, lc, le, out, off)
            if n == 5 and r == 2 and out[off] == 0x6C:
                # §12.2.3 case 2S.3: Ne refused, the card tells the length it has (Na = SW2);
                # the transport layer sends the command again with P3 = Na (one TPDU more
                # on the wire, no round trip to the host for it).
                na = out[off + 1]
                hdr[4] = na
                # §7.2 wants 16 etu between the card's SW2 and our header: as after an ACK,
                # that time is MicroPython's between recv and send (docs/firmware.md, Limits).
                r = await self._t0(hdr, apdu, 0, na or 256, out, off)
            return r
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
