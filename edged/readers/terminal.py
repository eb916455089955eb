"""The bifente terminal as a reader: the link over pyserial, its slots as transports, its UI.

- `TerminalLink(path)`: opens the serial port (/dev/bifente-terminal, or the virtual
  terminal's pty), handshakes, sends requests with sequence numbers on two lanes (one prompt
  and one card request in flight at a time, as the terminal runs them), resends safely (the
  terminal answers a repeated frame from its kept answer, never running it twice), and
  routes answers and EVENT frames from a reader thread (docs/link-protocol.md).
- `TerminalTransport(link, slot)`: apdu's Transport and SecurePinEntry over the link.
- `TerminalUI(link)`: edged.readers.ui.TerminalUI (display text, OK / Cancel prompts).
- `TerminalReader(path, on_card=..., on_state=...)`: keeps a link up (reconnects with capped
  backoff), reports cards coming and going and the connection state.

Callbacks run in this module's threads: they must hand work over (for instance with
`loop.call_soon_threadsafe`) and never block.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import queue
import re
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import serial

from apdu.errors import CardRemoved, PinCancelled, TransportError
from edged.readers.link import (
    INTERBYTE_TIMEOUT_S,
    MAX_IDENTITY,
    MAX_LINES,
    MAX_PAYLOAD,
    MAX_SECRET_S,
    MAX_TEXT,
    PROTOCOL_VERSION,
    TRIES_UNKNOWN,
    Abort,
    Ack,
    Atr,
    Confirm,
    ConfirmOutcome,
    ConfirmResult,
    DecodeError,
    Display,
    ErrorCode,
    Event,
    EventKind,
    Frame,
    FrameError,
    FrameParser,
    Hello,
    HelloAck,
    Identity,
    LinkErrorMessage,
    Message,
    MessageType,
    PinEncoding,
    PinField,
    PinResult,
    PowerOff,
    PowerOn,
    PromptKind,
    Response,
    SecureChange,
    SecureUnblock,
    SecureVerify,
    SlotState,
    SlotStatus,
    SlotStatusResponse,
    Transmit,
    decode_message,
    encode_message,
)
from edged.readers.pcsc import NoCard
from edged.readers.ui import DISPLAY_COLUMNS, DISPLAY_LINES, Answer, fit_lines

__all__ = [
    "TerminalClosed",
    "TerminalError",
    "TerminalLink",
    "TerminalReader",
    "TerminalRestarted",
    "TerminalTimeout",
    "TerminalTransport",
    "TerminalUI",
    "identity_text",
    "parse_reader",
]

log = logging.getLogger(__name__)

PIN_MARGIN_S = 10.0  # a prompt's answer may come this long after its timeout (card time)
TRANSMIT_TIMEOUT_S = 15.0  # CPS3 WWT is 3.8 s (TC2 = 42), restarted by every NULL byte
REQUEST_TIMEOUT_S = 5.0
RESEND_AFTER_S = 2.0
# The terminal never ran a frame it answers with these: resend it at once.
_MANGLED = frozenset({ErrorCode.BAD_CRC, ErrorCode.TRUNCATED, ErrorCode.OVERSIZE,
                      ErrorCode.BAD_VERSION})
_REMOVED = frozenset({ErrorCode.NO_CARD, ErrorCode.CARD_REMOVED})
# The terminal's prompt lane owns the screen: a DISPLAY waits for a prompt, never covers it.
_PROMPTS = (Confirm, SecureVerify, SecureChange, SecureUnblock, Display)
_CANCELLED = {
    ErrorCode.USER_CANCELLED: "PIN entry cancelled on the terminal",
    ErrorCode.PROMPT_TIMEOUT: "PIN entry timed out on the terminal",
    ErrorCode.ABORTED: "PIN entry aborted",
    ErrorCode.PIN_MISMATCH: "the new PIN and its confirmation differ; nothing was changed",
}


class TerminalError(TransportError):
    """The terminal answered ERROR, or the link failed; `code` is the link error code if any."""

    def __init__(self, message: str, code: int | None = None) -> None:
        super().__init__(message)
        self.code = code


class TerminalTimeout(TerminalError):
    """No answer in time (the request may or may not have run)."""


class TerminalClosed(TerminalError):
    """The link is not open, or was lost (unplugged, port closed)."""


class TerminalRestarted(TerminalError):
    """The terminal answered HANDSHAKE: it restarted, its cards lost power; reconnect."""


def parse_reader(spec: str) -> tuple[str, int | None]:
    """'terminal:PATH' or 'terminal:PATH@SLOT' -> (path, slot or None); ValueError otherwise."""
    if not spec.startswith("terminal:"):
        raise ValueError(f"not a terminal reader: {spec!r} (terminal:PATH)")
    path = spec[len("terminal:"):]
    slot: int | None = None
    head, sep, tail = path.rpartition("@")
    if sep and tail.isdigit():
        path, slot = head, int(tail)
    if not path:
        raise ValueError("terminal:PATH needs the serial device path")
    return path, slot


@dataclass
class _Pending:
    frame: bytes = field(repr=False)
    done: threading.Event = field(default_factory=threading.Event)
    answer: Message | None = None
    resend_now: bool = False
    busy: bool = False


class TerminalLink:
    """One open serial link to a terminal: a prompt lane and a card lane, events to a callback."""

    def __init__(self, path: str, *, timeout: float = REQUEST_TIMEOUT_S,
                 resend_after: float = RESEND_AFTER_S,
                 on_event: Callable[[Event], None] | None = None,
                 on_lost: Callable[[Exception], None] | None = None,
                 tap: Callable[[str, bytes], None] | None = None) -> None:
        self.path = path
        self.timeout = timeout
        self.resend_after = resend_after
        self.on_event = on_event
        self.on_lost = on_lost
        self.tap = tap  # ("host" | "term", raw bytes): for tests and traffic captures
        self.hello_ack: HelloAck | None = None
        self.resends = 0
        self.link_errors = 0  # bad frames from the terminal, and our frames it rejected
        self._serial: serial.Serial | None = None
        self._reader: threading.Thread | None = None
        # Two lanes, as in the firmware (review M2): a prompt waiting for the patient or the
        # holder does not hold the card link. ABORT takes neither.
        self._request_lock = threading.Lock()  # card lane: one request at a time
        self._prompt_lock = threading.Lock()  # prompt lane: CONFIRM, SECURE_*
        self._write_lock = threading.Lock()
        self._seq_lock = threading.Lock()
        self._seq = 0
        self._pending: dict[int, _Pending] = {}
        self._lost: Exception | None = None
        self._closing = False

    # -- lifecycle ----------------------------------------------------------------------------
    def open(self) -> HelloAck:
        """Open the port, drop stale input, start the reader thread and handshake."""
        if self._serial is not None:
            raise TerminalError("the link is already open")
        try:
            ser = serial.Serial(self.path, baudrate=115200, timeout=0.05, exclusive=True)
        except (serial.SerialException, OSError, ValueError) as exc:
            raise TerminalClosed(f"cannot open {self.path}: {exc}") from None
        ser.reset_input_buffer()  # events and answers queued for a previous host
        self._serial = ser
        self._closing = False
        self._lost = None
        self._reader = threading.Thread(target=self._read_loop, name=f"terminal-rx {self.path}",
                                        daemon=True)
        self._reader.start()
        try:
            ack = self.request(Hello(PROTOCOL_VERSION, MAX_PAYLOAD))
            if not isinstance(ack, HelloAck) or ack.version != PROTOCOL_VERSION:
                raise TerminalError(f"the terminal speaks link protocol {ack!r}")
        except BaseException:
            self.close()
            raise
        self.hello_ack = ack
        log.info("terminal on %s: firmware %d.%d.%d, %d slots", self.path, ack.fw_major,
                 ack.fw_minor, ack.fw_patch, ack.slots)
        return ack

    def close(self) -> None:
        """Stop the reader thread and close the port; pending requests fail. Idempotent."""
        self._closing = True
        ser, self._serial = self._serial, None
        if ser is not None:
            with contextlib.suppress(AttributeError, OSError, serial.SerialException):
                ser.cancel_read()
        if self._reader is not None and self._reader is not threading.current_thread():
            self._reader.join(timeout=2)
        self._reader = None
        if ser is not None:
            with contextlib.suppress(OSError, serial.SerialException):
                ser.close()
        self._fail_pending(TerminalClosed("the link was closed"))

    @property
    def is_open(self) -> bool:
        """True while the port is open and the link not lost."""
        return self._serial is not None and self._lost is None

    def __enter__(self) -> TerminalLink:
        if self._serial is None:
            self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- frames --------------------------------------------------------------------------------
    def _write(self, frame: bytes) -> None:
        ser = self._serial
        if ser is None or self._lost is not None:
            raise TerminalClosed(f"the link to {self.path} is not open")
        if self.tap is not None:
            self.tap("host", frame)
        try:
            with self._write_lock:
                ser.write(frame)
        except (serial.SerialException, OSError) as exc:
            raise TerminalClosed(f"write to {self.path}: {exc}") from None

    def _read_loop(self) -> None:
        parser = FrameParser()
        last = time.monotonic()
        while not self._closing:
            ser = self._serial
            if ser is None:
                return
            try:
                data = ser.read(max(1, ser.in_waiting))
            except (serial.SerialException, OSError, TypeError, AttributeError) as exc:
                if not self._closing:
                    self._link_lost(exc)
                return
            now = time.monotonic()
            if data:
                if self.tap is not None:
                    self.tap("term", data)
                items = parser.feed(data)
                last = now
            elif parser.pending() and now - last > INTERBYTE_TIMEOUT_S:
                items = parser.expire()
            else:
                continue
            for item in items:
                self._route(item)

    def _link_lost(self, exc: Exception) -> None:
        log.warning("terminal link on %s lost: %s", self.path, exc)
        self._lost = exc
        self._fail_pending(TerminalClosed(f"the link to {self.path} was lost: {exc}"))
        if self.on_lost is not None:
            self.on_lost(exc)

    def _fail_pending(self, exc: TerminalError) -> None:
        for pending in list(self._pending.values()):
            pending.answer = LinkErrorMessage(0, str(exc))  # code 0: local failure
            pending.done.set()

    def _route(self, item: Frame | FrameError) -> None:
        if isinstance(item, FrameError):
            if item.code != ErrorCode.GARBAGE:
                self.link_errors += 1
                log.debug("terminal sent a bad frame: %s", item)
            return
        try:
            msg = decode_message(item)
        except DecodeError as exc:
            self.link_errors += 1
            log.debug("terminal sent an undecodable %s frame: %s", item.type, exc)
            return
        if item.seq == 0:
            if isinstance(msg, Event) and self.on_event is not None:
                try:
                    self.on_event(msg)
                except Exception:  # a callback bug must not kill the link
                    log.exception("terminal event callback failed")
            return
        pending = self._pending.get(item.seq)
        if pending is None:
            return  # a late duplicate of an answer we already have
        if isinstance(msg, LinkErrorMessage):
            if msg.code in _MANGLED:
                self.link_errors += 1
                pending.resend_now = True  # our frame arrived damaged and was not run
                pending.done.set()
                return
            if msg.code == ErrorCode.BUSY:
                pending.busy = True  # still running (our resend), or another request: wait
                return
        pending.answer = msg
        pending.done.set()

    # -- requests ------------------------------------------------------------------------------
    def _next_seq(self) -> int:
        with self._seq_lock:
            self._seq = self._seq % 255 + 1  # 1..255; 0 is for events
            return self._seq

    def request(self, msg: Message, *, timeout: float | None = None) -> Message:
        """Send one request and return its answer; TerminalError on ERROR or no answer."""
        lock = self._prompt_lock if isinstance(msg, _PROMPTS) else self._request_lock
        with lock:
            return self._exchange(msg, self.timeout if timeout is None else timeout)

    def _exchange(self, msg: Message, timeout: float) -> Message:
        seq = self._next_seq()
        pending = _Pending(encode_message(seq, msg))
        self._pending[seq] = pending
        try:
            self._write(pending.frame)
            now = time.monotonic()
            deadline = now + timeout
            resend_at = now + self.resend_after
            while True:
                wait = min(deadline, resend_at) - time.monotonic()
                if pending.done.wait(max(wait, 0.0)):
                    pending.done.clear()
                    if pending.answer is not None:
                        break
                    if pending.resend_now:
                        pending.resend_now = False
                        self.resends += 1
                        self._write(pending.frame)
                        resend_at = time.monotonic() + self.resend_after
                    continue
                now = time.monotonic()
                if now >= deadline:
                    what = "busy with another request" if pending.busy else "no answer"
                    raise TerminalTimeout(
                        f"{msg.TYPE.name}: {what} from the terminal within {timeout:.1f} s")
                if now >= resend_at:
                    # Same sequence number, same bytes: if the terminal ran it, it answers
                    # from its kept answer (or BUSY while it still runs); else it runs it now.
                    self.resends += 1
                    self._write(pending.frame)
                    resend_at = now + self.resend_after
        finally:
            del self._pending[seq]
        answer = pending.answer
        if isinstance(answer, LinkErrorMessage):
            code = answer.code
            if code == 0:
                raise TerminalClosed(answer.detail)
            name = ErrorCode(code).name if code in ErrorCode._value2member_map_ else f"{code:#x}"
            text = f"{msg.TYPE.name}: terminal error {name}" + (
                f" ({answer.detail})" if answer.detail else "")
            if code == ErrorCode.HANDSHAKE and not isinstance(msg, Hello):
                raise TerminalRestarted(text, code)
            raise TerminalError(text, code)
        return answer

    def try_request(self, msg: Message, *, timeout: float | None = None) -> Message | None:
        """Like request(), but None at once if another request holds the link (keepalives)."""
        if not self._request_lock.acquire(blocking=False):
            return None
        try:
            return self._exchange(msg, self.timeout if timeout is None else timeout)
        finally:
            self._request_lock.release()

    def abort(self) -> None:
        """End the prompt in progress (its request then fails with ABORTED)."""
        answer = self._exchange(Abort(), self.timeout)
        if not isinstance(answer, Ack):
            raise TerminalError(f"ABORT answered {answer.TYPE.name}")

    # -- typed helpers -------------------------------------------------------------------------
    def _expect(self, answer: Message, cls: type[Message]) -> Message:
        if not isinstance(answer, cls):
            raise TerminalError(f"expected {cls.TYPE.name}, the terminal answered "
                                f"{MessageType(answer.TYPE).name}")
        return answer

    def slot_status(self) -> tuple[SlotState, ...]:
        """Every slot's state."""
        answer = self._expect(self.request(SlotStatus()), SlotStatusResponse)
        assert isinstance(answer, SlotStatusResponse)
        return answer.states

    def power_on(self, slot: int) -> Atr:
        """Cold reset the card (ATR, PPS); the ATR message (atr, protocol, fidi)."""
        answer = self._expect(self.request(PowerOn(slot), timeout=TRANSMIT_TIMEOUT_S), Atr)
        assert isinstance(answer, Atr)
        return answer

    def power_off(self, slot: int) -> None:
        """Deactivate the card."""
        self._expect(self.request(PowerOff(slot)), Ack)

    def transmit(self, slot: int, apdu: bytes, *, timeout: float = TRANSMIT_TIMEOUT_S) -> bytes:
        """One APDU over T=0 (61xx / 6Cxx come back as they are); the response with SW."""
        answer = self._expect(self.request(Transmit(slot, bytes(apdu)), timeout=timeout),
                              Response)
        assert isinstance(answer, Response)
        return answer.data

    def secure(self, msg: SecureVerify | SecureChange | SecureUnblock) -> int:
        """A secure PIN request; the card's status word (the PIN stays on the terminal)."""
        timeout = (msg.timeout_s or 30) * (1 if isinstance(msg, SecureVerify) else 3)
        answer = self._expect(self.request(msg, timeout=timeout + PIN_MARGIN_S), PinResult)
        assert isinstance(answer, PinResult)
        return answer.sw

    def confirm(self, text: str, timeout_s: int) -> ConfirmOutcome:
        """Show text with OK / Annuler; the answer."""
        answer = self._expect(self.request(Confirm(timeout_s, text),
                                           timeout=(timeout_s or 30) + PIN_MARGIN_S),
                              ConfirmResult)
        assert isinstance(answer, ConfirmResult)
        return answer.result

    def display(self, lines: Sequence[str], secret_s: int = 0) -> None:
        """Replace the screen (at most 8 lines, ASCII, 128 bytes with the separators).

        secret_s > 0: a code, cleared by the terminal after that long (at most 60 s), on OK
        or a card removal, and never restored after a prompt.
        """
        self._expect(self.request(Display(tuple(lines), secret_s)), Ack)

    def identity(self, text: str) -> None:
        """Give the terminal the daemon's fingerprint text, shown when F1 is pressed."""
        self._expect(self.request(Identity(text)), Ack)


# -- transports ----------------------------------------------------------------------------------
def _card_error(exc: TerminalError, slot: int) -> Exception:
    if exc.code in _REMOVED:
        return CardRemoved(f"terminal slot {slot}: the card was removed ({exc})")
    if exc.code in _CANCELLED:
        return PinCancelled(_CANCELLED[ErrorCode(exc.code)])
    return exc


def _timeout_s(timeout: float) -> int:
    return max(1, min(255, math.ceil(timeout)))


# apdu.cps words the prompt "PIN CPS (3 left)"; the terminal writes its own prompt text and
# takes only the count from the host (SecurePinEntry passes it inside the prompt string).
_TRIES = re.compile(r"\((\d+) left\)")


def _tries(prompt: str) -> int:
    found = _TRIES.search(prompt)
    return min(int(found.group(1)), 15) if found else TRIES_UNKNOWN


class TerminalTransport:
    """One card slot of the terminal as apdu's Transport and SecurePinEntry."""

    # The firmware verifies the PUK and resets the PIN itself (IAS-ECC, RESET RETRY COUNTER
    # P1 02), from one prompt: apdu.cps.CpsSession.unblock_pin asks for that.
    unblocks_in_one_prompt = True

    def __init__(self, link: TerminalLink, slot: int) -> None:
        self.link = link
        self.slot = slot
        self._closed = False
        try:
            answer = link.power_on(slot)
        except TerminalError as exc:
            if exc.code == ErrorCode.NO_CARD:
                raise NoCard(f"no card in terminal slot {slot} ({link.path})") from None
            raise _card_error(exc, slot) from None
        self._atr = answer.atr
        self.protocol = answer.protocol
        self.fidi = answer.fidi  # TA1-coded Fi/Di the terminal runs the card at

    @property
    def atr(self) -> bytes:
        """The ATR the terminal read at power on."""
        return self._atr

    def transmit(self, command: bytes) -> bytes:
        """Send one APDU; CardRemoved if the card left, TerminalError otherwise."""
        if self._closed:
            raise TransportError("transport is closed")
        try:
            return self.link.transmit(self.slot, command)
        except TerminalError as exc:
            raise _card_error(exc, self.slot) from None

    def close(self) -> None:
        """Power the card off (a verified PIN does not outlive the transport); idempotent."""
        if self._closed:
            return
        self._closed = True
        try:
            self.link.power_off(self.slot)
        except TerminalError as exc:
            log.debug("terminal slot %d: power off failed: %s", self.slot, exc)

    def __enter__(self) -> TerminalTransport:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _secure(self, msg: SecureVerify | SecureChange | SecureUnblock) -> int:
        if self._closed:
            raise TransportError("transport is closed")
        try:
            return self.link.secure(msg)
        except TerminalError as exc:
            raise _card_error(exc, self.slot) from None

    def secure_verify(self, template: bytes, *, min_length: int, max_length: int,
                      pad_to: int, pad_byte: int, prompt: str, timeout: float) -> int:
        """PIN typed on the terminal keypad into a VERIFY built there; the SW (or PinCancelled).

        The terminal shows its own "PIN carte CPS" prompt and refuses (TerminalError
        PIN_POLICY) a template, slot or card its PIN policy does not allow.
        """
        cla, ins, p1, p2 = template[:4]
        pin = PinField(min_length, max_length, pad_byte, pad_to, PinEncoding.ASCII)
        return self._secure(SecureVerify(self.slot, cla, ins, p1, p2, _timeout_s(timeout),
                                         PromptKind.PIN_CPS, _tries(prompt), pin))

    def secure_change(self, template: bytes, *, current_length: tuple[int, int],
                      new_length: tuple[int, int], pad_to: int, pad_byte: int, prompt: str,
                      timeout: float) -> int:
        """CHANGE REFERENCE DATA with old and new PIN typed (new one twice) on the terminal."""
        return self._two(SecureChange, template, current_length, new_length, pad_to, pad_byte,
                         prompt, timeout)

    def secure_unblock(self, template: bytes, *, current_length: tuple[int, int],
                       new_length: tuple[int, int], pad_to: int, pad_byte: int, prompt: str,
                       timeout: float) -> int:
        """RESET RETRY COUNTER with the PUK and a new PIN typed on the terminal."""
        return self._two(SecureUnblock, template, current_length, new_length, pad_to,
                         pad_byte, prompt, timeout)

    def _two(self, cls: type[SecureChange], template: bytes, current: tuple[int, int],
             new: tuple[int, int], pad_to: int, pad_byte: int, prompt: str,
             timeout: float) -> int:
        cla, ins, p1, p2 = template[:4]
        fields = [PinField(lo, hi, pad_byte, pad_to, PinEncoding.ASCII) for lo, hi in (current,
                                                                                      new)]
        return self._secure(cls(self.slot, cla, ins, p1, p2, _timeout_s(timeout),
                                PromptKind.PIN_CPS, _tries(prompt), fields[0], fields[1]))


# -- UI ------------------------------------------------------------------------------------------
def _fit(lines: Sequence[str], rows: int) -> tuple[str, ...]:
    out: list[str] = []
    for line in lines:
        out += fit_lines(line, DISPLAY_COLUMNS, DISPLAY_LINES) or [""]
    if len(out) > rows:
        out = [*out[:rows - 1], out[rows - 1][:DISPLAY_COLUMNS - 3] + "..."]
    while out and len("\n".join(out)) > MAX_TEXT:  # 8 full rows + 7 LFs exceed 128 bytes
        if out[-1]:
            out[-1] = out[-1][:-1]
        else:
            out.pop()
    return tuple(line.rstrip() for line in out)


class TerminalUI:
    """The terminal's display and OK / Cancel keys (edged.readers.ui.TerminalUI)."""

    def __init__(self, link: TerminalLink) -> None:
        self.link = link

    async def show(self, lines: Sequence[str], *, secret_s: float = 0) -> None:
        """Show lines (folded to ASCII, wrapped to 16 columns, at most 8 rows).

        secret_s > 0 marks a code: the terminal clears it after that many seconds (capped
        at 60), on OK or on a card removal, and never shows it again after a prompt.
        """
        fitted = _fit(lines, min(DISPLAY_LINES, MAX_LINES))
        secret = 0 if secret_s <= 0 else max(1, min(MAX_SECRET_S, math.ceil(secret_s)))
        await asyncio.to_thread(self.link.display, fitted, secret)

    async def confirm(self, text: str, *, timeout: float) -> Answer:
        """Ask on the terminal; 'ok', 'cancel' or 'timeout' (the terminal times the prompt)."""
        body = "\n".join(_fit(text.split("\n"), DISPLAY_LINES - 1))  # + "OK / Annuler"
        future = asyncio.ensure_future(asyncio.to_thread(self.link.confirm, body or "?",
                                                         _timeout_s(timeout)))
        try:
            outcome = await asyncio.shield(future)
        except asyncio.CancelledError:
            # Nobody waits for the answer any more: end the prompt on the terminal too (its
            # request then fails with ABORTED, which is expected and dropped here).
            future.add_done_callback(lambda f: f.cancelled() or f.exception())
            await asyncio.to_thread(self._abort)
            raise
        return {ConfirmOutcome.OK: Answer.OK, ConfirmOutcome.CANCEL: Answer.CANCEL}.get(
            outcome, Answer.TIMEOUT)

    def _abort(self) -> None:
        try:
            self.link.abort()
        except TerminalError as exc:
            log.debug("abort: %s", exc)


def identity_text(fingerprint: str) -> str:
    """The fingerprint as the terminal shows it on F1: 4-digit groups, three per 16-column row."""
    hexdigits = "".join(c for c in fingerprint.lower() if c in "0123456789abcdef")
    groups = [hexdigits[i:i + 4] for i in range(0, len(hexdigits), 4)]
    rows = [" ".join(groups[i:i + 3]) for i in range(0, len(groups), 3)]
    return "\n".join(rows)[:MAX_IDENTITY] or "?"


# -- supervisor ----------------------------------------------------------------------------------
class TerminalReader:
    """Keeps a link to the terminal up and reports cards and connection state.

    on_card(slot, present, atr) when a card is seen (ATR read by a power on and off) or
    leaves; on_state(connected) when the link comes up or goes down (its cards are then
    reported gone). Reconnects with capped exponential backoff; a keepalive SLOT_STATUS
    notices a terminal that restarted (HANDSHAKE) or stopped answering.
    """

    def __init__(self, path: str, *, on_card: Callable[[int, bool, bytes], None] | None = None,
                 on_state: Callable[[bool], None] | None = None,
                 on_cancel: Callable[[], None] | None = None, timeout: float = REQUEST_TIMEOUT_S,
                 keepalive: float = 2.0, backoff: tuple[float, float] = (0.5, 10.0),
                 fingerprint: Callable[[], str] | None = None) -> None:
        self.path = path
        self.fingerprint = fingerprint  # the daemon's, shown by the terminal on F1
        self.on_card = on_card
        self.on_state = on_state
        self.on_cancel = on_cancel
        self.timeout = timeout
        self.keepalive = keepalive
        self.backoff = backoff
        self.link: TerminalLink | None = None
        self.present: dict[int, bytes] = {}  # slot -> ATR of the cards reported present
        self.connects = 0
        self._events: queue.Queue[Event | Exception] = queue.Queue()
        self._stop = threading.Event()
        self._connected = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"terminal {path}", daemon=True)

    @property
    def connected(self) -> bool:
        """True while the link is up."""
        return self._connected.is_set()

    def start(self) -> TerminalReader:
        """Start connecting in the background."""
        self._thread.start()
        return self

    def wait_connected(self, timeout: float) -> bool:
        """Block until connected (tests, CLI); False on timeout."""
        return self._connected.wait(timeout)

    def stop(self) -> None:
        """Stop reconnecting, close the link; idempotent."""
        self._stop.set()
        self._events.put(TerminalClosed("stopping"))
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)
        link, self.link = self.link, None
        if link is not None:
            link.close()

    def transport(self, slot: int) -> TerminalTransport:
        """A transport on a slot (the arbiter's opener); TerminalClosed when disconnected."""
        link = self.link
        if link is None or not self.connected:
            raise TerminalClosed(f"terminal {self.path} is not connected")
        return TerminalTransport(link, slot)

    def ui(self) -> TerminalUI:
        """The terminal's display and keys over the current link (TerminalClosed if none)."""
        return TerminalUI(_LiveLink(self))  # type: ignore[arg-type]

    def _run(self) -> None:
        delay = self.backoff[0]
        while not self._stop.is_set():
            try:
                self._session()
                delay = self.backoff[0]
            except TerminalError as exc:
                log.info("terminal %s: %s; retrying in %.1f s", self.path, exc, delay)
            except Exception:  # a bug here must not end reconnection for good
                log.exception("terminal %s: unexpected error; retrying in %.1f s", self.path,
                              delay)
            self._down()
            if self._stop.wait(delay):
                return
            delay = min(delay * 2, self.backoff[1])

    def _session(self) -> None:
        link = TerminalLink(self.path, timeout=self.timeout, on_event=self._events.put,
                            on_lost=self._events.put)
        link.open()
        self.link = link
        if self.fingerprint is not None:
            link.identity(identity_text(self.fingerprint()))
        self.connects += 1
        self._connected.set()
        if self.on_state is not None:
            self.on_state(True)
        self._sync(link.slot_status())
        while not self._stop.is_set():
            try:
                item = self._events.get(timeout=self.keepalive)
            except queue.Empty:
                answer = link.try_request(SlotStatus())  # None: the link is busy, so alive
                if isinstance(answer, SlotStatusResponse):
                    self._sync(answer.states)
                continue
            if isinstance(item, Exception):
                raise item if isinstance(item, TerminalError) else TerminalClosed(str(item))
            if item.kind == EventKind.CANCEL_PRESSED:
                if self.on_cancel is not None:
                    self.on_cancel()
            elif item.kind == EventKind.CARD_INSERTED:
                self._card_in(link, item.slot)
            elif item.kind in (EventKind.CARD_REMOVED, EventKind.SLOT_FAULT):
                self._card_out(item.slot)
                if item.kind == EventKind.SLOT_FAULT:
                    log.warning("terminal slot %d: interface chip fault", item.slot)

    def _sync(self, states: Sequence[SlotState]) -> None:
        link = self.link
        for slot, state in enumerate(states):
            if state == SlotState.EMPTY:
                self._card_out(slot)
            elif slot not in self.present and link is not None:
                self._card_in(link, slot)

    def _card_in(self, link: TerminalLink, slot: int) -> None:
        if slot in self.present:
            self._card_out(slot)  # a new card without a removal seen in between
        try:
            atr = link.power_on(slot).atr
            link.power_off(slot)
        except TerminalRestarted:
            raise
        except TerminalTimeout as exc:
            # The slot is BUSY under a PIN prompt (a card swapped meanwhile), or the terminal
            # is slow: not seen yet; the next keepalive's SLOT_STATUS tries again.
            log.info("terminal slot %d: card not read yet: %s", slot, exc)
            return
        except TerminalError as exc:
            if exc.code in _REMOVED:
                return
            log.warning("terminal slot %d: card does not answer: %s", slot, exc)
            atr = b""
        self.present[slot] = atr
        if self.on_card is not None:
            self.on_card(slot, True, atr)

    def _card_out(self, slot: int) -> None:
        if self.present.pop(slot, None) is not None and self.on_card is not None:
            self.on_card(slot, False, b"")

    def _down(self) -> None:
        link, self.link = self.link, None
        was = self._connected.is_set()
        self._connected.clear()
        if link is not None:
            link.close()
        for slot in list(self.present):
            self._card_out(slot)
        while not self._events.empty():
            self._events.get_nowait()
        if was and self.on_state is not None:
            self.on_state(False)


class _LiveLink:
    """Forwards to whichever link the reader has now (the UI outlives reconnections)."""

    def __init__(self, reader: TerminalReader) -> None:
        self._reader = reader

    def __getattr__(self, name: str) -> object:
        link = self._reader.link
        if link is None:
            raise TerminalClosed(f"terminal {self._reader.path} is not connected")
        return getattr(link, name)
