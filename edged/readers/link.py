"""Host side of the terminal link: CRC, frames, stream parser and one dataclass per message.

Same format as firmware/link.py (docs/link-protocol.md); both are checked against
docs/link-vectors.json. This module only encodes and decodes: the pyserial transport and the
request/response logic build on it.
"""

from __future__ import annotations

import binascii
import enum
from dataclasses import dataclass, field, fields
from typing import ClassVar

__all__ = [
    "FRAME_VERSION",
    "HEADER_LEN",
    "INTERBYTE_TIMEOUT_S",
    "MAX_PAYLOAD",
    "MIN_PEER_PAYLOAD",
    "OVERHEAD",
    "PROTOCOL_VERSION",
    "SOF",
    "Abort",
    "Ack",
    "Atr",
    "Confirm",
    "ConfirmOutcome",
    "ConfirmResult",
    "DecodeError",
    "Display",
    "EncodeError",
    "ErrorCode",
    "Event",
    "EventKind",
    "Frame",
    "FrameError",
    "FrameParser",
    "Hello",
    "HelloAck",
    "Identity",
    "LinkError",
    "LinkErrorMessage",
    "Message",
    "MessageType",
    "PinEncoding",
    "PinField",
    "PinResult",
    "PowerOff",
    "PowerOn",
    "PromptKind",
    "Response",
    "SecureChange",
    "SecureUnblock",
    "SecureVerify",
    "SlotState",
    "SlotStatus",
    "SlotStatusResponse",
    "Transmit",
    "crc16",
    "decode_message",
    "encode_frame",
    "encode_message",
    "message_fields",
]

SOF = 0xA5
FRAME_VERSION = 1
PROTOCOL_VERSION = 2  # 2: firmware-owned PIN prompts and policy, secret screens, IDENTITY
HEADER_LEN = 6  # SOF VER SEQ TYPE LEN_HI LEN_LO
OVERHEAD = 8  # header + CRC
MAX_PAYLOAD = 512  # a short APDU (262 with the slot byte) or a 258-byte response fits
MIN_PEER_PAYLOAD = 262
INTERBYTE_TIMEOUT_S = 0.2  # a frame stalled this long mid-way is dropped as TRUNCATED

MAX_SLOTS = 8
MAX_ATR = 33  # ISO 7816-3 §8.2.1
MAX_RESPONSE = 258
MAX_TEXT = 128
MAX_LINES = 8
MAX_DETAIL = 64
MAX_PIN_DIGITS = 12
MAX_PIN_BLOCK = 16
NO_SLOT = 0xFF
TRIES_UNKNOWN = 0xFF  # SECURE_* `tries` when the host does not know the PIN counter
MAX_SECRET_S = 60  # the terminal clears a secret screen after at most this long
MAX_IDENTITY = 128


class MessageType(enum.IntEnum):
    """Frame TYPE byte (docs/link-protocol.md, Messages)."""

    HELLO = 0x01
    SLOT_STATUS = 0x02
    POWER_ON = 0x03
    POWER_OFF = 0x04
    TRANSMIT = 0x05
    SECURE_VERIFY = 0x06
    SECURE_CHANGE = 0x07
    SECURE_UNBLOCK = 0x08
    CONFIRM = 0x09
    DISPLAY = 0x0A
    ABORT = 0x0B
    IDENTITY = 0x0C
    ACK = 0x80
    HELLO_ACK = 0x81
    SLOT_STATUS_RSP = 0x82
    ATR = 0x83
    RESPONSE = 0x85
    PIN_RESULT = 0x86
    CONFIRM_RESULT = 0x89
    EVENT = 0xC0
    ERROR = 0xFF


class ErrorCode(enum.IntEnum):
    """ERROR frame codes and parser error kinds."""

    BAD_CRC = 0x01
    OVERSIZE = 0x02
    TRUNCATED = 0x03
    BAD_VERSION = 0x04
    UNKNOWN_TYPE = 0x05
    BAD_PAYLOAD = 0x06
    BUSY = 0x07
    GARBAGE = 0x08  # parser item only: bytes skipped before a SOF
    HANDSHAKE = 0x09
    BAD_SLOT = 0x10
    NO_CARD = 0x11
    NOT_POWERED = 0x12
    CARD_MUTE = 0x13
    CARD_REMOVED = 0x14
    CARD_PROTOCOL = 0x15
    BAD_ATR = 0x16
    UNSUPPORTED_CARD = 0x17
    BAD_APDU = 0x18
    HW_FAULT = 0x19
    USER_CANCELLED = 0x20
    PROMPT_TIMEOUT = 0x21
    ABORTED = 0x22
    PIN_MISMATCH = 0x23
    PIN_POLICY = 0x24  # the terminal's PIN policy refused a secure PIN request
    INTERNAL = 0x30


class SlotState(enum.IntEnum):
    """Per-slot state in SLOT_STATUS_RSP."""

    EMPTY = 0
    PRESENT = 1
    POWERED = 2
    ERROR = 3


class EventKind(enum.IntEnum):
    """EVENT kinds."""

    CARD_INSERTED = 1
    CARD_REMOVED = 2
    CANCEL_PRESSED = 3
    SLOT_FAULT = 4


class ConfirmOutcome(enum.IntEnum):
    """CONFIRM_RESULT values."""

    OK = 0
    CANCEL = 1
    TIMEOUT = 2


class PinEncoding(enum.IntEnum):
    """How the terminal writes the digits into the APDU."""

    ASCII = 0  # one '0'..'9' byte per digit
    BCD = 1  # two digits per byte, high nibble first; an odd tail takes the pad's low nibble


class PromptKind(enum.IntEnum):
    """Secure PIN prompts the firmware owns (its text, card, slot and PIN reference)."""

    PIN_CPS = 1  # the CPS holder PIN, reference 01, CPS slot 0


class LinkError(Exception):
    """Base of the codec's errors; `code` says which rule was broken."""

    def __init__(self, code: ErrorCode, detail: str = "", seq: int = 0) -> None:
        super().__init__(f"{code.name}: {detail}" if detail else code.name)
        self.code = code
        self.detail = detail
        self.seq = seq


class FrameError(LinkError):
    """A stream item: bytes that did not form a valid frame."""


class DecodeError(LinkError):
    """A valid frame whose type or payload is not acceptable."""


class EncodeError(ValueError):
    """A message with values the wire format cannot carry (a caller bug)."""


def crc16(data: bytes | bytearray | memoryview) -> int:
    """CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF, no reflection, xorout 0)."""
    return binascii.crc_hqx(bytes(data), 0xFFFF)


@dataclass(frozen=True)
class Frame:
    """One checked frame."""

    seq: int
    type: int
    payload: bytes = field(repr=False)

    def to_bytes(self) -> bytes:
        """The frame on the wire."""
        return encode_frame(self.seq, self.type, self.payload)

    @property
    def crc(self) -> int:
        """CRC over VER..PAYLOAD."""
        return crc16(self.to_bytes()[1:-2])


def encode_frame(seq: int, mtype: int, payload: bytes) -> bytes:
    """SOF VER SEQ TYPE LEN payload CRC; EncodeError if a value does not fit."""
    if not 0 <= seq <= 0xFF or not 0 <= mtype <= 0xFF:
        raise EncodeError(f"seq {seq} / type {mtype} out of range")
    if len(payload) > MAX_PAYLOAD:
        raise EncodeError(f"payload {len(payload)} > {MAX_PAYLOAD}")
    body = bytes((FRAME_VERSION, seq, mtype, len(payload) >> 8, len(payload) & 0xFF)) + payload
    return bytes((SOF,)) + body + crc16(body).to_bytes(2, "big")


class FrameParser:
    """Stream parser: feed() any chunking, get Frame and FrameError items in stream order.

    The length field is checked against max_payload before any payload byte is awaited;
    after a bad frame the parser rescans from the byte after its SOF, so a good frame that
    followed (or hid inside) a bad one is still found.
    """

    def __init__(self, max_payload: int = MAX_PAYLOAD) -> None:
        self.max_payload = max_payload
        self._buf = bytearray()
        self._garbage = 0

    def pending(self) -> bool:
        """True while a frame has started but is not complete."""
        return bool(self._buf)

    def feed(self, data: bytes | bytearray | memoryview) -> list[Frame | FrameError]:
        """Consume bytes; return the items they complete."""
        out: list[Frame | FrameError] = []
        for b in bytes(data):
            if not self._buf:
                if b != SOF:
                    self._garbage += 1
                    continue
                self._flush_garbage(out)
            self._buf.append(b)
            self._settle(out)
        return out

    def expire(self) -> list[Frame | FrameError]:
        """Inter-byte timeout: report the stalled frame as TRUNCATED and rescan its bytes."""
        out: list[Frame | FrameError] = []
        if self._buf:
            seq = self._buf[2] if len(self._buf) > 2 else 0
            out.append(FrameError(ErrorCode.TRUNCATED, f"{len(self._buf)} bytes", seq))
            self._drop(1)
            self._settle(out)
        else:
            self._flush_garbage(out)
        return out

    def _flush_garbage(self, out: list[Frame | FrameError]) -> None:
        if self._garbage:
            out.append(FrameError(ErrorCode.GARBAGE, f"{self._garbage} bytes"))
            self._garbage = 0

    def _settle(self, out: list[Frame | FrameError]) -> None:
        buf = self._buf
        while len(buf) >= HEADER_LEN:
            seq = buf[2]
            length = (buf[4] << 8) | buf[5]
            if buf[1] != FRAME_VERSION:
                out.append(FrameError(ErrorCode.BAD_VERSION, f"frame version {buf[1]}", seq))
                self._drop(1)
                continue
            if length > self.max_payload:
                out.append(FrameError(ErrorCode.OVERSIZE,
                                      f"length {length} > {self.max_payload}", seq))
                self._drop(1)
                continue
            total = HEADER_LEN + length + 2
            if len(buf) < total:
                return
            crc = crc16(buf[1:total - 2])
            got = (buf[total - 2] << 8) | buf[total - 1]
            if crc != got:
                out.append(FrameError(ErrorCode.BAD_CRC, f"crc {got:04X} != {crc:04X}", seq))
                self._drop(1)
                continue
            out.append(Frame(seq, buf[3], bytes(buf[HEADER_LEN:total - 2])))
            self._drop(total)

    def _drop(self, k: int) -> None:
        # Remove k bytes, then skip silently to the next SOF inside the buffer.
        buf = self._buf
        j = buf.find(SOF, k)
        del buf[:j if j >= 0 else len(buf)]


# --- field checks --------------------------------------------------------------------------
def _bad(detail: str) -> DecodeError:
    return DecodeError(ErrorCode.BAD_PAYLOAD, detail)


def _need(p: bytes, lo: int, hi: int, what: str) -> None:
    if not lo <= len(p) <= hi:
        raise _bad(f"{what}: {len(p)} bytes, expected {lo}..{hi}")


def _check_u8(v: int, what: str) -> int:
    if not isinstance(v, int) or not 0 <= v <= 0xFF:
        raise EncodeError(f"{what} {v!r} is not a byte")
    return v


def _check_slot_enc(v: int) -> int:
    if not isinstance(v, int) or not 0 <= v < MAX_SLOTS:
        raise EncodeError(f"slot {v!r} out of range")
    return v


def _slot(v: int) -> int:
    if v >= MAX_SLOTS:
        raise DecodeError(ErrorCode.BAD_SLOT, f"slot {v}")
    return v


def _text_ok(raw: bytes, newline: bool) -> bool:
    return all(0x20 <= b <= 0x7E or (newline and b == 0x0A) for b in raw)


def _text_dec(raw: bytes, limit: int, what: str, newline: bool = True) -> str:
    if len(raw) > limit:
        raise _bad(f"{what}: {len(raw)} bytes > {limit}")
    if not _text_ok(raw, newline):
        raise _bad(f"{what}: not printable ASCII")
    return raw.decode("ascii")


def _text_enc(text: str, limit: int, what: str, newline: bool = True) -> bytes:
    try:
        raw = text.encode("ascii")
    except UnicodeEncodeError as exc:
        raise EncodeError(f"{what}: ASCII only (fold accents before sending)") from exc
    if len(raw) > limit or not _text_ok(raw, newline):
        raise EncodeError(f"{what}: at most {limit} printable ASCII bytes")
    return raw


def _u16_enc(v: int, lo: int, what: str) -> bytes:
    if not isinstance(v, int) or not lo <= v <= 0xFFFF:
        raise EncodeError(f"{what} {v!r} not in {lo}..65535")
    return v.to_bytes(2, "big")


# --- messages ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Message:
    """Base: TYPE, to_payload() and parse() (exact inverses)."""

    TYPE: ClassVar[MessageType]

    def to_payload(self) -> bytes:
        """Payload bytes (EncodeError on values the format cannot carry)."""
        return b""

    @classmethod
    def parse(cls, p: bytes) -> Message:
        """Decode a payload of this type (DecodeError on anything else)."""
        _need(p, 0, 0, cls.TYPE.name)
        return cls()


@dataclass(frozen=True)
class SlotStatus(Message):
    """Ask for every slot's state."""

    TYPE: ClassVar[MessageType] = MessageType.SLOT_STATUS


@dataclass(frozen=True)
class Abort(Message):
    """End the prompt in progress (its request answers ERROR ABORTED)."""

    TYPE: ClassVar[MessageType] = MessageType.ABORT


@dataclass(frozen=True)
class Ack(Message):
    """Success without data."""

    TYPE: ClassVar[MessageType] = MessageType.ACK


@dataclass(frozen=True)
class Hello(Message):
    """Handshake: protocol version and the host's receive limit."""

    TYPE: ClassVar[MessageType] = MessageType.HELLO
    version: int = PROTOCOL_VERSION
    max_payload: int = MAX_PAYLOAD

    def to_payload(self) -> bytes:
        """version u8, max_payload u16."""
        return bytes((_check_u8(self.version, "version"),)) + _u16_enc(
            self.max_payload, MIN_PEER_PAYLOAD, "max_payload")

    @classmethod
    def parse(cls, p: bytes) -> Hello:
        """Decode 3 bytes."""
        _need(p, 3, 3, "HELLO")
        mp = int.from_bytes(p[1:3], "big")
        if mp < MIN_PEER_PAYLOAD:
            raise _bad(f"max_payload {mp} < {MIN_PEER_PAYLOAD}")
        return cls(p[0], mp)


@dataclass(frozen=True)
class HelloAck(Message):
    """Handshake answer: versions, the terminal's receive limit, slot count."""

    TYPE: ClassVar[MessageType] = MessageType.HELLO_ACK
    version: int
    fw_major: int
    fw_minor: int
    fw_patch: int
    max_payload: int
    slots: int

    def to_payload(self) -> bytes:
        """version, fw major/minor/patch, max_payload u16, slots."""
        if not 1 <= self.slots <= MAX_SLOTS:
            raise EncodeError(f"slots {self.slots}")
        head = bytes(_check_u8(v, "version") for v in
                     (self.version, self.fw_major, self.fw_minor, self.fw_patch))
        return head + _u16_enc(self.max_payload, MIN_PEER_PAYLOAD, "max_payload") + bytes(
            (self.slots,))

    @classmethod
    def parse(cls, p: bytes) -> HelloAck:
        """Decode 7 bytes."""
        _need(p, 7, 7, "HELLO_ACK")
        mp = int.from_bytes(p[4:6], "big")
        if mp < MIN_PEER_PAYLOAD:
            raise _bad(f"max_payload {mp} < {MIN_PEER_PAYLOAD}")
        if not 1 <= p[6] <= MAX_SLOTS:
            raise _bad(f"slots {p[6]}")
        return cls(p[0], p[1], p[2], p[3], mp, p[6])


@dataclass(frozen=True)
class SlotStatusResponse(Message):
    """One SlotState per slot."""

    TYPE: ClassVar[MessageType] = MessageType.SLOT_STATUS_RSP
    states: tuple[SlotState, ...]

    def to_payload(self) -> bytes:
        """count u8, states."""
        if not 1 <= len(self.states) <= MAX_SLOTS:
            raise EncodeError(f"{len(self.states)} slots")
        return bytes((len(self.states), *(SlotState(s) for s in self.states)))

    @classmethod
    def parse(cls, p: bytes) -> SlotStatusResponse:
        """Decode count + states."""
        _need(p, 2, 1 + MAX_SLOTS, "SLOT_STATUS_RSP")
        if p[0] != len(p) - 1:
            raise _bad(f"count {p[0]} but {len(p) - 1} states")
        if any(s > SlotState.ERROR for s in p[1:]):
            raise _bad("unknown slot state")
        return cls(tuple(SlotState(s) for s in p[1:]))


@dataclass(frozen=True)
class PowerOn(Message):
    """Cold reset the card in a slot; answered by Atr."""

    TYPE: ClassVar[MessageType] = MessageType.POWER_ON
    slot: int

    def to_payload(self) -> bytes:
        """slot u8."""
        return bytes((_check_slot_enc(self.slot),))

    @classmethod
    def parse(cls, p: bytes) -> PowerOn:
        """Decode 1 byte."""
        _need(p, 1, 1, cls.TYPE.name)
        return cls(_slot(p[0]))


@dataclass(frozen=True)
class PowerOff(PowerOn):
    """Deactivate the card in a slot; answered by Ack."""

    TYPE: ClassVar[MessageType] = MessageType.POWER_OFF


@dataclass(frozen=True)
class Atr(Message):
    """POWER_ON answer: slot, protocol, TA1-coded Fi/Di in use, ATR bytes."""

    TYPE: ClassVar[MessageType] = MessageType.ATR
    slot: int
    protocol: int
    fidi: int
    atr: bytes

    def to_payload(self) -> bytes:
        """slot, protocol, fidi, ATR (2..33)."""
        if self.protocol not in (0, 1) or not 2 <= len(self.atr) <= MAX_ATR:
            raise EncodeError("protocol must be 0/1 and the ATR 2..33 bytes")
        return bytes((_check_slot_enc(self.slot), self.protocol,
                      _check_u8(self.fidi, "fidi"))) + bytes(self.atr)

    @classmethod
    def parse(cls, p: bytes) -> Atr:
        """Decode."""
        _need(p, 5, 3 + MAX_ATR, "ATR")
        if p[1] not in (0, 1):
            raise _bad(f"protocol {p[1]}")
        return cls(_slot(p[0]), p[1], p[2], bytes(p[3:]))


@dataclass(frozen=True)
class Transmit(Message):
    """A short APDU for the card in a slot; answered by Response."""

    TYPE: ClassVar[MessageType] = MessageType.TRANSMIT
    slot: int
    apdu: bytes = field(repr=False)  # may carry health data

    def to_payload(self) -> bytes:
        """slot u8 + APDU."""
        if not 4 <= len(self.apdu) <= MAX_PAYLOAD - 1:
            raise EncodeError(f"APDU of {len(self.apdu)} bytes")
        return bytes((_check_slot_enc(self.slot),)) + bytes(self.apdu)

    @classmethod
    def parse(cls, p: bytes) -> Transmit:
        """Decode."""
        _need(p, 5, MAX_PAYLOAD, "TRANSMIT")
        return cls(_slot(p[0]), bytes(p[1:]))


@dataclass(frozen=True)
class Response(Message):
    """The card's response: data then SW1 SW2."""

    TYPE: ClassVar[MessageType] = MessageType.RESPONSE
    data: bytes = field(repr=False)

    @property
    def sw(self) -> int:
        """SW1 SW2 as one integer."""
        return int.from_bytes(self.data[-2:], "big")

    def to_payload(self) -> bytes:
        """2..258 bytes."""
        if not 2 <= len(self.data) <= MAX_RESPONSE:
            raise EncodeError(f"response of {len(self.data)} bytes")
        return bytes(self.data)

    @classmethod
    def parse(cls, p: bytes) -> Response:
        """Decode."""
        _need(p, 2, MAX_RESPONSE, "RESPONSE")
        return cls(bytes(p))


@dataclass(frozen=True)
class PinField:
    """How one PIN goes into the APDU: limits, pad byte, padded length (0: none), encoding."""

    min_len: int
    max_len: int
    pad: int = 0xFF
    padded_len: int = 0
    encoding: PinEncoding | int = PinEncoding.ASCII  # int: an unknown code, refused by parse

    def _problem(self) -> str | None:
        if not 1 <= self.min_len <= self.max_len <= MAX_PIN_DIGITS:
            return f"PIN length {self.min_len}..{self.max_len}"
        if self.encoding not in (0, 1):
            return f"PIN encoding {self.encoding}"
        if not 0 <= self.pad <= 0xFF:
            return f"pad {self.pad}"
        raw = self.max_len if self.encoding == PinEncoding.ASCII else (self.max_len + 1) // 2
        if self.padded_len and not raw <= self.padded_len <= MAX_PIN_BLOCK:
            return f"padded length {self.padded_len} for {self.max_len} digits"
        if not 0 <= self.padded_len <= 0xFF:
            return f"padded length {self.padded_len}"
        return None

    def to_bytes(self) -> bytes:
        """5 bytes: min, max, pad, padded_len, encoding."""
        problem = self._problem()
        if problem:
            raise EncodeError(problem)
        return bytes((self.min_len, self.max_len, self.pad, self.padded_len, self.encoding))

    @classmethod
    def parse(cls, p: bytes) -> PinField:
        """Decode and check 5 bytes."""
        _need(p, 5, 5, "PIN field")
        enc = p[4]
        f = cls(p[0], p[1], p[2], p[3], PinEncoding(enc) if enc in (0, 1) else enc)
        problem = f._problem()
        if problem:
            raise _bad(problem)
        return f


def _tries_ok(v: int) -> bool:
    # ISO 7816-4 §11.5.6 (63Cx): a PIN counter is 0..15, or TRIES_UNKNOWN.
    return isinstance(v, int) and (0 <= v <= 15 or v == TRIES_UNKNOWN)


@dataclass(frozen=True)
class SecureVerify(Message):
    """PIN typed under a firmware-owned prompt into a VERIFY the terminal builds; PinResult.

    CLA INS P1 P2 state what the host wants sent; the terminal refuses (ERROR PIN_POLICY)
    anything but what the prompt allows.
    """

    TYPE: ClassVar[MessageType] = MessageType.SECURE_VERIFY
    slot: int
    cla: int
    ins: int
    p1: int
    p2: int
    timeout_s: int
    prompt: int
    tries: int
    pin: PinField

    def _head(self) -> bytes:
        if not _tries_ok(self.tries):
            raise EncodeError(f"tries {self.tries!r}")
        return bytes((_check_slot_enc(self.slot), *(
            _check_u8(v, "template byte")
            for v in (self.cla, self.ins, self.p1, self.p2, self.timeout_s, self.prompt)),
            self.tries))

    def to_payload(self) -> bytes:
        """slot cla ins p1 p2 timeout_s prompt tries, PIN field."""
        return self._head() + self.pin.to_bytes()

    @classmethod
    def parse(cls, p: bytes) -> SecureVerify:
        """Decode."""
        _need(p, 13, 13, "SECURE_VERIFY")
        if not _tries_ok(p[7]):
            raise _bad(f"tries {p[7]}")
        return cls(_slot(p[0]), p[1], p[2], p[3], p[4], p[5], p[6], p[7],
                   PinField.parse(p[8:13]))


@dataclass(frozen=True)
class SecureChange(Message):
    """Two PINs in one APDU (old + new, confirmed on the terminal); answered by PinResult."""

    TYPE: ClassVar[MessageType] = MessageType.SECURE_CHANGE
    slot: int
    cla: int
    ins: int
    p1: int
    p2: int
    timeout_s: int
    prompt: int
    tries: int
    current: PinField
    new: PinField

    def to_payload(self) -> bytes:
        """slot cla ins p1 p2 timeout_s prompt tries, current field, new field."""
        if not _tries_ok(self.tries):
            raise EncodeError(f"tries {self.tries!r}")
        head = bytes((_check_slot_enc(self.slot), *(
            _check_u8(v, "template byte")
            for v in (self.cla, self.ins, self.p1, self.p2, self.timeout_s, self.prompt)),
            self.tries))
        return head + self.current.to_bytes() + self.new.to_bytes()

    @classmethod
    def parse(cls, p: bytes) -> SecureChange:
        """Decode."""
        _need(p, 18, 18, cls.TYPE.name)
        if not _tries_ok(p[7]):
            raise _bad(f"tries {p[7]}")
        return cls(_slot(p[0]), p[1], p[2], p[3], p[4], p[5], p[6], p[7],
                   PinField.parse(p[8:13]), PinField.parse(p[13:18]))


@dataclass(frozen=True)
class SecureUnblock(SecureChange):
    """SECURE_CHANGE's layout with `current` = the PUK (RESET RETRY COUNTER)."""

    TYPE: ClassVar[MessageType] = MessageType.SECURE_UNBLOCK


@dataclass(frozen=True)
class PinResult(Message):
    """The card's status word for a secure PIN operation."""

    TYPE: ClassVar[MessageType] = MessageType.PIN_RESULT
    sw: int

    def to_payload(self) -> bytes:
        """SW1 SW2."""
        return _u16_enc(self.sw, 0, "sw")

    @classmethod
    def parse(cls, p: bytes) -> PinResult:
        """Decode 2 bytes."""
        _need(p, 2, 2, "PIN_RESULT")
        return cls(int.from_bytes(p, "big"))


@dataclass(frozen=True)
class Confirm(Message):
    """Show text, wait for OK / Cancel; answered by ConfirmResult."""

    TYPE: ClassVar[MessageType] = MessageType.CONFIRM
    timeout_s: int
    text: str = field(repr=False)  # consent text may name the patient

    def to_payload(self) -> bytes:
        """timeout_s u8 (0: 30 s), text."""
        raw = _text_enc(self.text, MAX_TEXT, "text")
        if not raw:
            raise EncodeError("empty CONFIRM text")
        return bytes((_check_u8(self.timeout_s, "timeout_s"),)) + raw

    @classmethod
    def parse(cls, p: bytes) -> Confirm:
        """Decode."""
        _need(p, 2, 1 + MAX_TEXT, "CONFIRM")
        return cls(p[0], _text_dec(p[1:], MAX_TEXT, "text"))


@dataclass(frozen=True)
class ConfirmResult(Message):
    """OK, CANCEL or TIMEOUT."""

    TYPE: ClassVar[MessageType] = MessageType.CONFIRM_RESULT
    result: ConfirmOutcome

    def to_payload(self) -> bytes:
        """result u8."""
        return bytes((ConfirmOutcome(self.result),))

    @classmethod
    def parse(cls, p: bytes) -> ConfirmResult:
        """Decode 1 byte."""
        _need(p, 1, 1, "CONFIRM_RESULT")
        if p[0] > ConfirmOutcome.TIMEOUT:
            raise _bad(f"confirm result {p[0]}")
        return cls(ConfirmOutcome(p[0]))


@dataclass(frozen=True)
class Display(Message):
    """Lines to show (an empty tuple clears the screen); answered by Ack.

    secret_s > 0 marks a secret screen (a code): the terminal clears it after
    min(secret_s, MAX_SECRET_S) seconds, on OK or on a card removal, and never restores it.
    """

    TYPE: ClassVar[MessageType] = MessageType.DISPLAY
    lines: tuple[str, ...] = field(repr=False)
    secret_s: int = 0

    def to_payload(self) -> bytes:
        """secret_s u8, count u8, lines joined by LF."""
        if len(self.lines) > MAX_LINES or any("\n" in line for line in self.lines):
            raise EncodeError(f"at most {MAX_LINES} lines, no LF inside a line")
        return bytes((_check_u8(self.secret_s, "secret_s"), len(self.lines))) + _text_enc(
            "\n".join(self.lines), MAX_TEXT, "text")

    @classmethod
    def parse(cls, p: bytes) -> Display:
        """Decode."""
        _need(p, 2, 2 + MAX_TEXT, "DISPLAY")
        text = _text_dec(p[2:], MAX_TEXT, "text")
        lines = tuple(text.split("\n")) if p[1] else ()
        if p[1] > MAX_LINES or len(lines) != p[1] or (not p[1] and text):
            raise _bad(f"line count {p[1]} does not match the text")
        return cls(lines, p[0])


@dataclass(frozen=True)
class Identity(Message):
    """The daemon's certificate fingerprint, shown by the terminal when F1 is pressed; Ack."""

    TYPE: ClassVar[MessageType] = MessageType.IDENTITY
    text: str

    def to_payload(self) -> bytes:
        """text (ASCII + LF, 1..128)."""
        raw = _text_enc(self.text, MAX_IDENTITY, "text")
        if not raw:
            raise EncodeError("empty IDENTITY text")
        return raw

    @classmethod
    def parse(cls, p: bytes) -> Identity:
        """Decode."""
        _need(p, 1, MAX_IDENTITY, "IDENTITY")
        return cls(_text_dec(p, MAX_IDENTITY, "text"))


@dataclass(frozen=True)
class Event(Message):
    """Unsolicited (sequence 0)."""

    TYPE: ClassVar[MessageType] = MessageType.EVENT
    kind: EventKind
    slot: int = NO_SLOT

    def to_payload(self) -> bytes:
        """kind u8, slot u8."""
        if self.slot != NO_SLOT:
            _check_slot_enc(self.slot)
        return bytes((EventKind(self.kind), self.slot))

    @classmethod
    def parse(cls, p: bytes) -> Event:
        """Decode 2 bytes."""
        _need(p, 2, 2, "EVENT")
        if p[0] not in EventKind._value2member_map_:
            raise _bad(f"event kind {p[0]}")
        if p[1] != NO_SLOT:
            _slot(p[1])
        return cls(EventKind(p[0]), p[1])


@dataclass(frozen=True)
class LinkErrorMessage(Message):
    """ERROR frame: code and a short ASCII detail."""

    TYPE: ClassVar[MessageType] = MessageType.ERROR
    code: int
    detail: str = ""

    def to_payload(self) -> bytes:
        """code u8, detail."""
        return bytes((_check_u8(self.code, "code"),)) + _text_enc(self.detail, MAX_DETAIL,
                                                                 "detail", newline=False)

    @classmethod
    def parse(cls, p: bytes) -> LinkErrorMessage:
        """Decode."""
        _need(p, 1, 1 + MAX_DETAIL, "ERROR")
        code = p[0]
        return cls(ErrorCode(code) if code in ErrorCode._value2member_map_ else code,
                   _text_dec(p[1:], MAX_DETAIL, "detail", newline=False))


_CLASSES: dict[int, type[Message]] = {
    cls.TYPE: cls
    for cls in (Hello, HelloAck, SlotStatus, SlotStatusResponse, PowerOn, PowerOff, Atr,
                Transmit, Response, SecureVerify, SecureChange, SecureUnblock, PinResult,
                Confirm, ConfirmResult, Display, Identity, Abort, Ack, Event, LinkErrorMessage)
}


def decode_message(frame: Frame) -> Message:
    """The message a frame carries; DecodeError (UNKNOWN_TYPE, BAD_PAYLOAD, BAD_SLOT)."""
    cls = _CLASSES.get(frame.type)
    if cls is None:
        raise DecodeError(ErrorCode.UNKNOWN_TYPE, f"type 0x{frame.type:02X}", frame.seq)
    try:
        return cls.parse(bytes(frame.payload))
    except DecodeError as exc:
        exc.seq = frame.seq
        raise


def encode_message(seq: int, msg: Message) -> bytes:
    """A whole frame for a message."""
    return encode_frame(seq, msg.TYPE, msg.to_payload())


def message_fields(msg: Message) -> dict[str, object]:
    """The message as plain JSON values (bytes as hex), the form docs/link-vectors.json uses."""

    def plain(v: object) -> object:
        if isinstance(v, bytes | bytearray):
            return bytes(v).hex()
        if isinstance(v, PinField):
            return {f.name: plain(getattr(v, f.name)) for f in fields(v)}
        if isinstance(v, tuple | list):
            return [plain(x) for x in v]
        if isinstance(v, enum.IntEnum):
            return int(v)
        return v

    return {f.name: plain(getattr(msg, f.name)) for f in fields(msg)}
