"""RP2040 slot hardware: TDA8035 control pins, PWM card clock, PIO open-drain card I/O line."""
# Implements the slot hardware seam iso7816.CardSlot drives (docs/firmware.md). The TDA8035
# sequences activation and deactivation itself (hardware/README.md, "Activation").
# Limits, stated plainly: the PIO programs neither signal a parity error on reception nor
# repeat a character the card rejects (ISO 7816-3 §7.3); a parity error ends the exchange.

import asyncio
import time

import machine
import rp2
from micropython import const

import pinmap

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Union

    from rp2.asm_pio import *  # noqa: F403 (the PIO assembler's names, for the type checker)

_SM_CYCLES_PER_ETU = const(8)
# Software must keep up with the 8-deep RX FIFO: one character = 12 etu >= 372 card clocks.
MIN_ETU_CLOCKS = const(31)


@rp2.asm_pio(set_init=rp2.PIO.IN_HIGH, out_init=rp2.PIO.IN_HIGH,
             out_shiftdir=rp2.PIO.SHIFT_RIGHT, fifo_join=rp2.PIO.JOIN_TX)
def _tx_program() -> None:
    # Word = 9 inverted line bits (1 = drive low) | guard count << 9. 8 cycles per etu.
    pull(block)
    set(pindirs, 1)[6]  # start bit: drive low
    set(x, 8)
    label("bit")
    out(pindirs, 1)[6]  # data bits then parity
    jmp(x_dec, "bit")
    set(pindirs, 0)[7]  # release: guard time
    out(y, 23)
    label("guard")
    jmp(y_dec, "guard")[7]  # 1 + N extra etu


@rp2.asm_pio(in_shiftdir=rp2.PIO.SHIFT_RIGHT, fifo_join=rp2.PIO.JOIN_RX)
def _rx_program() -> None:
    # Sample 9 bits in the middle of each etu; the word's top 9 bits are the line levels.
    wait(0, pin, 0)  # start bit edge
    set(x, 8)[10]  # 1.5 etu to the middle of bit 0
    label("bit")
    in_(pins, 1)[6]
    jmp(x_dec, "bit")
    push(block)
    wait(1, pin, 0)  # line back high before the next start bit


def _rev8(b: int) -> int:
    r = 0
    for _ in range(8):
        r = (r << 1) | (b & 1)
        b >>= 1
    return r


def _parity(b: int) -> int:
    p = 0
    while b:
        p ^= b & 1
        b >>= 1
    return p


class Rp2SlotHw:
    """One slot: TDA8035 pins from pinmap.SLOTS[index], PIO0 state machines 2*index, 2*index+1."""

    def __init__(self, index: int, pins: tuple) -> None:
        pres, off, clk, io, rst, cmdvcc, vsel = pins
        pin = machine.Pin
        self.index = index
        self.clock_hz = pinmap.CARD_CLK_HZ
        self.min_etu_clocks = MIN_ETU_CLOCKS
        self._pres = pin(pres, pin.IN, pin.PULL_UP)
        self._off = pin(off, pin.IN, pin.PULL_UP)
        self._rst = pin(rst, pin.OUT, value=0)
        self._cmdvcc = pin(cmdvcc, pin.OUT, value=1 - pinmap.CMDVCC_ON)
        self._vsel = pin(vsel, pin.OUT, value=1 - pinmap.VSEL_5V)
        self._io = pin(io, pin.IN)
        self._clk = machine.PWM(pin(clk))
        self._clk.freq(pinmap.CARD_CLK_HZ)
        self._clk.duty_u16(0)
        self._powered = False
        self._inverse = False
        self._guard = 0
        self._etu_us = 96
        sm = pinmap.CARD_PIO * 4 + 2 * index
        self._tx = rp2.StateMachine(sm)
        self._rx = rp2.StateMachine(sm + 1)
        self.set_timing(372, 1, 0)

    # -- seam: state --
    def present(self) -> bool:
        """Card-detect switch closed."""
        return self._pres.value() == pinmap.PRES_CARD

    def fault(self) -> bool:
        """OFFN low while powered: the TDA8035 deactivated the card (removal, short, heat)."""
        return self._powered and self._off.value() == pinmap.OFF_ACTIVE

    def supports(self, f: int, d: int) -> bool:
        """True if etu = F/D card clocks is an exact PIO divider and slow enough for software."""
        return (pinmap.CARD_CLK_DIV * f) % (d * _SM_CYCLES_PER_ETU) == 0 and \
            f >= MIN_ETU_CLOCKS * d

    # -- seam: contacts --
    async def power_on(self, class_a: bool) -> bool:
        """Select 5 V / 3 V, start the clock, CMDVCCN low; True once OFFN shows no fault."""
        self._vsel.value(pinmap.VSEL_5V if class_a else 1 - pinmap.VSEL_5V)
        self._rst.value(0)
        self._clk.duty_u16(32768)
        self._cmdvcc.value(pinmap.CMDVCC_ON)
        await asyncio.sleep_ms(4)  # AN10997: up to 3.1 ms clock check + 320 us sequencing
        self._powered = True
        self._rx.active(1)
        return self._off.value() != pinmap.OFF_ACTIVE

    def power_off(self) -> None:
        """CMDVCCN high: the TDA8035 runs RST low, CLK low, I/O low, VCC off (§6.4)."""
        self._cmdvcc.value(1 - pinmap.CMDVCC_ON)
        self._rst.value(0)
        self._rx.active(0)
        self._tx.active(0)
        self._clk.duty_u16(0)
        self._powered = False

    def set_rst(self, level: int) -> None:
        """Drive RSTIN (copied to the card's RST while active)."""
        self._rst.value(level)

    def set_inverse(self, inverse: bool) -> None:
        """Decode and encode characters in the inverse convention (§8.1)."""
        self._inverse = inverse

    def set_timing(self, f: int, d: int, guard: int) -> None:
        """etu = F/(D f); guard = N extra etu after each character sent (TC1)."""
        sm_freq = pinmap.SYS_CLK_HZ * d * _SM_CYCLES_PER_ETU // (pinmap.CARD_CLK_DIV * f)
        self._etu_us = f * 1_000_000 // (d * self.clock_hz) + 1
        self._guard = guard
        io = self._io
        self._tx.init(_tx_program, freq=sm_freq, set_base=io, out_base=io)
        self._tx.exec("set(pins, 0)")  # output latch low: pindir 1 drives low (open drain)
        self._rx.init(_rx_program, freq=sm_freq, in_base=io)
        if self._powered:
            self._rx.active(1)

    def flush(self) -> None:
        """Drop characters already received."""
        while self._rx.rx_fifo():
            self._rx.get()

    # -- seam: time --
    async def delay_clocks(self, n: int) -> None:
        """Wait at least n card clock cycles."""
        us = n * 1_000_000 // self.clock_hz + 1
        if us < 2000:
            time.sleep_us(us)
        else:
            await asyncio.sleep_ms(us // 1000 + 1)

    async def sleep_ms(self, ms: int) -> None:
        """Yield to other tasks for ms milliseconds."""
        await asyncio.sleep_ms(ms)

    # -- seam: characters --
    async def send(self, buf: "Union[bytes, bytearray, memoryview]", off: int, n: int) -> int:
        """Send buf[off:off+n] with even parity and the guard time; returns n."""
        self._rx.active(0)  # the line is shared: do not receive our own characters
        self._tx.active(1)
        for i in range(n):
            c = buf[off + i]
            if self._inverse:
                line = (~_rev8(c) & 0xFF) | ((_parity(c) ^ 1) << 8)
            else:
                line = c | (_parity(c) << 8)
            while self._tx.tx_fifo() >= 8:
                await asyncio.sleep_ms(0)
            self._tx.put((~line & 0x1FF) | (self._guard << 9))
        while self._tx.tx_fifo():
            await asyncio.sleep_ms(0)
        time.sleep_us(self._etu_us * (12 + self._guard))  # last character and its guard time
        self._tx.active(0)
        self._rx.restart()
        self._rx.active(1)
        return n

    async def recv(self, buf: "Union[bytearray, memoryview]", off: int, n: int,
                   timeout_clk: int) -> int:
        """Receive up to n characters, each within timeout_clk clocks of the previous one."""
        wait_us = timeout_clk * 1_000_000 // self.clock_hz + 1
        got = 0
        while got < n:
            start = time.ticks_us()
            while not self._rx.rx_fifo():
                if not self.present() or time.ticks_diff(time.ticks_us(), start) > wait_us:
                    return got
                await asyncio.sleep_ms(0)
            line = self._rx.get() >> 23
            if self._inverse:
                c = _rev8(~line & 0xFF)
                ok = _parity(line & 0x1FF) == 1
            else:
                c = line & 0xFF
                ok = _parity(line & 0x1FF) == 0
            if not ok:
                return got  # parity error: no repetition support (see the note at the top)
            buf[off + got] = c
            got += 1
        return got
