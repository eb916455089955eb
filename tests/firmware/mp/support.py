"""Test doubles at the firmware's seams: a scripted card behind the slot hardware, a memory port."""
# They behave like the real thing at the seam (STYLE habit 10): the card answers only what an
# ISO 7816-3 card would send, byte by byte, and the port is a byte stream.

import asyncio
import json
import os

import link

CLOCK_HZ = 3_906_250
ATR_CPS3 = bytes.fromhex("3BAC00402A001225006480000310009000")
ATR_VITALE2 = bytes.fromhex("3B751300004409EA9000")
ATR_CPS4 = bytes.fromhex("3B9B18800100122500648004010000904400")[:17]
ATR_FAST = bytes.fromhex("3B1096")  # TA1 = 96: Fi 512, Di 32, T=0 implicit
ATR_T1_ONLY = bytes.fromhex("3B800181")  # TD1 = 01: T=1 only; TCK
ATR_SPECIFIC = bytes.fromhex("3B90131000")  # TA2 = 00: specific mode, T=0, TA1 values apply
ATR_T2_ONLY = bytes.fromhex("3B800282")  # TD1 = 02: neither T=0 nor T=1


def t1_atr(ta3=None, tb3=None, tc3=None, hist=b"", ta1=None):
    """A T=1-only ATR: [TA1,] TD1 = 81 (T=1, TD2 follows), TD2 announcing TA3/TB3/TC3, TCK."""
    y = (0x10 if ta3 is not None else 0) | (0x20 if tb3 is not None else 0) | (
        0x40 if tc3 is not None else 0)
    body = bytearray((0x80 | len(hist),))
    if ta1 is not None:
        body[0] |= 0x10
        body.append(ta1)
    body += bytes((0x81, y | 0x01))
    for v in (ta3, tb3, tc3):
        if v is not None:
            body.append(v)
    body += hist
    x = 0
    for b in body:
        x ^= b
    return b"\x3b" + bytes(body) + bytes((x,))


def load_vectors():
    """docs/link-vectors.json from the repo (unix port) or the FS root (wasm runner)."""
    for path in (os.getenv("BIFENTE_VECTORS") if hasattr(os, "getenv") else None,
                 "docs/link-vectors.json", "/link-vectors.json", "../../../docs/link-vectors.json"):
        if not path:
            continue
        try:
            with open(path) as f:
                return json.load(f)
        except OSError:
            continue
    raise OSError("link-vectors.json not found")


def run_card_program(card, hdr):
    """Default card behaviour: 90 00 to anything (tests override with programs or a handler)."""
    return [("send", b"\x90\x00")]


class FakeSlotHw:
    """Slot hardware with a scripted card on the I/O line (the seam slot.CardSlot drives).

    `programs` is a list of step lists, one per command header the card receives; a step is
    ("send", bytes), ("recv", n), ("reply", fn(data) -> bytes), ("mute",) or ("remove",).
    When it is empty, `handler(card, header) -> steps` decides (default: 90 00).
    """

    def __init__(self, atr=ATR_CPS3, pps="accept", present=True, mute_class_b=False,
                 min_etu_clocks=31):
        self.clock_hz = CLOCK_HZ
        self.min_etu_clocks = min_etu_clocks
        self.atr = atr
        self.pps = pps  # accept | refuse | mute | bad
        self.card_present = present
        self.mute_class_b = mute_class_b
        self.mute_always = False
        self.refuse_power = False
        self.fault_flag = False
        self.powered = False
        self.class_a = False
        self.rst = 0
        self.inverse = False
        self.timing = (372, 1, 0)
        self.out = bytearray()  # card -> reader, not read yet
        self.received = bytearray()  # every byte the reader sent
        self.timeouts = []  # timeout_clk of every recv call
        self.log = []  # power, rst, timing events
        self.programs = []
        self.handler = run_card_program
        self.commands = []  # (header, data) per command the card saw
        self._phase = "off"
        self._collect = bytearray()
        self._steps = []
        self._need = 0
        self._data = bytearray()
        self.pps_seen = 0
        self.t1 = None  # a T1Card: blocks after the ATR go to it

    # -- seam --
    def present(self):
        """Card-detect switch."""
        return self.card_present

    def fault(self):
        """Interface chip fault line."""
        return self.fault_flag

    def supports(self, f, d):
        """Any etu of at least min_etu_clocks clocks."""
        return f >= self.min_etu_clocks * d

    async def power_on(self, class_a):
        """Activate (the chip's sequence); False if the chip refuses."""
        self.log.append("power_on " + ("A" if class_a else "B"))
        if self.refuse_power or not self.card_present:
            return False
        self.powered = True
        self.class_a = class_a
        self._phase = "reset"
        return True

    def power_off(self):
        """Deactivate."""
        self.log.append("power_off")
        self.powered = False
        self.rst = 0
        self.out = bytearray()
        self._phase = "off"

    def set_rst(self, level):
        """RST; a rising edge while powered makes the card send its ATR."""
        self.log.append(f"rst {level}")
        if level and not self.rst and self.powered:
            if not self.mute_always and not (self.mute_class_b and not self.class_a):
                self.out += self.atr
                self._phase = "idle"
                if self.t1 is not None:
                    self.t1.reset()
            else:
                self._phase = "mute"
        self.rst = level

    def set_inverse(self, inverse):
        """Convention."""
        self.inverse = inverse

    def set_timing(self, f, d, guard):
        """Record the etu parameters."""
        self.timing = (f, d, guard)
        self.log.append(f"timing {f} {d} {guard}")

    def flush(self):
        """Drop unread card bytes."""
        self.out = bytearray()

    async def delay_clocks(self, n):
        """Record, yield."""
        self.log.append(f"delay {n}")
        await asyncio.sleep_ms(0)

    async def sleep_ms(self, ms):
        """Yield without really waiting."""
        await asyncio.sleep_ms(0)

    async def send(self, buf, off, n):
        """The reader sends n bytes; the card reacts to each."""
        for i in range(n):
            if not self.card_present or not self.powered:
                return i
            b = buf[off + i]
            self.received.append(b)
            self._on_byte(b)
        await asyncio.sleep_ms(0)
        return n

    async def recv(self, buf, off, n, timeout_clk):
        """Up to n bytes the card has sent; fewer means the waiting time ran out."""
        self.timeouts.append(timeout_clk)
        await asyncio.sleep_ms(0)
        k = min(n, len(self.out))
        for i in range(k):
            buf[off + i] = self.out[i]
        self.out = self.out[k:]
        return k

    # -- card side --
    def _on_byte(self, b):
        phase = self._phase
        if self.t1 is not None and (phase == "t1" or (phase == "idle" and b != 0xFF)):
            self._phase = "t1"
            self.out += self.t1.feed(b)
            return
        if phase == "idle":
            self._collect = bytearray((b,))
            self._phase = "pps" if b == 0xFF else "hdr"
            return
        if phase == "pps":
            self._collect.append(b)
            if len(self._collect) >= 2:
                want = 3 + _bits((self._collect[1] >> 4) & 7)
                if len(self._collect) == want:
                    self._answer_pps(bytes(self._collect))
            return
        if phase == "hdr":
            self._collect.append(b)
            if len(self._collect) == 5:
                hdr = bytes(self._collect)
                self._data = bytearray()
                self.commands.append([hdr, self._data])
                self._steps = list(self.programs.pop(0) if self.programs
                                   else self.handler(self, hdr))
                self._phase = "cmd"
                self._need = 0
                self._run()
            return
        if phase == "cmd" and self._need:
            self._data.append(b)
            self._need -= 1
            if not self._need:
                self._run()

    def _run(self):
        while self._steps:
            step = self._steps.pop(0)
            kind = step[0]
            if kind == "send":
                self.out += bytes(step[1])
            elif kind == "recv":
                self._need = step[1]
                return
            elif kind == "reply":
                self.out += step[1](bytes(self._data))
            elif kind == "mute":
                self._steps = []
                self._phase = "mute"
                return
            elif kind == "remove":
                self.card_present = False
                self.powered = False
                self._steps = []
                self._phase = "off"
                return
        self._phase = "idle"

    def _answer_pps(self, req):
        self.pps_seen += 1
        self._phase = "idle"
        mode = self.pps
        if mode == "accept":
            self.out += req
        elif mode == "refuse":
            pps0 = req[1] & 0x0F
            self.out += bytes((0xFF, pps0, 0xFF ^ pps0))
        elif mode == "bad":
            self.out += bytes((0xFF, req[1], req[2], 0x00))
        else:  # mute
            self._phase = "mute"


def _bits(y):
    return (y & 1) + ((y >> 1) & 1) + ((y >> 2) & 1)


def case2(ins, data, sw=b"\x90\x00"):
    """Card program: ACK then all data then SW."""
    return [("send", bytes((ins,)) + bytes(data) + sw)]


def case3(ins, lc, sw=b"\x90\x00"):
    """Card program: ACK, take lc bytes, SW."""
    return [("send", bytes((ins,))), ("recv", lc), ("send", sw)]


class MemoryPort:
    """The link port as two byte queues: host_send() feeds the terminal, `sent` collects."""

    def __init__(self):
        self.inbox = bytearray()
        self.sent = bytearray()
        self.closed = False
        self._ready = asyncio.Event()
        self._written = asyncio.Event()
        self.chunk = 0  # >0: hand the terminal at most this many bytes per read

    def host_send(self, data):
        """Bytes from the host."""
        self.inbox += data
        self._ready.set()

    def close(self):
        """End of stream."""
        self.closed = True
        self._ready.set()

    async def read_into(self, buf):
        """Port seam: wait for bytes."""
        while not self.inbox:
            if self.closed:
                return 0
            self._ready.clear()
            await self._ready.wait()
        n = min(len(buf), len(self.inbox))
        if self.chunk:
            n = min(n, self.chunk)
        for i in range(n):
            buf[i] = self.inbox[i]
        self.inbox = self.inbox[n:]
        return n

    async def write(self, buf, n):
        """Port seam: collect bytes."""
        self.sent += bytes(buf[:n])
        self._written.set()
        await asyncio.sleep_ms(0)

    async def wait_written(self, timeout_ms):
        """Wait until something more was written."""
        self._written.clear()
        await asyncio.wait_for_ms(self._written.wait(), timeout_ms)


class Host:
    """Drives a Terminal through a MemoryPort the way edged will: frames in, frames out."""

    def __init__(self, port):
        self.port = port
        self.parser = link.FrameParser()
        self.items = []
        self._seen = 0
        self.seq = 0

    def send(self, msg, seq=None):
        """Send a message; returns its sequence number."""
        if seq is None:
            self.seq = self.seq % 255 + 1
            seq = self.seq
        self.port.host_send(link.encode(seq, msg))
        return seq

    def _pump(self):
        data = self.port.sent[self._seen:]
        self._seen = len(self.port.sent)
        if data:
            self.parser.feed(data, self.items)

    async def next(self, timeout_ms=2000, skip_events=True):
        """Next frame or error item from the terminal (events skipped unless asked)."""
        waited = 0
        while True:
            self._pump()
            while self.items:
                item = self.items.pop(0)
                if skip_events and isinstance(item, link.Frame) and item.mtype == link.EVENT:
                    continue
                return item
            if waited >= timeout_ms:
                raise AssertionError("no frame from the terminal")
            await asyncio.sleep_ms(5)
            waited += 5

    async def request(self, msg, timeout_ms=2000):
        """Send and return the decoded answer with the same sequence number."""
        seq = self.send(msg)
        item = await self.next(timeout_ms)
        assert isinstance(item, link.Frame), item
        assert item.seq == seq, (item.seq, seq)
        return link.decode(item.mtype, item.payload)

    def events(self):
        """Decoded EVENT frames received so far (consumes them)."""
        self._pump()
        out = []
        rest = []
        for item in self.items:
            if isinstance(item, link.Frame) and item.mtype == link.EVENT:
                out.append(link.decode(item.mtype, item.payload))
            else:
                rest.append(item)
        self.items = rest
        return out


def edc(block, crc=False):
    """T=1 epilogue for block (NAD PCB LEN INF): LRC, or CRC (reflected 8408, preset FFFF)."""
    if not crc:
        x = 0
        for b in block:
            x ^= b
        return bytes((x,))
    c = 0xFFFF
    for b in block:
        c ^= b
        for _ in range(8):
            c = (c >> 1) ^ 0x8408 if c & 1 else c >> 1
    return bytes((c >> 8, c & 0xFF))


class T1Card:
    """The card side of T=1 (ISO 7816-3 §11), one character at a time, with fault injection.

    `handler(apdu) -> response` is the card OS. `faults` is a list consumed one per block the
    card would send: None (send it), "corrupt" (flip its EDC), "drop" (send nothing),
    ("wtx", m) (first ask for a waiting time extension of m x BWT), "mute" (stop for good),
    "abort" (send S(ABORT request) instead). `ifsd` starts at 32 until the reader's S(IFS).
    """

    def __init__(self, handler=None, ifsc=32, crc=False):
        self.handler = handler or (lambda apdu: b"\x90\x00")
        self.ifsc = ifsc  # what the card takes (its ATR's TA3)
        self.crc = crc
        self.faults = []
        self.received = []  # (pcb, inf) of every valid block from the reader
        self.sent = []  # (pcb, inf) of every block sent
        self.apdus = []
        self.edc_errors = 0
        self.reset()

    def reset(self):
        """Cold reset: sequence numbers 0, IFSD default."""
        self.ifsd = 32
        self.ns = 0
        self.nr = 0
        self.buf = bytearray()
        self.apdu = bytearray()
        self.pending = b""  # response bytes not yet sent
        self.last = b""  # last block sent (for repetition)
        self.muted = False
        self.wtx_pending = None

    def feed(self, b):
        """One character from the reader; returns the characters the card sends back."""
        if self.muted:
            return b""
        self.buf.append(b)
        buf = self.buf
        if len(buf) < 3 or len(buf) < 3 + buf[2] + (2 if self.crc else 1):
            return b""
        block = bytes(buf)
        self.buf = bytearray()
        n = block[2]
        if edc(block[:3 + n], self.crc) != block[3 + n:]:
            self.edc_errors += 1
            return self._send(0x80 | (self.nr << 4) | 1, b"")
        pcb = block[1]
        inf = block[3:3 + n]
        self.received.append((pcb, inf))
        if not pcb & 0x80:  # I-block
            if (pcb >> 6) & 1 != self.nr:
                return self._repeat()
            self.nr ^= 1
            self.apdu += inf
            if pcb & 0x20:
                return self._send(0x80 | (self.nr << 4), b"")
            apdu, self.apdu = bytes(self.apdu), bytearray()
            self.apdus.append(apdu)
            self.pending = self.handler(apdu)
            return self._next_chunk()
        if pcb & 0xC0 == 0x80:  # R-block
            if self.pending and (pcb >> 4) & 1 == self.ns:
                return self._next_chunk()
            return self._repeat()
        kind = pcb & 0x3F
        if kind == 0x01:  # S(IFS request)
            self.ifsd = inf[0]
            return self._send(0xE1, inf)
        if kind == 0x00:  # S(RESYNCH request)
            self.ns = 0
            self.nr = 0
            self.apdu = bytearray()
            self.pending = b""
            return self._send(0xE0, b"")
        if kind == 0x23:  # S(WTX response): now the answer (or the next WTX fault)
            return self._next_chunk()
        return b""

    def _next_chunk(self):
        if self.faults and isinstance(self.faults[0], tuple):
            m = self.faults.pop(0)[1]
            return self._send(0xC3, bytes((m,)))
        data = self.pending[:self.ifsd]
        self.pending = self.pending[len(data):]
        pcb = (self.ns << 6) | (0x20 if self.pending else 0)
        self.ns ^= 1
        return self._send(pcb, data)

    def _repeat(self):
        if not self.last:
            return self._send(0x80 | (self.nr << 4) | 2, b"")
        return self._emit(self.last)

    def _send(self, pcb, inf):
        block = bytes((0, pcb, len(inf))) + bytes(inf)
        block += edc(block, self.crc)
        if pcb & 0xC0 != 0x80 or not pcb & 0x03:  # not an R-block reporting an error
            self.last = block
        return self._emit(block)

    def _emit(self, block):
        fault = self.faults.pop(0) if self.faults and not isinstance(self.faults[0], tuple) \
            else None
        if fault == "mute":
            self.muted = True
            return b""
        if fault == "drop":
            return b""
        if fault == "abort":
            block = bytes((0, 0xC2, 0))
            block += edc(block, self.crc)
        self.sent.append((block[1], block[3:3 + block[2]]))
        if fault == "corrupt":
            return block[:-1] + bytes((block[-1] ^ 0xFF,))
        return block
