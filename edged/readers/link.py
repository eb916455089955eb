"""Host side of the terminal link: typed messages over the one codec, contracts/link.py.

The frame format, the stream parser and every message's encode and parse rules live once, in
contracts/link.py, which the firmware runs unchanged on MicroPython (docs/link-protocol.md).
This module only gives them host types: enums for the code tables, one frozen dataclass per
message (reprs that hide APDUs and prompt text), EncodeError for values a caller should never
have built. docs/link-vectors.json is the oracle for both (tests/unit/test_link_host.py and
tests/firmware/mp/t_link.py).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar

from bifente.contracts import link as wire

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
    "PairWindow",
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

SOF: int = wire.SOF
FRAME_VERSION: int = wire.FRAME_VERSION
PROTOCOL_VERSION: int = wire.PROTOCOL_VERSION
HEADER_LEN: int = wire.HEADER_LEN
OVERHEAD: int = wire.OVERHEAD
MAX_PAYLOAD: int = wire.MAX_PAYLOAD
MIN_PEER_PAYLOAD: int = wire.MIN_PEER_PAYLOAD
INTERBYTE_TIMEOUT_S: float = wire.INTERBYTE_TIMEOUT_MS / 1000

MAX_SLOTS: int = wire.MAX_SLOTS
MAX_ATR: int = wire.MAX_ATR
MAX_RESPONSE: int = wire.MAX_RESPONSE
MAX_TEXT: int = wire.MAX_TEXT
MAX_LINES: int = wire.MAX_LINES
MAX_DETAIL: int = wire.MAX_DETAIL
MAX_PIN_DIGITS: int = wire.MAX_PIN_DIGITS
MAX_PIN_BLOCK: int = wire.MAX_PIN_BLOCK
NO_SLOT: int = wire.NO_SLOT
TRIES_UNKNOWN: int = wire.TRIES_UNKNOWN
MAX_SECRET_S: int = wire.MAX_SECRET_S
MAX_IDENTITY: int = wire.MAX_IDENTITY
MAX_PAIR_WINDOW_S: int = wire.MAX_PAIR_WINDOW_S


# The enums name the contract's tables; tests/unit/test_link_host.py checks they cover them.
class MessageType(enum.IntEnum):
    """Frame TYPE byte (docs/link-protocol.md, Messages)."""

    HELLO = wire.HELLO
    SLOT_STATUS = wire.SLOT_STATUS
    POWER_ON = wire.POWER_ON
    POWER_OFF = wire.POWER_OFF
    TRANSMIT = wire.TRANSMIT
    SECURE_VERIFY = wire.SECURE_VERIFY
    SECURE_CHANGE = wire.SECURE_CHANGE
    SECURE_UNBLOCK = wire.SECURE_UNBLOCK
    CONFIRM = wire.CONFIRM
    DISPLAY = wire.DISPLAY
    ABORT = wire.ABORT
    IDENTITY = wire.IDENTITY
    PAIR_WINDOW = wire.PAIR_WINDOW
    ACK = wire.ACK
    HELLO_ACK = wire.HELLO_ACK
    SLOT_STATUS_RSP = wire.SLOT_STATUS_RSP
    ATR = wire.ATR
    RESPONSE = wire.RESPONSE
    PIN_RESULT = wire.PIN_RESULT
    CONFIRM_RESULT = wire.CONFIRM_RESULT
    EVENT = wire.EVENT
    ERROR = wire.ERROR


class ErrorCode(enum.IntEnum):
    """ERROR frame codes and parser error kinds."""

    BAD_CRC = wire.E_BAD_CRC
    OVERSIZE = wire.E_OVERSIZE
    TRUNCATED = wire.E_TRUNCATED
    BAD_VERSION = wire.E_BAD_VERSION
    UNKNOWN_TYPE = wire.E_UNKNOWN_TYPE
    BAD_PAYLOAD = wire.E_BAD_PAYLOAD
    BUSY = wire.E_BUSY
    GARBAGE = wire.E_GARBAGE  # parser item only: bytes skipped before a SOF
    HANDSHAKE = wire.E_HANDSHAKE
    BAD_SLOT = wire.E_BAD_SLOT
    NO_CARD = wire.E_NO_CARD
    NOT_POWERED = wire.E_NOT_POWERED
    CARD_MUTE = wire.E_CARD_MUTE
    CARD_REMOVED = wire.E_CARD_REMOVED
    CARD_PROTOCOL = wire.E_CARD_PROTOCOL
    BAD_ATR = wire.E_BAD_ATR
    UNSUPPORTED_CARD = wire.E_UNSUPPORTED_CARD
    BAD_APDU = wire.E_BAD_APDU
    HW_FAULT = wire.E_HW_FAULT
    USER_CANCELLED = wire.E_USER_CANCELLED
    PROMPT_TIMEOUT = wire.E_PROMPT_TIMEOUT
    ABORTED = wire.E_ABORTED
    PIN_MISMATCH = wire.E_PIN_MISMATCH
    PIN_POLICY = wire.E_PIN_POLICY  # the terminal's PIN policy refused a secure PIN request
    INTERNAL = wire.E_INTERNAL


class SlotState(enum.IntEnum):
    """Per-slot state in SLOT_STATUS_RSP."""

    EMPTY = wire.SLOT_EMPTY
    PRESENT = wire.SLOT_PRESENT
    POWERED = wire.SLOT_POWERED
    ERROR = wire.SLOT_ERROR


class EventKind(enum.IntEnum):
    """EVENT kinds."""

    CARD_INSERTED = wire.EV_CARD_INSERTED
    CARD_REMOVED = wire.EV_CARD_REMOVED
    CANCEL_PRESSED = wire.EV_CANCEL_PRESSED
    SLOT_FAULT = wire.EV_SLOT_FAULT
    PAIR_REQUESTED = wire.EV_PAIR_REQUESTED


class ConfirmOutcome(enum.IntEnum):
    """CONFIRM_RESULT values."""

    OK = wire.CONFIRM_OK
    CANCEL = wire.CONFIRM_CANCEL
    TIMEOUT = wire.CONFIRM_TIMEOUT


class PinEncoding(enum.IntEnum):
    """How the terminal writes the digits into the APDU."""

    ASCII = wire.PIN_ASCII  # one '0'..'9' byte per digit
    BCD = wire.PIN_BCD  # two digits per byte, high nibble first; an odd tail takes the pad


class PromptKind(enum.IntEnum):
    """Secure PIN prompts the firmware owns (its text, card, slot and PIN reference)."""

    PIN_CPS = wire.PROMPT_PIN_CPS  # the CPS holder PIN, reference 01, CPS slot 0


class LinkError(Exception):
    """Base of the codec's errors; `code` says which rule was broken."""

    def __init__(self, code: ErrorCode, detail: str = "", seq: int = 0) -> None:
        super().__init__(f"{code.name}: {detail}" if detail else code.name)
        self.code = code
        self.detail = detail
        self.seq = seq

    @classmethod
    def of(cls, exc: Any, seq: int | None = None) -> Any:
        """This class of error for one the contract raised (a wire.LinkError)."""
        return cls(ErrorCode(exc.code), exc.detail, exc.seq if seq is None else seq)


class FrameError(LinkError):
    """A stream item: bytes that did not form a valid frame."""


class DecodeError(LinkError):
    """A valid frame whose type or payload is not acceptable."""


class EncodeError(ValueError):
    """A message with values the wire format cannot carry (a caller bug)."""


def crc16(data: bytes | bytearray | memoryview) -> int:
    """CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF, no reflection, xorout 0)."""
    return int(wire.crc16(data))


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
    try:
        return bytes(wire.encode_frame(seq, mtype, payload))
    except wire.LinkError as exc:
        raise EncodeError(exc.detail) from None


class FrameParser:
    """Stream parser: feed() any chunking, get Frame and FrameError items in stream order.

    The contract's parser: the length field is checked against max_payload before any payload
    byte is awaited, and after a bad frame it rescans from the byte after its SOF, so a good
    frame that followed (or hid inside) a bad one is still found.
    """

    def __init__(self, max_payload: int = MAX_PAYLOAD) -> None:
        self._parser = wire.FrameParser(max_payload)

    @property
    def max_payload(self) -> int:
        """The largest payload a frame may announce."""
        return int(self._parser.max_payload)

    def pending(self) -> bool:
        """True while a frame has started but is not complete."""
        return bool(self._parser.pending())

    def feed(self, data: bytes | bytearray | memoryview) -> list[Frame | FrameError]:
        """Consume bytes; return the items they complete."""
        return [_item(i) for i in self._parser.feed(data)]

    def expire(self) -> list[Frame | FrameError]:
        """Inter-byte timeout: report the stalled frame as TRUNCATED and rescan its bytes."""
        return [_item(i) for i in self._parser.expire()]


def _item(item: Any) -> Frame | FrameError:
    if isinstance(item, wire.Frame):
        return Frame(item.seq, item.mtype, item.payload)
    return FrameError.of(item)  # type: ignore[no-any-return]


def _plain(v: object) -> object:
    # Host values as the contract's classes take them: enums as ints, tuples as lists.
    if isinstance(v, PinField):
        return v.to_wire()
    if isinstance(v, tuple):
        return [_plain(x) for x in v]
    if isinstance(v, enum.IntEnum):
        return int(v)
    return v


def _typed(kind: type[enum.IntEnum], v: int) -> int:
    # An enum member when the value is known; unknown values stay ints (decode checks them).
    return kind(v) if v in kind._value2member_map_ else v


# --- messages ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Message:
    """Base: TYPE, to_payload() and parse() (exact inverses), both done by the contract."""

    TYPE: ClassVar[MessageType]
    _ENUMS: ClassVar[dict[str, type[enum.IntEnum]]] = {}

    def to_wire(self) -> Any:
        """The contract's message object with these values."""
        return wire._CLASSES[self.TYPE](*(_plain(getattr(self, f.name)) for f in fields(self)))

    def to_payload(self) -> bytes:
        """Payload bytes (EncodeError on values the format cannot carry)."""
        try:
            return bytes(self.to_wire().payload())
        except (wire.LinkError, TypeError, ValueError) as exc:
            raise EncodeError(str(getattr(exc, "detail", exc))) from None

    @classmethod
    def from_wire(cls, msg: Any) -> Message:
        """This class from the contract's decoded object, enum fields typed."""
        values = []
        for f in fields(cls):
            v = getattr(msg, f.name)
            kind = cls._ENUMS.get(f.name)
            if isinstance(v, list):
                v = tuple(_typed(kind, x) if kind else x for x in v)
            elif isinstance(v, wire.PinField):
                v = PinField.from_wire(v)
            elif kind is not None:
                v = _typed(kind, v)
            values.append(v)
        return cls(*values)

    @classmethod
    def parse(cls, p: bytes) -> Message:
        """Decode a payload of this type (DecodeError on anything else)."""
        try:
            return cls.from_wire(wire.decode(cls.TYPE, p))
        except wire.LinkError as exc:
            raise DecodeError.of(exc) from None


@dataclass(frozen=True)
class _Empty(Message):
    def to_wire(self) -> Any:
        return wire.Empty(self.TYPE)


@dataclass(frozen=True)
class SlotStatus(_Empty):
    """Ask for every slot's state."""

    TYPE: ClassVar[MessageType] = MessageType.SLOT_STATUS


@dataclass(frozen=True)
class Abort(_Empty):
    """End the prompt in progress (its request answers ERROR ABORTED)."""

    TYPE: ClassVar[MessageType] = MessageType.ABORT


@dataclass(frozen=True)
class Ack(_Empty):
    """Success without data."""

    TYPE: ClassVar[MessageType] = MessageType.ACK


@dataclass(frozen=True)
class Hello(Message):
    """Handshake: protocol version and the host's receive limit."""

    TYPE: ClassVar[MessageType] = MessageType.HELLO
    version: int = PROTOCOL_VERSION
    max_payload: int = MAX_PAYLOAD


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


@dataclass(frozen=True)
class SlotStatusResponse(Message):
    """One SlotState per slot."""

    TYPE: ClassVar[MessageType] = MessageType.SLOT_STATUS_RSP
    _ENUMS: ClassVar[dict[str, type[enum.IntEnum]]] = {"states": SlotState}
    states: tuple[SlotState, ...]


@dataclass(frozen=True)
class PowerOn(Message):
    """Cold reset the card in a slot; answered by Atr."""

    TYPE: ClassVar[MessageType] = MessageType.POWER_ON
    slot: int

    def to_wire(self) -> Any:
        """The contract's slot request."""
        return wire.SlotRequest(self.TYPE, self.slot)


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


@dataclass(frozen=True)
class Transmit(Message):
    """A short APDU for the card in a slot; answered by Response."""

    TYPE: ClassVar[MessageType] = MessageType.TRANSMIT
    slot: int
    apdu: bytes = field(repr=False)  # may carry health data


@dataclass(frozen=True)
class Response(Message):
    """The card's response: data then SW1 SW2."""

    TYPE: ClassVar[MessageType] = MessageType.RESPONSE
    data: bytes = field(repr=False)

    @property
    def sw(self) -> int:
        """SW1 SW2 as one integer."""
        return int.from_bytes(self.data[-2:], "big")


@dataclass(frozen=True)
class PinField:
    """How one PIN goes into the APDU: limits, pad byte, padded length (0: none), encoding."""

    min_len: int
    max_len: int
    pad: int = 0xFF
    padded_len: int = 0
    encoding: PinEncoding | int = PinEncoding.ASCII  # int: an unknown code, refused by parse

    def to_wire(self) -> Any:
        """The contract's PIN field (checked when its message is encoded)."""
        return wire.PinField(self.min_len, self.max_len, self.pad, self.padded_len,
                             int(self.encoding))

    @classmethod
    def from_wire(cls, f: Any) -> PinField:
        """From the contract's decoded (and checked) PIN field."""
        return cls(f.min_len, f.max_len, f.pad, f.padded_len, PinEncoding(f.encoding))


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


@dataclass(frozen=True)
class SecureUnblock(SecureChange):
    """SECURE_CHANGE's layout with `current` = the PUK (RESET RETRY COUNTER)."""

    TYPE: ClassVar[MessageType] = MessageType.SECURE_UNBLOCK


@dataclass(frozen=True)
class PinResult(Message):
    """The card's status word for a secure PIN operation."""

    TYPE: ClassVar[MessageType] = MessageType.PIN_RESULT
    sw: int


@dataclass(frozen=True)
class Confirm(Message):
    """Show text, wait for OK / Cancel; answered by ConfirmResult."""

    TYPE: ClassVar[MessageType] = MessageType.CONFIRM
    timeout_s: int
    text: str = field(repr=False)  # consent text may name the patient


@dataclass(frozen=True)
class ConfirmResult(Message):
    """OK, CANCEL or TIMEOUT."""

    TYPE: ClassVar[MessageType] = MessageType.CONFIRM_RESULT
    _ENUMS: ClassVar[dict[str, type[enum.IntEnum]]] = {"result": ConfirmOutcome}
    result: ConfirmOutcome


@dataclass(frozen=True)
class Display(Message):
    """Lines to show (an empty tuple clears the screen); answered by Ack.

    secret_s > 0 marks a secret screen (a code): the terminal clears it after
    min(secret_s, MAX_SECRET_S) seconds, on OK or on a card removal, and never restores it.
    """

    TYPE: ClassVar[MessageType] = MessageType.DISPLAY
    lines: tuple[str, ...] = field(repr=False)
    secret_s: int = 0


@dataclass(frozen=True)
class Identity(Message):
    """The daemon's certificate fingerprint, shown by the terminal when F1 is pressed; Ack."""

    TYPE: ClassVar[MessageType] = MessageType.IDENTITY
    text: str


@dataclass(frozen=True)
class PairWindow(Message):
    """A pairing window is open for `seconds` (0: closed); the terminal counts it down; Ack."""

    TYPE: ClassVar[MessageType] = MessageType.PAIR_WINDOW
    seconds: int


@dataclass(frozen=True)
class Event(Message):
    """Unsolicited (sequence 0)."""

    TYPE: ClassVar[MessageType] = MessageType.EVENT
    _ENUMS: ClassVar[dict[str, type[enum.IntEnum]]] = {"kind": EventKind}
    kind: EventKind
    slot: int = NO_SLOT


@dataclass(frozen=True)
class LinkErrorMessage(Message):
    """ERROR frame: code and a short ASCII detail."""

    TYPE: ClassVar[MessageType] = MessageType.ERROR
    _ENUMS: ClassVar[dict[str, type[enum.IntEnum]]] = {"code": ErrorCode}
    code: int
    detail: str = ""


_CLASSES: dict[int, type[Message]] = {
    cls.TYPE: cls
    for cls in (Hello, HelloAck, SlotStatus, SlotStatusResponse, PowerOn, PowerOff, Atr,
                Transmit, Response, SecureVerify, SecureChange, SecureUnblock, PinResult,
                Confirm, ConfirmResult, Display, Identity, PairWindow, Abort, Ack, Event,
                LinkErrorMessage)
}


def decode_message(frame: Frame) -> Message:
    """The message a frame carries; DecodeError (UNKNOWN_TYPE, BAD_PAYLOAD, BAD_SLOT)."""
    try:
        msg = wire.decode(frame.type, bytes(frame.payload))
    except wire.LinkError as exc:
        raise DecodeError.of(exc, frame.seq) from None
    return _CLASSES[frame.type].from_wire(msg)


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
