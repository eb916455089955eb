# ruff: noqa: I001, SIM105, UP031, UP041 - MicroPython: % formatting, asyncio.TimeoutError
"""The virtual terminal's board: the firmware's seams joined to a host supervisor over loopback.

Runs on the MicroPython unix port only (never deployed: it lives outside firmware/). The
supervisor (simulators/terminal/supervisor.py) starts
`micropython -X heapsize=192K -m sim_board HOST PORT`; this module connects three TCP
channels to it (slot 0, slot 1, control) and runs the unchanged firmware (main.run) with:

- port: the link on stdin/stdout, exactly like board.Board on the Pico's USB CDC;
- slot_hw: SimSlotHw, one per slot, whose I/O line goes to a card-side ISO 7816-3 engine
  (simulators/terminal/card_io.py) as one message per line event;
- keys: a KeyQueue fed by the control channel, one key at a time, each only once a prompt
  holds the queue and has consumed the previous key;
- display: a TextDisplay whose driver reports every screen on the control channel.

Slot channel messages are TAG u8 | LEN u8 | payload (docs/terminal.md, "Slot channel"):
terminal -> card: P class_a (power on), O (power off), R level (RST), T F_hi F_lo D N
(timing), D bytes (characters on I/O). card -> terminal: D bytes, C present (card-detect
switch), F fault (interface chip OFF line). The control channel carries JSON lines.
"""

import asyncio
import gc
import json
import socket
import sys

from micropython import const

import display
import keypad
import main
import pinmap
import port

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

_RX_RING = const(512)  # card -> reader characters not read yet (a T=0 response is <= 261)
_MSG_MAX = const(255)  # payload bytes per slot message
_CHUNK = const(64)
_TCP_NODELAY = const(1)  # not exported by the unix port's socket module
_IPPROTO_TCP = const(6)
# Waits on the simulated line are never shorter than this: the line crosses two processes and
# a socket, and a scheduler hiccup must not look like a mute card. The waits that carry meaning
# (initial waiting time, WWT: about 0.9 s and more) are far longer and stay exact.
MIN_WAIT_MS = const(250)
_MIN_ETU_CLOCKS = const(31)  # same limits as slot_hw.Rp2SlotHw.supports (PIO at 125 MHz)
_SM_CYCLES_PER_ETU = const(8)


class HeapProbe:
    """Live-heap high-water mark: gc.collect() then gc.mem_alloc() at chosen points, when on."""

    def __init__(self) -> None:
        self.on = False
        self.peak = 0
        self.samples = 0

    def sample(self) -> None:
        """Record the live heap now (costs a collection; only while switched on)."""
        if self.on:
            gc.collect()
            a = gc.mem_alloc()
            self.samples += 1
            if a > self.peak:
                self.peak = a


PROBE = HeapProbe()


def _connect(host: str, port_no: int, hello: bytes) -> "Any":
    addr = socket.getaddrinfo(host, port_no)[0][-1]
    s = socket.socket()
    s.connect(addr)
    try:
        s.setsockopt(_IPPROTO_TCP, _TCP_NODELAY, 1)
    except OSError:
        pass
    s.send(hello)
    s.setblocking(False)
    return asyncio.StreamReader(s)


class SimSlotHw:
    """The slot hardware seam (docs/firmware.md, "Slot hardware") over a socket to a card engine."""

    def __init__(self, index: int, stream: "Any", clock_hz: int = pinmap.CARD_CLK_HZ) -> None:
        self.index = index
        self.clock_hz = clock_hz
        self._s = stream  # MicroPython's Stream is reader and writer at once
        self._ring = bytearray(_RX_RING)
        self._head = 0
        self._count = 0
        self.overruns = 0
        self._present = False
        self._fault = False
        self._powered = False
        self._event = asyncio.Event()
        self._msg = bytearray(2 + _MSG_MAX)
        self._in = bytearray(_CHUNK)
        self._tag = 0
        self._need = -1  # -1: waiting for a tag, -2: for a length, >= 0: payload bytes left
        self._arg = 0

    # -- messages out --
    def _put(self, tag: int, payload: "Any", n: int) -> None:
        m = self._msg
        m[0] = tag
        m[1] = n
        for i in range(n):
            m[2 + i] = payload[i]
        self._s.write(memoryview(m)[:2 + n])

    def _put1(self, tag: int, value: int) -> None:
        m = self._msg
        m[0] = tag
        m[1] = 1
        m[2] = value
        self._s.write(memoryview(m)[:3])

    # -- messages in --
    async def serve(self) -> None:
        """Read the card side forever: characters, card-detect and fault changes."""
        buf = self._in
        while True:
            n = await self._s.readinto(buf)
            if not n:
                self._present = False
                self._event.set()
                return
            for i in range(n):
                self._byte(buf[i])
            self._event.set()

    def _byte(self, b: int) -> None:
        if self._need == -1:
            self._tag = b
            self._need = -2
        elif self._need == -2:
            self._need = b
            if b == 0:
                self._need = -1
        else:
            tag = self._tag
            if tag == 0x44:  # 'D': a character from the card
                if self._count < _RX_RING:
                    self._ring[(self._head + self._count) % _RX_RING] = b
                    self._count += 1
                else:
                    self.overruns += 1
            elif tag == 0x43:  # 'C': card-detect switch
                self._present = bool(b)
                if not b:
                    self._powered = False
            elif tag == 0x46:  # 'F': interface chip fault
                self._fault = bool(b)
            self._need -= 1
            if self._need == 0:
                self._need = -1

    def _ms(self, clocks: int) -> int:
        ms = clocks * 1000 // self.clock_hz + 1
        return ms if ms > MIN_WAIT_MS else MIN_WAIT_MS

    # -- seam --
    def present(self) -> bool:
        """Card-detect switch, as last reported by the card side."""
        return self._present

    def fault(self) -> bool:
        """The interface chip deactivated a powered card by itself."""
        return self._fault and self._powered

    def supports(self, f: int, d: int) -> bool:
        """The Pico's rule: an exact PIO divider and at least 31 clocks per etu."""
        return (pinmap.CARD_CLK_DIV * f) % (d * _SM_CYCLES_PER_ETU) == 0 and \
            f >= _MIN_ETU_CLOCKS * d

    async def power_on(self, class_a: bool) -> bool:
        """VCC + CLK; False when no card or the chip reports a fault."""
        if not self._present or self._fault:
            return False
        self._powered = True
        self._count = 0
        self._put1(0x50, 1 if class_a else 0)  # 'P'
        await self._s.drain()
        return True

    def power_off(self) -> None:
        """Deactivate; drop what the card sent and was not read."""
        self._powered = False
        self._count = 0
        self._put(0x4F, self._msg, 0)  # 'O'

    def set_rst(self, level: int) -> None:
        """RST line; a rising edge while powered makes the card send its ATR."""
        self._put1(0x52, 1 if level else 0)  # 'R'

    def set_inverse(self, inverse: bool) -> None:
        """Our simulated cards use the direct convention; the engine refuses inverse ones."""
        self.inverse = inverse

    def set_timing(self, f: int, d: int, guard: int) -> None:
        """Tell the line the etu the reader now uses (the card checks it matches its own)."""
        t = bytearray(4)
        t[0] = f >> 8
        t[1] = f & 0xFF
        t[2] = d
        t[3] = guard & 0xFF
        self._put(0x54, t, 4)  # 'T'

    def flush(self) -> None:
        """Forget characters received and not read."""
        self._count = 0

    async def delay_clocks(self, n: int) -> None:
        """Wait n card clocks (rounded up to whole milliseconds)."""
        await asyncio.sleep_ms(n * 1000 // self.clock_hz + 1)

    async def sleep_ms(self, ms: int) -> None:
        """Wait."""
        await asyncio.sleep_ms(ms)

    async def send(self, buf: "Any", off: int, n: int) -> int:
        """Characters to the card; fewer than n if it is gone."""
        if not self._present or not self._powered:
            return 0
        PROBE.sample()
        done = 0
        while done < n:
            k = n - done if n - done < _MSG_MAX else _MSG_MAX
            self._put(0x44, memoryview(buf)[off + done:off + done + k], k)  # 'D'
            done += k
        await self._s.drain()
        return n

    async def recv(self, buf: "Any", off: int, n: int, timeout_clk: int) -> int:
        """Up to n characters; each must start within timeout_clk clocks of the previous."""
        ms = self._ms(timeout_clk)
        got = 0
        while got < n:
            if self._count:
                while self._count and got < n:
                    buf[off + got] = self._ring[self._head]
                    self._head = (self._head + 1) % _RX_RING
                    self._count -= 1
                    got += 1
                continue
            if not self._present or not self._powered:
                break
            self._event.clear()
            try:
                await asyncio.wait_for_ms(self._event.wait(), ms)
            except asyncio.TimeoutError:
                break
        PROBE.sample()
        return got


class SimKeys(keypad.KeyQueue):
    """The key queue, plus what a simulated finger needs: is the last key consumed yet?"""

    def idle(self) -> bool:
        """True when a prompt holds the queue and every pushed key has been taken."""
        return self.claimed and not self._count


class Screen:
    """Display driver: every rendered screen goes to the supervisor as a JSON line."""

    def __init__(self) -> None:
        self.stream = None  # type: Any
        self.renders = 0

    def render(self, lines: list) -> None:
        """Report the screen (sync; the control task drains the stream)."""
        self.renders += 1
        PROBE.sample()
        if self.stream is not None:
            self.stream.write(json.dumps({"ev": "screen", "lines": lines}) + "\n")


class ProbedPort(port.StreamPort):
    """The link port on stdin/stdout; samples the heap after each frame written."""

    async def write(self, buf: "Any", n: int) -> None:
        """Write buf[:n]."""
        await port.StreamPort.write(self, buf, n)
        PROBE.sample()


class SimBoard:
    """Everything main.run(board) needs, joined to the supervisor at host:port."""

    def __init__(self, host: str, port_no: int) -> None:
        self.keys = SimKeys()
        self.screen = Screen()
        self.display = display.TextDisplay(self.screen)
        streams = [_connect(host, port_no, ("S%d\n" % i).encode()) for i in range(2)]
        self.slot_hw = [SimSlotHw(i, streams[i]) for i in range(2)]
        self.control = _connect(host, port_no, b"K\n")
        self.screen.stream = self.control
        self.port = ProbedPort(asyncio.StreamReader(sys.stdin.buffer),
                               asyncio.StreamWriter(sys.stdout.buffer, {}))
        gc.collect()
        self.boot_alloc = gc.mem_alloc()
        self.display.show(["bifente", "pret"])  # what board.Board shows at boot

    def background(self) -> list:
        """The slot line readers and the control channel."""
        return [self.slot_hw[0].serve(), self.slot_hw[1].serve(), self._control()]

    async def _control(self) -> None:
        s = self.control
        while True:
            await s.drain()
            line = await s.readline()
            if not line:
                sys.exit(0)  # the supervisor is gone: a terminal without its case
            try:
                req = json.loads(line)
                answer = await self._op(req)
            except Exception as exc:  # report, keep serving
                answer = {"ok": False, "error": "%s: %s" % (type(exc).__name__, exc)}
                req = req if isinstance(req, dict) else {}
            answer["re"] = req.get("id", 0)
            s.write(json.dumps(answer) + "\n")

    async def _op(self, req: dict) -> dict:
        op = req.get("op")
        if op == "key":
            return await self._key(req["key"], int(req.get("wait_ms", 10000)))
        if op == "heap":
            if "probe" in req:
                PROBE.on = bool(req["probe"])
                if req.get("reset"):
                    PROBE.peak = 0
                    PROBE.samples = 0
            gc.collect()
            return {"ok": True, "alloc": gc.mem_alloc(), "free": gc.mem_free(),
                    "peak": PROBE.peak, "samples": PROBE.samples, "boot": self.boot_alloc,
                    "probe": PROBE.on}
        if op == "status":
            return {"ok": True, "claimed": self.keys.claimed, "prompts": self.keys.prompts,
                    "lines": self.display.lines(),
                    "present": [hw.present() for hw in self.slot_hw],
                    "overruns": [hw.overruns for hw in self.slot_hw]}
        return {"ok": False, "error": "unknown op %s" % op}

    async def _key(self, key: str, wait_ms: int) -> dict:
        # A finger presses one key once the prompt has taken the previous one: keys pushed
        # while no prompt holds the queue are dropped by design (keypad.KeyQueue).
        waited = 0
        while wait_ms and not self.keys.idle():
            if waited >= wait_ms:
                return {"ok": False, "error": "no prompt on the terminal"}
            await asyncio.sleep_ms(2)
            waited += 2
        self.keys.push(key)
        return {"ok": True}


def run(host: str, port_no: int) -> None:
    """Build the board and run the firmware until stdin closes."""
    asyncio.run(main.run(SimBoard(host, port_no)))


if __name__ == "__main__":
    run(sys.argv[1], int(sys.argv[2]))
