"""PIN entry: masked digits, CORR, CANCEL, OK limits, timeout, abort, wiping, PIN blocks."""

import asyncio

import link
import pinentry
from display import TextDisplay
from keypad import KeyQueue
from mptest import raises


class Recorder:
    """A display driver that keeps every screen rendered."""

    def __init__(self):
        self.screens = []

    def render(self, lines):
        """Record one screen."""
        self.screens.append(list(lines))


async def type_keys(keys, seq, gap_ms=0):
    """Wait until a prompt holds the queue, then press keys."""
    while not keys.claimed:
        await asyncio.sleep_ms(1)
    for k in seq:
        keys.push(k)
        await asyncio.sleep_ms(gap_ms)


def start_typing(keys, seq, gap_ms=0):
    """Type in the background; returns the task."""
    return asyncio.create_task(type_keys(keys, seq, gap_ms))


def setup():
    """Keys, a recording display and a pad."""
    keys = KeyQueue()
    rec = Recorder()
    return keys, rec, pinentry.PinPad(keys, TextDisplay(rec))


def screens_text(rec):
    """All rendered lines."""
    return [line for screen in rec.screens for line in screen]


async def test_masked_digits_and_ok():
    keys, rec, pad = setup()
    buf = bytearray(12)
    start_typing(keys, ["1", "3", "5", "7", "OK"])
    n = await pad.enter(buf, "Carte CPS", "Code porteur :", 4, 8, 2000)
    assert n == 4 and bytes(buf[:4]) == b"1357"
    assert rec.screens[-1][-2] == "****"
    for line in screens_text(rec):
        for digit in "1357":
            assert digit not in line, line
    assert not keys.claimed


async def test_corr_removes_last_digit():
    keys, _, pad = setup()
    buf = bytearray(12)
    start_typing(keys, ["1", "2", "3", "CORR", "9", "5", "OK"])
    n = await pad.enter(buf, "", "Code :", 4, 8, 2000)
    assert bytes(buf[:n]) == b"1295" and buf[n] == 0


async def test_ok_ignored_outside_length_limits():
    keys, _, pad = setup()
    buf = bytearray(12)
    start_typing(keys, ["1", "2", "OK", "3", "4", "5", "6", "7", "OK"])
    n = await pad.enter(buf, "", "Code :", 4, 6, 2000)
    assert bytes(buf[:n]) == b"123456"  # OK at 2 digits ignored; the 7th digit ignored


async def test_other_keys_ignored():
    keys, _, pad = setup()
    buf = bytearray(12)
    start_typing(keys, ["*", "1", "#", "F1", "2", "3", "4", "OK"])
    n = await pad.enter(buf, "", "Code :", 4, 4, 2000)
    assert bytes(buf[:n]) == b"1234"


async def test_cancel_wipes_buffer():
    keys, _, pad = setup()
    buf = bytearray(12)
    start_typing(keys, ["1", "2", "CANCEL"])
    with raises(pinentry.PromptCancelled):
        await pad.enter(buf, "", "Code :", 4, 8, 2000)
    assert buf == bytearray(12) and not keys.claimed


async def test_timeout_wipes_buffer():
    keys, _, pad = setup()
    buf = bytearray(12)
    start_typing(keys, ["1", "2"])
    with raises(pinentry.PromptTimeout):
        await pad.enter(buf, "", "Code :", 4, 8, 60)
    assert buf == bytearray(12)


async def test_host_abort():
    keys, _, pad = setup()
    buf = bytearray(12)
    start_typing(keys, ["1", "ABORT"])
    with raises(pinentry.PromptAborted):
        await pad.enter(buf, "", "Code :", 4, 8, 2000)
    assert buf == bytearray(12)


async def test_keys_typed_before_the_prompt_are_dropped():
    keys, _, pad = setup()
    for k in "1234":
        keys.push(k)  # nobody holds the queue: not stored
    buf = bytearray(12)
    start_typing(keys, ["5", "6", "7", "8", "OK"])
    n = await pad.enter(buf, "", "Code :", 4, 8, 2000)
    assert bytes(buf[:n]) == b"5678"


async def test_confirm_outcomes():
    keys, rec, pad = setup()
    start_typing(keys, ["1", "OK"])
    assert await pad.confirm("Consentement ?", 2000) == link.CONFIRM_OK
    assert rec.screens[-1] == ["Consentement ?", "OK / Annuler"]
    start_typing(keys, ["CANCEL"])
    assert await pad.confirm("Consentement ?", 2000) == link.CONFIRM_CANCEL
    assert await pad.confirm("Consentement ?", 50) == link.CONFIRM_TIMEOUT
    start_typing(keys, ["ABORT"])
    with raises(pinentry.PromptAborted):
        await pad.confirm("Consentement ?", 2000)


def test_pin_block_ascii_padded():
    out = bytearray(20)
    f = link.PinField(4, 8, 0xFF, 8, link.PIN_ASCII)
    end = pinentry.put_block(out, 5, bytearray(b"1234"), 4, f)
    assert end == 13 and bytes(out[5:13]) == b"1234\xff\xff\xff\xff"


def test_pin_block_bcd_and_unpadded():
    out = bytearray(20)
    f = link.PinField(4, 12, 0xFF, 8, link.PIN_BCD)
    end = pinentry.put_block(out, 0, bytearray(b"12345"), 5, f)
    assert end == 8 and bytes(out[:8]) == bytes.fromhex("12345FFFFFFFFFFF")
    g = link.PinField(4, 8, 0x00, 0, link.PIN_ASCII)
    assert pinentry.put_block(out, 0, bytearray(b"987654"), 6, g) == 6
    assert f.block_len(5) == 8 and g.block_len(6) == 6


def test_constant_time_compare():
    a = bytearray(b"1234\x00\x00")
    assert pinentry.same(a, 4, bytearray(b"1234\x00\x00"), 4)
    assert not pinentry.same(a, 4, bytearray(b"1235\x00\x00"), 4)
    assert not pinentry.same(a, 4, bytearray(b"12345\x00"), 5)


def test_wipe():
    b = bytearray(b"123456")
    pinentry.wipe(b)
    assert b == bytearray(6)
