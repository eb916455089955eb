"""The link client: pyserial, handshake, two request lanes, safe resends, the reader thread.

One request in flight per lane (prompt and card, as the terminal runs them); a lost answer
is asked for again with the same frame, which the terminal answers from its kept answer and
never runs twice (docs/link-protocol.md, "Sequence numbers, two lanes").
"""

from __future__ import annotations

import contextlib
import logging
import math
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import serial

from bifente.apdu.errors import TransportError
from bifente.edged.readers.link import (
    INTERBYTE_TIMEOUT_S,
    MAX_PAYLOAD,
    PROTOCOL_VERSION,
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
    Frame,
    FrameError,
    FrameParser,
    Hello,
    HelloAck,
    Identity,
    LinkErrorMessage,
    Message,
    MessageType,
    PairWindow,
    PinResult,
    PowerOff,
    PowerOn,
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

log = logging.getLogger(__name__)

PIN_MARGIN_S = 10.0  # a prompt's answer may come this long after its timeout (card time)
TRANSMIT_TIMEOUT_S = 15.0  # CPS3 WWT is 3.8 s (TC2 = 42), restarted by every NULL byte
REQUEST_TIMEOUT_S = 5.0
RESEND_AFTER_S = 2.0
# The terminal never ran a frame it answers with these: resend it at once.
_MANGLED = frozenset({ErrorCode.BAD_CRC, ErrorCode.TRUNCATED, ErrorCode.OVERSIZE,
                      ErrorCode.BAD_VERSION})
REMOVED_CODES = frozenset({ErrorCode.NO_CARD, ErrorCode.CARD_REMOVED})
# The terminal's prompt lane owns the screen: a DISPLAY waits for a prompt, never covers it.
_PROMPTS = (Confirm, SecureVerify, SecureChange, SecureUnblock, Display)
CANCELLED_CODES = {
    ErrorCode.USER_CANCELLED: "PIN entry cancelled on the terminal",
    ErrorCode.PROMPT_TIMEOUT: "PIN entry timed out on the terminal",
    ErrorCode.ABORTED: "PIN entry aborted",
    ErrorCode.PIN_MISMATCH: "the new PIN and its confirmation differ; nothing was changed",
}


def u8_seconds(timeout: float) -> int:
    """A timeout in whole seconds, as the u8 fields of CONFIRM and SECURE_* carry it (1..255)."""
    return max(1, min(255, math.ceil(timeout)))


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
    def _register(self, msg: Message) -> tuple[int, _Pending]:
        """The next free sequence number (1..255; 0 is for events), with its pending entry.

        The two lanes share the numbers: while a prompt waits (up to a minute), the card lane
        can go all the way round, so a number still waiting is skipped, never reused (reusing
        it would hand one lane's answer to the other)."""
        with self._seq_lock:
            for _ in range(255):
                self._seq = self._seq % 255 + 1
                if self._seq not in self._pending:
                    pending = _Pending(encode_message(self._seq, msg))
                    self._pending[self._seq] = pending
                    return self._seq, pending
        raise TerminalError("no free sequence number on the terminal link")  # 255 in flight

    def request(self, msg: Message, *, timeout: float | None = None) -> Message:
        """Send one request and return its answer; TerminalError on ERROR or no answer."""
        lock = self._prompt_lock if isinstance(msg, _PROMPTS) else self._request_lock
        with lock:
            return self._exchange(msg, self.timeout if timeout is None else timeout)

    def _exchange(self, msg: Message, timeout: float) -> Message:
        seq, pending = self._register(msg)
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
            with self._seq_lock:
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

    def pair_window(self, seconds: int) -> None:
        """Tell the terminal a pairing window is open for `seconds` (0: closed); it counts down."""
        self._expect(self.request(PairWindow(seconds)), Ack)
