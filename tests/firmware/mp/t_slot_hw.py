"""RP2040 slot hardware on fake machine/rp2: pin levels, etu support, character coding."""

import asyncio

import machine
import pinmap
import slot_hw


def make():
    """Slot 0 on the fakes."""
    return slot_hw.Rp2SlotHw(0, pinmap.SLOTS[0])


def _line_word(c, inverse=False, parity_ok=True):
    """The RX word the PIO would push for a character (9 line bits in the top bits)."""
    if inverse:
        line = (~slot_hw._rev8(c) & 0xFF) | ((slot_hw._parity(c) ^ 1) << 8)
    else:
        line = c | (slot_hw._parity(c) << 8)
    if not parity_ok:
        line ^= 0x100
    return line << 23


def test_idle_levels_are_safe():
    hw = make()
    assert hw._cmdvcc.value() != pinmap.CMDVCC_ON  # slot off
    assert hw._rst.value() == 0 and hw._clk.duty_u16() == 0
    assert hw._clk.freq() == pinmap.CARD_CLK_HZ


async def test_power_on_and_off_drive_the_tda8035():
    hw = make()
    assert await hw.power_on(True)
    assert hw._cmdvcc.value() == pinmap.CMDVCC_ON and hw._vsel.value() == pinmap.VSEL_5V
    assert hw._clk.duty_u16() == 32768
    hw.power_off()
    assert hw._cmdvcc.value() != pinmap.CMDVCC_ON and hw._clk.duty_u16() == 0
    assert await hw.power_on(False)
    assert hw._vsel.value() != pinmap.VSEL_5V


async def test_fault_line_refuses_activation():
    hw = make()
    hw._off.reader = lambda: pinmap.OFF_ACTIVE
    assert not await hw.power_on(True)
    assert hw.fault()


def test_presence_follows_the_switch():
    hw = make()
    hw._pres.reader = lambda: pinmap.PRES_CARD
    assert hw.present()
    hw._pres.reader = lambda: 1 - pinmap.PRES_CARD
    assert not hw.present()


def test_supported_etus():
    hw = make()
    assert hw.supports(372, 1) and hw.supports(372, 4) and hw.supports(372, 12)
    assert hw.supports(512, 16)
    assert not hw.supports(372, 16)  # 23.25 clocks: too fast for the RX FIFO budget
    assert not hw.supports(372, 20)  # not an exact divider


def test_state_machine_frequency():
    hw = make()
    hw.set_timing(372, 4, 2)
    assert hw._tx.options["freq"] == 125_000_000 * 4 * 8 // (32 * 372)
    assert "set(pins, 0)" in hw._tx.execs


async def test_send_encodes_parity_and_guard():
    hw = make()
    hw.set_timing(372, 1, 3)
    await hw.send(b"\x3b\x01", 0, 2)
    w0, w1 = hw._tx.tx_words
    assert w0 & 0x1FF == (~(0x3B | (1 << 8))) & 0x1FF  # 3B has 5 ones: parity 1
    assert w1 & 0x1FF == (~0x101 & 0x1FF) and w0 >> 9 == 3  # 01: one 1, parity 1


async def test_recv_decodes_direct_inverse_and_stops_on_parity_error():
    hw = make()
    hw._pres.reader = lambda: pinmap.PRES_CARD
    buf = bytearray(4)
    hw._rx.rx_words = [_line_word(0x3B), _line_word(0x90)]
    assert await hw.recv(buf, 0, 2, 1000) == 2 and bytes(buf[:2]) == b"\x3b\x90"
    hw.set_inverse(True)
    hw._rx.rx_words = [_line_word(0x3F, inverse=True)]
    assert await hw.recv(buf, 0, 1, 1000) == 1 and buf[0] == 0x3F
    hw.set_inverse(False)
    hw._rx.rx_words = [_line_word(0x55, parity_ok=False)]
    assert await hw.recv(buf, 0, 1, 1000) == 0
    assert await hw.recv(buf, 0, 1, 400) == 0  # nothing arrives: times out


def test_inverse_ts_reads_as_03_in_direct():
    # ISO 7816-3 §8.1: TS = 3F sent in the inverse convention, decoded as direct, gives 03.
    line = _line_word(0x3F, inverse=True) >> 23
    assert line & 0xFF == 0x03


async def test_delay_clocks_waits():
    hw = make()
    await hw.delay_clocks(42_000)  # about 10.8 ms
    await asyncio.sleep_ms(0)
    assert machine.freq() > 0


def test_board_builds_every_device_from_the_pin_map():
    import board
    import port
    from support import MemoryPort

    # USB CDC on stdin/stdout where the port has asyncio streams; else a link given to it.
    streams = hasattr(asyncio, "StreamReader")
    b = board.Board() if streams else board.Board(MemoryPort())
    assert isinstance(b.port, port.StreamPort) == streams
    assert machine.freq() == pinmap.SYS_CLK_HZ
    assert len(b.slot_hw) == 2 and b.slot_hw[1].index == 1
    assert [r.id for r in b.keypad.rows] == list(pinmap.KEYPAD_ROWS)
    assert b.display.lines() == ["bifente", "pret"]
    assert len(b.background()) == 2
    for coro in b.background():
        coro.close()
