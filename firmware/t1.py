"""ISO/IEC 7816-3 §11: the T=1 block protocol of a slot (I-, R- and S-blocks, chaining, WTX)."""
# A mixin of iso7816's slot (slot.CardSlot): it works on the slot's buffers and timings, kept
# in CardSlot so that one preallocated object holds every byte a slot needs.

from micropython import const

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Optional, Union

    Buffer = Union[bytes, bytearray, memoryview]

from iso7816 import (
    AtrInfo, BadApdu, CardError, CardMute, CardProtocolError, DEFAULT_F, DI_TABLE, FI_TABLE,
    MAX_RESPONSE, T1_IFSD, T1_MAX_CHAIN, T1_MAX_RETRIES, T1_MAX_WTX, T1_MAX_WTX_IN_ROW,
)


class _Resynched(Exception):
    """T=1: the card was resynchronised (S(RESYNCH)); the APDU in progress was lost."""


class T1:
    """T=1 for CardSlot: S(IFS) at power on, APDU exchange, error recovery and RESYNCH."""

    if TYPE_CHECKING:  # set by CardSlot.__init__; declared here for mypy only
        hw = None  # type: Any
        fidi = 0  # type: int
        info = None  # type: Any
        ifsc = 0  # type: int
        ns = 0  # type: int
        nr = 0  # type: int
        bwt = 0  # type: int
        cwt = 0  # type: int
        crc = False  # type: bool
        wtx_seen = 0  # type: int
        resynchs = 0  # type: int
        _t1tx = bytearray()  # type: bytearray
        _t1rx = bytearray()  # type: bytearray
        _t1tx_len = 0  # type: int

        def _check_removed(self) -> None: ...

        def _deactivate_after_error(self) -> None: ...

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
