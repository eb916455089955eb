"""The virtual terminal: the real firmware on the MicroPython unix port, cards on its lines, a pty.

`VirtualTerminal` starts `micropython -X heapsize=192K -m sim_board` with the firmware
compiled by mpy-cross, accepts its three loopback channels (slot 0, slot 1, control), puts a
`CardEngine` on each slot line, and joins the firmware's link (its stdin/stdout, the Pico's
USB CDC) to the master side of a pty. edged opens the pty's slave path with pyserial exactly
as it opens /dev/ttyACM0. Keys, the screen, card insertion and removal go through methods
here, or through the control server (simulators/terminal/control.py) for other processes.
"""

from __future__ import annotations

import collections
import contextlib
import json
import logging
import os
import random
import select
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import tty
from collections.abc import Callable, Iterator
from pathlib import Path
from types import TracebackType

from bifente.simulators.cps3 import Cps3Card
from bifente.simulators.terminal.card_io import CardEngine, LineCard, WireStats
from bifente.simulators.vitale import Vitale2Card

__all__ = ["KEYS", "FirmwareError", "VirtualTerminal", "expand_keys"]

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[2]
FIRMWARE = ROOT / "firmware"
MP_DIR = Path(__file__).resolve().parent / "mp"
# Pico-only modules (machine, rp2): the simulated board replaces them.
_DEVICE_ONLY = {"board", "slot_hw"}
KEYS = frozenset("0123456789*#") | {"OK", "CANCEL", "CORR", "F1"}
SLOT_NAMES = {"0": 0, "cps": 0, "1": 1, "vitale": 1}
_MAX_CONTROL_LINE = 64 * 1024
# The firmware debounces card-detect over 2 polls of 50 ms (firmware/terminal.py).
DEBOUNCE_S = 0.15


class FirmwareError(RuntimeError):
    """The MicroPython process failed or did not answer."""


def expand_keys(keys: tuple[str, ...] | list[str]) -> list[str]:
    """Key names from words: '1234' is four digits; OK, CANCEL, CORR, F1 in any case."""
    out: list[str] = []
    for word in keys:
        if word and all(c in "0123456789*#" for c in word):
            out.extend(word)
        elif word.upper() in KEYS:
            out.append(word.upper())
        else:
            raise ValueError(f"no key {word!r} on the keypad (digits, OK, CANCEL, CORR, F1)")
    return out


def _tool(name: str, override: str | None = None) -> str:
    if override:
        return override
    local = Path(sys.executable).parent / name
    found = str(local) if local.exists() else shutil.which(name)
    if not found:
        raise FirmwareError(f"`{name}` not found (make setup installs the firmware toolchain)")
    return found


def make_card(slot: int, profile: str) -> LineCard:
    """A simulated card for a slot: a CPS3 card in slot 0, a Vitale 2 card in slot 1."""
    return Cps3Card(profile) if slot == 0 else Vitale2Card(profile)


class VirtualTerminal:
    """The firmware on simulated hardware, its link on a pty; use as a context manager."""

    def __init__(self, cps: str | LineCard | None = "gp", vitale: str | LineCard | None = "family",
                 *, heap: str = "192K", micropython: str | None = None,
                 mpy_cross: str | None = None, boot_timeout: float = 15.0) -> None:
        cards = [cps, vitale]
        self.engines = [CardEngine(make_card(i, c) if isinstance(c, str) else c)
                        for i, c in enumerate(cards)]
        self.heap_size = heap
        self.boot_timeout = boot_timeout
        self._micropython = micropython
        self._mpy_cross = mpy_cross
        self.pty_path = ""
        self.control_address: str | None = None
        self._master = -1
        self._slave = -1
        self._build: tempfile.TemporaryDirectory[str] | None = None
        self._listener: socket.socket | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._feed = -1  # write end of the firmware's stdin (the link towards the terminal)
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._conns: list[socket.socket] = []
        self._control_sock: socket.socket | None = None
        self._control_lock = threading.Lock()
        self._answers: dict[int, dict[str, object]] = {}
        self._answer_cv = threading.Condition()
        self._next_id = 0
        self._screen: list[str] = []
        self.screens: collections.deque[list[str]] = collections.deque(maxlen=500)
        self._screen_cv = threading.Condition()
        self._stderr: collections.deque[str] = collections.deque(maxlen=200)
        self._capture: list[tuple[str, bytes]] | None = None
        self._capture_lock = threading.Lock()
        self._proc_lock = threading.Lock()
        self.dropped_out = 0
        # Fault injection (tests): damage this share of the link's chunks, both directions.
        self._damage: tuple[float, random.Random] | None = None
        self.damaged = collections.Counter[str]()
        self._server: object | None = None
        self.started = False

    # -- lifecycle ----------------------------------------------------------------------------
    def start(self) -> VirtualTerminal:
        """Compile the firmware, open the pty, boot MicroPython; returns once the screen is up."""
        if self.started:
            return self
        try:
            self._compile()
            self._master, self._slave = os.openpty()
            # Raw from the start: no echo (the firmware would read its own frames back), no
            # ^C, no CR/LF translation. We keep the slave open so the master never sees EIO
            # while no host has the port open, as a USB CDC device stays up without a host.
            tty.setraw(self._slave)
            os.set_blocking(self._master, False)
            self.pty_path = os.ttyname(self._slave)
            self._listener = socket.create_server(("127.0.0.1", 0))
            self._listener.settimeout(self.boot_timeout)
            self._spawn(self._thread(self._pump_in, "vt-link-in"))
            self._boot()
            self.started = True
        except BaseException:
            self.stop()
            raise
        return self

    def _compile(self) -> None:
        mpy_cross = _tool("mpy-cross", self._mpy_cross)
        self._build = tempfile.TemporaryDirectory(prefix="bifente-vt-")
        sources = [p for p in sorted(FIRMWARE.glob("*.py")) if p.stem not in _DEVICE_ONLY]
        sources += sorted(MP_DIR.glob("*.py"))
        for src in sources:
            out = Path(self._build.name) / (src.stem + ".mpy")
            result = subprocess.run([mpy_cross, "-o", str(out), str(src)], capture_output=True,
                                    text=True, timeout=60, check=False)
            if result.returncode:
                raise FirmwareError(f"mpy-cross {src.name}: {result.stderr.strip()}")

    def _boot(self) -> None:
        assert self._listener is not None and self._build is not None
        micropython = _tool("micropython", self._micropython)
        host, port = self._listener.getsockname()[:2]
        env = dict(os.environ, MICROPYPATH=f".frozen:{self._build.name}")
        with self._screen_cv:
            self._screen = []
        # The firmware's stdin stays a blocking pipe, like the Pico's USB CDC stdin: MicroPython's
        # readinto(buf) there waits until len(buf) bytes came, so port.StreamPort reads only
        # what poll says has arrived (docs/terminal.md, "Limits").
        link_in, link_feed = os.pipe()
        try:
            proc = subprocess.Popen(
                [micropython, "-X", f"heapsize={self.heap_size}", "-m", "sim_board", host,
                 str(port)],
                stdin=link_in, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
                bufsize=0)
        finally:
            os.close(link_in)
        with self._proc_lock:
            self._proc = proc
            self._feed = link_feed
        self._spawn(self._thread(self._pump_err, "vt-stderr", proc))
        channels: dict[str, socket.socket] = {}
        deadline = time.monotonic() + self.boot_timeout
        while len(channels) < 3:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise FirmwareError(f"the firmware did not start: {self.firmware_log()}")
            try:
                conn, _addr = self._listener.accept()
            except TimeoutError:
                continue
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            conn.settimeout(5)
            name = _read_line(conn)
            conn.settimeout(None)
            channels[name] = conn
            self._conns.append(conn)
        self._control_sock = channels["K"]
        self._spawn(self._thread(self._control_reader, "vt-control", channels["K"]))
        for i in (0, 1):
            self._spawn(self._thread(self._slot_reader, f"vt-slot{i}", i, channels[f"S{i}"]))
        self._spawn(self._thread(self._pump_out, "vt-link-out", proc))
        if not self.wait_screen(lambda lines: bool(lines), timeout=max(
                1.0, deadline - time.monotonic())):
            raise FirmwareError(f"the firmware showed nothing: {self.firmware_log()}")
        self.settle()

    def settle(self, timeout: float = 5.0) -> None:
        """Wait until the firmware has seen every card-detect switch as it is (debounced)."""
        want = [e.present for e in self.engines]
        deadline = time.monotonic() + timeout
        while self._request("status").get("present") != want:
            if time.monotonic() > deadline:
                raise FirmwareError("the firmware does not see the card-detect switches")
            time.sleep(0.01)
        time.sleep(DEBOUNCE_S)

    def reboot(self) -> None:
        """Power-cycle the terminal: the firmware restarts; cards stay in their slots."""
        self._shutdown_firmware()
        self._boot()

    def _shutdown_firmware(self) -> None:
        with self._proc_lock:
            proc, self._proc = self._proc, None
            feed, self._feed = self._feed, -1
        if feed >= 0:
            with contextlib.suppress(OSError):
                os.close(feed)  # end of the link stream: Terminal.run() returns
        if proc is not None:
            try:
                proc.wait(timeout=3)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=3)
        for conn in self._conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
            conn.close()
        self._conns = []
        self._control_sock = None
        with self._answer_cv:
            self._answer_cv.notify_all()

    def stop(self) -> None:
        """Stop the firmware, close the pty and the sockets; idempotent."""
        self._stop.set()
        server, self._server = self._server, None
        if server is not None:
            server.close()  # type: ignore[attr-defined]
        self._shutdown_firmware()
        for engine in self.engines:
            engine.attach(None)
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        for t in self._threads:
            if t is not threading.current_thread():
                t.join(timeout=3)
        self._threads = []
        for fd in (self._master, self._slave):
            if fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self._master = self._slave = -1
        if self._build is not None:
            self._build.cleanup()
            self._build = None
        self.started = False

    def __enter__(self) -> VirtualTerminal:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    @property
    def pid(self) -> int | None:
        """The MicroPython process id while it runs."""
        proc = self._proc
        return proc.pid if proc is not None and proc.poll() is None else None

    def firmware_log(self) -> str:
        """The firmware's last stderr lines (tracebacks), for error messages."""
        return " | ".join(self._stderr) or "(no output)"

    # -- threads -----------------------------------------------------------------------------
    def _thread(self, fn: Callable[..., None], name: str, *args: object) -> threading.Thread:
        return threading.Thread(target=fn, args=args, name=name, daemon=True)

    def _spawn(self, t: threading.Thread) -> None:
        self._threads = [x for x in self._threads if x.is_alive()]
        self._threads.append(t)
        t.start()

    def damage_link(self, rate: float, seed: int = 0) -> None:
        """Damage `rate` of the chunks on the link (a bit flipped, the chunk dropped or sent
        twice, random bytes inserted); 0 stops. A USB cable with a bad contact, for tests."""
        self._damage = (rate, random.Random(seed)) if rate > 0 else None

    def _damaged(self, data: bytes) -> bytes:
        damage = self._damage
        if damage is None or damage[1].random() >= damage[0]:
            return data
        rng = damage[1]
        kind = rng.choice(("flip", "drop", "dup", "insert"))
        self.damaged[kind] += 1
        if kind == "drop":
            return b""
        if kind == "dup":
            return data + data
        if kind == "insert":
            at = rng.randrange(len(data) + 1)
            return data[:at] + rng.randbytes(rng.randint(1, 8)) + data[at:]
        at = rng.randrange(len(data))
        return data[:at] + bytes((data[at] ^ (1 << rng.randrange(8)),)) + data[at + 1:]

    def _tap(self, direction: str, data: bytes) -> None:
        with self._capture_lock:
            if self._capture is not None:
                self._capture.append((direction, data))

    def _pump_in(self) -> None:
        # Host -> terminal: the pty master to the firmware's stdin (the USB CDC OUT endpoint).
        while not self._stop.is_set():
            try:
                ready, _, _ = select.select([self._master], [], [], 0.2)
                if not ready:
                    continue
                data = os.read(self._master, 4096)
            except (OSError, ValueError):
                if self._stop.is_set():
                    return
                time.sleep(0.05)
                continue
            data = self._damaged(data)
            if not data:
                continue
            self._tap("host", data)
            with self._proc_lock:
                feed = self._feed
                try:
                    if feed >= 0:
                        _write_all(feed, data)
                except OSError:
                    pass  # the terminal is rebooting: the bytes are lost, as on a real one

    def _pump_out(self, proc: subprocess.Popen[bytes]) -> None:
        # Terminal -> host: the firmware's stdout to the pty master (the USB CDC IN endpoint).
        assert proc.stdout is not None
        fd = proc.stdout.fileno()
        while True:
            try:
                data = os.read(fd, 4096)
            except OSError:
                return
            if not data:
                return
            data = self._damaged(data)
            self._tap("term", data)
            view = memoryview(data)
            deadline = time.monotonic() + 1.0
            while view and self._master >= 0:
                try:
                    n = os.write(self._master, view)
                    view = view[n:]
                except BlockingIOError:
                    # Nobody reads the pty (no host): wait a little, then drop, like a USB
                    # CDC device whose host is not listening.
                    if time.monotonic() > deadline:
                        self.dropped_out += len(view)
                        break
                    select.select([], [self._master], [], 0.05)
                except OSError:
                    return

    def _pump_err(self, proc: subprocess.Popen[bytes]) -> None:
        assert proc.stderr is not None
        for raw in proc.stderr:
            line = raw.decode("utf-8", "replace").rstrip()
            self._stderr.append(line)
            log.debug("firmware: %s", line)

    def _slot_reader(self, slot: int, conn: socket.socket) -> None:
        engine = self.engines[slot]
        lock = threading.Lock()

        def write(data: bytes) -> None:
            with lock:
                conn.sendall(data)

        engine.attach(write)
        try:
            while True:
                try:
                    data = conn.recv(4096)
                except OSError:
                    return
                if not data:
                    return
                engine.feed(data)
        finally:
            engine.attach(None)

    def _control_reader(self, conn: socket.socket) -> None:
        buf = b""
        while True:
            try:
                chunk = conn.recv(65536)
            except OSError:
                return
            if not chunk:
                return
            buf += chunk
            while b"\n" in buf:
                line, buf = buf.split(b"\n", 1)
                try:
                    msg = json.loads(line)
                except ValueError:
                    log.warning("firmware control: unreadable line (%d bytes)", len(line))
                    continue
                if msg.get("ev") == "screen":
                    with self._screen_cv:
                        self._screen = [str(x) for x in msg.get("lines", [])]
                        self.screens.append(list(self._screen))
                        self._screen_cv.notify_all()
                elif "re" in msg:
                    with self._answer_cv:
                        self._answers[int(msg["re"])] = msg
                        self._answer_cv.notify_all()

    # -- firmware control channel ----------------------------------------------------------------
    def _request(self, op: str, timeout: float = 10.0, **args: object) -> dict[str, object]:
        with self._control_lock:
            self._next_id += 1
            rid = self._next_id
            sock = self._control_sock
            if sock is None:
                raise FirmwareError("the firmware is not running")
            sock.sendall(json.dumps({"id": rid, "op": op, **args}).encode() + b"\n")
        deadline = time.monotonic() + timeout
        with self._answer_cv:
            while rid not in self._answers:
                left = deadline - time.monotonic()
                if left <= 0 or self._control_sock is None:
                    raise FirmwareError(f"the firmware did not answer {op!r}")
                self._answer_cv.wait(left)
            answer = self._answers.pop(rid)
        if not answer.get("ok"):
            raise FirmwareError(str(answer.get("error", "failed")))
        return answer

    # -- the person at the desk ----------------------------------------------------------------
    def press(self, *keys: str, wait: float = 10.0) -> None:
        """Press keys ('1234' presses four digits); each waits (up to `wait` s) for a prompt.

        A key is pressed only once a prompt holds the keypad and took the previous key, as a
        person types. With wait=0 the keys are pressed at once (an idle CANCEL, for instance);
        F1 is always pressed at once.
        """
        for key in expand_keys(list(keys)):
            # F1 acts only while no prompt runs (docs/terminal.md, "Keys while no prompt
            # runs"): waiting for a prompt would only hold it back, then fail.
            key_wait = 0.0 if key == "F1" else wait
            try:
                self._request("key", timeout=key_wait + 5, key=key,
                              wait_ms=int(key_wait * 1000))
            except FirmwareError as exc:
                raise TimeoutError(f"key {key}: {exc}") from None

    def screen_lines(self) -> list[str]:
        """The lines the display shows now (asked of the firmware, so never behind it)."""
        try:
            lines = self._request("status").get("lines")
        except FirmwareError:
            lines = None
        if isinstance(lines, list):
            return [str(x) for x in lines]
        with self._screen_cv:
            return list(self._screen)

    def screen(self) -> str:
        """The display as text (one line per row)."""
        return "\n".join(self.screen_lines())

    def wait_screen(self, match: str | Callable[[list[str]], bool], timeout: float = 5.0) -> bool:
        """Wait until the screen contains `match` (or the predicate holds); False on timeout."""
        def ok(lines: list[str]) -> bool:
            return match(lines) if callable(match) else match in "\n".join(lines)

        deadline = time.monotonic() + timeout
        with self._screen_cv:
            while not ok(self._screen):
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._screen_cv.wait(left)
            return True

    # -- cards -----------------------------------------------------------------------------------
    def insert(self, slot: int, card: LineCard | str | None = None, *,
               wait: bool = True) -> None:
        """Insert a card (a profile name, a card object, or the slot's previous card).

        With wait, returns once the firmware has debounced the switch (SLOT_STATUS shows it).
        """
        if isinstance(card, str):
            card = make_card(slot, card)
        self.engines[slot].insert(card)
        if wait:
            self.settle()

    def remove(self, slot: int, *, mid_command: bool = False, wait: bool = True) -> None:
        """Pull the card now, or (mid_command) right after the next command header reaches it."""
        engine = self.engines[slot]
        if mid_command:
            engine.remove_at_next_command = True
            return
        engine.remove()
        if wait:
            self.settle()

    def mute(self, slot: int, mute: bool = True) -> None:
        """Make the card stop answering (from its next character on), or answer again."""
        self.engines[slot].mute = mute

    def wire_stats(self, slot: int, *, reset: bool = False) -> WireStats:
        """Characters the slot's card exchanged so far; reset starts a new count."""
        engine = self.engines[slot]
        stats = engine.stats
        if reset:
            engine.stats = WireStats()
        return stats

    # -- measurement and status ------------------------------------------------------------------
    def heap(self, *, probe: bool | None = None, reset: bool = False) -> dict[str, object]:
        """The firmware's heap: alloc/free now, and the live high-water mark while probing."""
        answer = (self._request("heap") if probe is None else
                  self._request("heap", probe=probe, reset=reset))
        answer.pop("re", None)
        answer.pop("ok", None)
        return answer

    def status(self) -> dict[str, object]:
        """Where everything is: pty, control address, firmware, slots, screen."""
        slots = []
        for i, e in enumerate(self.engines):
            profile = getattr(getattr(e.card, "profile", None), "name", None)
            slots.append({"slot": i, "present": e.present, "card": type(e.card).__name__
                          if e.card is not None else None, "profile": profile,
                          "phase": e.phase, "muted": e.mute})
        return {"pty": self.pty_path, "control": self.control_address, "pid": self.pid,
                "running": self.pid is not None, "slots": slots, "screen": self.screen_lines()}

    @contextlib.contextmanager
    def capture(self) -> Iterator[list[tuple[str, bytes]]]:
        """Record every link byte both ways ('host' -> terminal, 'term' -> host) meanwhile."""
        frames: list[tuple[str, bytes]] = []
        with self._capture_lock:
            self._capture = frames
        try:
            yield frames
        finally:
            with self._capture_lock:
                self._capture = None

    def serve_control(self, address: str | None = None) -> str:
        """Start the control server for other processes (simulators/terminal/control.py)."""
        from bifente.simulators.terminal.control import ControlServer, default_control_address

        server = ControlServer(self, address or default_control_address())
        self._server = server
        self.control_address = server.address
        return server.address


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _read_line(conn: socket.socket) -> str:
    out = b""
    while not out.endswith(b"\n") and len(out) < 16:
        chunk = conn.recv(1)
        if not chunk:
            break
        out += chunk
    return out.decode("ascii", "replace").strip()
