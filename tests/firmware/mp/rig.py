"""The rig the whole-firmware tests share: a running terminal on an in-memory link, with a
CPS-like card that checks PINs in slot 0 and a Vitale-like card in slot 1.

Its own module, apart from t_terminal's tests, so that a module using the rig loads only the
rig: the unix port's heap is capped like a Pico's, and every module loaded lives in it."""

import asyncio

import link
from display import TextDisplay
from keypad import KeyQueue
from support import ATR_CPS3, ATR_VITALE2, FakeSlotHw, Host, MemoryPort, case2
from terminal import Terminal

PIN = b"1357"
PUK = b"24682468"
PIN4 = link.PinField(4, 4, 0xFF, 8, link.PIN_ASCII)
PUK8 = link.PinField(8, 8, 0xFF, 8, link.PIN_ASCII)


class PinCard:
    """A CPS-like card OS behind the scripted line: VERIFY (PIN 01, PUK 02), CHANGE, RESET
    RETRY COUNTER P1 02 after the PUK (IAS-ECC), READ BINARY."""

    def __init__(self):
        self.pin = PIN
        self.tries = 3
        self.puk_verified = False

    def handler(self, hw, hdr):
        """Steps for a command header."""
        ins = hdr[1]
        if ins in (0x20, 0x24, 0x2C):
            fn = {0x20: self.verify_puk if hdr[3] == 0x02 else self.verify,
                  0x24: self.change,
                  0x2C: self.reset if hdr[2] == 0x02 else self.unblock}[ins]
            return [("send", bytes((ins,))), ("recv", hdr[4]), ("reply", fn)]
        if ins == 0xB0:
            return case2(0xB0, bytes(i & 0xFF for i in range(hdr[4] or 256)))
        return [("send", b"\x6d\x00")]

    @staticmethod
    def _strip(data):
        end = len(data)
        while end and data[end - 1] == 0xFF:
            end -= 1
        return bytes(data[:end])

    def _check(self, pin):
        if self.tries == 0:
            return b"\x69\x83"
        if pin == self.pin:
            self.tries = 3
            return b"\x90\x00"
        self.tries -= 1
        return bytes((0x63, 0xC0 | self.tries))

    def verify(self, data):
        """VERIFY: 8-byte FF-padded ASCII PIN."""
        return self._check(self._strip(data))

    def change(self, data):
        """CHANGE REFERENCE DATA: old || new, 8 bytes each."""
        sw = self._check(self._strip(data[:8]))
        if sw == b"\x90\x00":
            self.pin = self._strip(data[8:])
        return sw

    def verify_puk(self, data):
        """VERIFY P2 02: the PUK, unpadded."""
        self.puk_verified = self._strip(data) == PUK
        return b"\x90\x00" if self.puk_verified else b"\x63\xc9"

    def reset(self, data):
        """RESET RETRY COUNTER P1 02: the new PIN alone, once the PUK is verified."""
        if not self.puk_verified:
            return b"\x69\x82"
        self.pin, self.tries, self.puk_verified = self._strip(data), 3, False
        return b"\x90\x00"

    def unblock(self, data):
        """RESET RETRY COUNTER: PUK || new."""
        if self._strip(data[:8]) != PUK:
            return b"\x63\xc9"
        self.pin = self._strip(data[8:])
        self.tries = 3
        return b"\x90\x00"


class Recorder:
    """Display driver that keeps every screen."""

    def __init__(self):
        self.screens = []

    def render(self, lines):
        """Record."""
        self.screens.append(list(lines))


class Rig:
    """A running terminal with a CPS-like card in slot 0 and a Vitale-like card in slot 1."""

    def __init__(self, hello=True, power=True, chunk=0):
        self._hello = hello
        self._power = power
        self.port = MemoryPort()
        self.port.chunk = chunk
        self.card = PinCard()
        self.hw0 = FakeSlotHw(atr=ATR_CPS3)
        self.hw0.handler = self.card.handler
        self.hw1 = FakeSlotHw(atr=ATR_VITALE2)
        self.keys = KeyQueue()
        self.rec = Recorder()
        self.display = TextDisplay(self.rec)
        self.term = Terminal(self.port, [self.hw0, self.hw1], self.keys, self.display)
        self.host = Host(self.port)
        self.task = None

    async def __aenter__(self):
        return await self.start(self._hello, self._power)

    async def __aexit__(self, exc_type, exc, tb):
        await self.stop()
        return False

    async def start(self, hello=True, power=True):
        """Run the terminal; handshake and power the CPS card."""
        self.task = asyncio.create_task(self.term.run())
        for _ in range(3):
            await self.term.poll_once()
        if hello:
            ack = await self.host.request(link.Hello())
            assert isinstance(ack, link.HelloAck)
        if power:
            atr = await self.host.request(link.SlotRequest(link.POWER_ON, 0))
            assert isinstance(atr, link.Atr), atr
        return self

    async def stop(self):
        """Close the port; the terminal returns."""
        self.port.close()
        await asyncio.wait_for_ms(self.task, 2000)

    async def type(self, *entries):
        """For each prompt in turn: wait until it holds the keys, then press its keys."""
        seen = self.keys.prompts
        for keys in entries:
            while self.keys.prompts == seen or not self.keys.claimed:
                await asyncio.sleep_ms(1)
            seen = self.keys.prompts
            for k in keys:
                self.keys.push(k)

    def typing(self, *entries):
        """Type in the background."""
        return asyncio.create_task(self.type(*entries))

    def screens(self):
        """Every line ever rendered."""
        return [line for s in self.rec.screens for line in s]


def entry(pin):
    """Key names for a PIN followed by OK."""
    keys = [chr(b) for b in pin]
    keys.append("OK")
    return keys


def verify_msg(timeout_s=30, tries=3):
    """SECURE_VERIFY for the CPS PIN (reference 01) under the firmware's PIN CPS prompt."""
    return link.SecureVerify(0, 0x00, 0x20, 0x00, 0x01, timeout_s, link.PROMPT_PIN_CPS, tries,
                             PIN4)
