"""The terminal link over USB CDC: CRC, stream parser, messages (docs/link-protocol.md)."""
# Frame: SOF | VER | SEQ | TYPE | LEN_HI LEN_LO | PAYLOAD (LEN bytes) | CRC_HI CRC_LO
# CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF, no reflection, xorout 0) over VER..PAYLOAD.
# The one implementation of the link for both ends: the firmware runs this file as `link`
# (firmware/link.py is a symbolic link to it, copied to the device like the other modules,
# docs/flashing.md) and the host wraps it in a typed facade (edged/readers/link.py). Both
# are tested against docs/link-vectors.json. MicroPython and CPython 3.11 compatible: no
# typing at run time, no f-strings, preallocated buffers.

try:
    from micropython import const
except ImportError:  # CPython (the host's facade, tests): const() is the identity

    def const(x: int) -> int:
        return x


TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Optional, Union

    Buffer = Union[bytes, bytearray, memoryview]

# --- Frame layout ---------------------------------------------------------------------------------
SOF = const(0xA5)
FRAME_VERSION = const(1)  # VER byte: the frame layout itself
PROTOCOL_VERSION = const(2)  # HELLO / HELLO_ACK: the message set (2: firmware-owned PIN prompts)
HEADER_LEN = const(6)  # SOF VER SEQ TYPE LEN_HI LEN_LO
OVERHEAD = const(8)  # header + CRC
# 512: holds the largest short APDU (1 slot byte + 4 + 1 + 255 + 1 = 262) and the largest
# T=0 response (256 + SW1 SW2 = 258) with room to spare; three frame buffers stay under 2 KB.
MAX_PAYLOAD = const(512)
MAX_FRAME = const(520)  # MAX_PAYLOAD + OVERHEAD
MIN_PEER_PAYLOAD = const(262)  # a peer must accept at least one short APDU (HELLO check)
INTERBYTE_TIMEOUT_MS = const(200)  # a frame stalled this long mid-way is dropped (TRUNCATED)

# --- Message types (one table; docs/link-protocol.md §Messages) -----------------------------------
HELLO = const(0x01)
SLOT_STATUS = const(0x02)
POWER_ON = const(0x03)
POWER_OFF = const(0x04)
TRANSMIT = const(0x05)
SECURE_VERIFY = const(0x06)
SECURE_CHANGE = const(0x07)
SECURE_UNBLOCK = const(0x08)
CONFIRM = const(0x09)
DISPLAY = const(0x0A)
ABORT = const(0x0B)
IDENTITY = const(0x0C)
PAIR_WINDOW = const(0x0D)
ACK = const(0x80)
HELLO_ACK = const(0x81)
SLOT_STATUS_RSP = const(0x82)
ATR = const(0x83)
RESPONSE = const(0x85)
PIN_RESULT = const(0x86)
CONFIRM_RESULT = const(0x89)
EVENT = const(0xC0)
ERROR = const(0xFF)

TYPE_NAMES = {
    HELLO: "HELLO", SLOT_STATUS: "SLOT_STATUS", POWER_ON: "POWER_ON", POWER_OFF: "POWER_OFF",
    TRANSMIT: "TRANSMIT", SECURE_VERIFY: "SECURE_VERIFY", SECURE_CHANGE: "SECURE_CHANGE",
    SECURE_UNBLOCK: "SECURE_UNBLOCK", CONFIRM: "CONFIRM", DISPLAY: "DISPLAY", ABORT: "ABORT",
    IDENTITY: "IDENTITY", PAIR_WINDOW: "PAIR_WINDOW", ACK: "ACK", HELLO_ACK: "HELLO_ACK",
    SLOT_STATUS_RSP: "SLOT_STATUS_RSP", ATR: "ATR",
    RESPONSE: "RESPONSE", PIN_RESULT: "PIN_RESULT", CONFIRM_RESULT: "CONFIRM_RESULT",
    EVENT: "EVENT", ERROR: "ERROR",
}

# --- Error codes (ERROR frame; parser items) ------------------------------------------------------
E_BAD_CRC = const(0x01)
E_OVERSIZE = const(0x02)
E_TRUNCATED = const(0x03)
E_BAD_VERSION = const(0x04)
E_UNKNOWN_TYPE = const(0x05)
E_BAD_PAYLOAD = const(0x06)
E_BUSY = const(0x07)
E_GARBAGE = const(0x08)  # parser item only (bytes before a SOF); never sent
E_HANDSHAKE = const(0x09)  # a request before a successful HELLO
E_BAD_SLOT = const(0x10)
E_NO_CARD = const(0x11)
E_NOT_POWERED = const(0x12)
E_CARD_MUTE = const(0x13)
E_CARD_REMOVED = const(0x14)
E_CARD_PROTOCOL = const(0x15)
E_BAD_ATR = const(0x16)
E_UNSUPPORTED_CARD = const(0x17)
E_BAD_APDU = const(0x18)
E_HW_FAULT = const(0x19)
E_USER_CANCELLED = const(0x20)
E_PROMPT_TIMEOUT = const(0x21)
E_ABORTED = const(0x22)
E_PIN_MISMATCH = const(0x23)
E_PIN_POLICY = const(0x24)  # a secure PIN request the firmware's policy refuses
E_INTERNAL = const(0x30)

ERROR_NAMES = {
    E_BAD_CRC: "BAD_CRC", E_OVERSIZE: "OVERSIZE", E_TRUNCATED: "TRUNCATED",
    E_BAD_VERSION: "BAD_VERSION", E_UNKNOWN_TYPE: "UNKNOWN_TYPE", E_BAD_PAYLOAD: "BAD_PAYLOAD",
    E_BUSY: "BUSY", E_GARBAGE: "GARBAGE", E_HANDSHAKE: "HANDSHAKE", E_BAD_SLOT: "BAD_SLOT",
    E_NO_CARD: "NO_CARD", E_NOT_POWERED: "NOT_POWERED", E_CARD_MUTE: "CARD_MUTE",
    E_CARD_REMOVED: "CARD_REMOVED", E_CARD_PROTOCOL: "CARD_PROTOCOL", E_BAD_ATR: "BAD_ATR",
    E_UNSUPPORTED_CARD: "UNSUPPORTED_CARD", E_BAD_APDU: "BAD_APDU", E_HW_FAULT: "HW_FAULT",
    E_USER_CANCELLED: "USER_CANCELLED", E_PROMPT_TIMEOUT: "PROMPT_TIMEOUT",
    E_ABORTED: "ABORTED", E_PIN_MISMATCH: "PIN_MISMATCH", E_PIN_POLICY: "PIN_POLICY",
    E_INTERNAL: "INTERNAL",
}

# --- Value tables ---------------------------------------------------------------------------------
SLOT_EMPTY = const(0)
SLOT_PRESENT = const(1)
SLOT_POWERED = const(2)
SLOT_ERROR = const(3)

EV_CARD_INSERTED = const(1)
EV_CARD_REMOVED = const(2)
EV_CANCEL_PRESSED = const(3)
EV_SLOT_FAULT = const(4)
EV_PAIR_REQUESTED = const(5)  # F1 on the fingerprint screen: open a pairing window (review L1)
NO_SLOT = const(0xFF)

CONFIRM_OK = const(0)
CONFIRM_CANCEL = const(1)
CONFIRM_TIMEOUT = const(2)

PIN_ASCII = const(0)  # one '0'..'9' byte per digit
PIN_BCD = const(1)  # two digits per byte, high nibble first; an odd tail takes the pad nibble

# Secure PIN prompts the firmware knows (its own text, card and PIN reference; terminal.py).
PROMPT_PIN_CPS = const(1)  # the CPS holder's PIN, reference 01, on the CPS slot
TRIES_UNKNOWN = const(0xFF)  # `tries` when the host does not know the PIN's counter

# --- Limits on fields a peer controls -------------------------------------------------------------
MAX_SLOTS = const(8)
MAX_ATR = const(33)  # ISO 7816-3 §8.2.1: TS + 32 characters
MAX_RESPONSE = const(258)  # 256 data + SW1 SW2 (short Le)
MAX_TEXT = const(128)  # CONFIRM text, DISPLAY text (8 rows x 16 columns)
MAX_LINES = const(8)
MAX_DETAIL = const(64)
MAX_PIN_DIGITS = const(12)
MAX_PIN_BLOCK = const(16)  # padded length of one PIN field
DEFAULT_TIMEOUT_S = const(30)
MAX_SECRET_S = const(60)  # a secret DISPLAY leaves the screen after at most this long
MAX_IDENTITY = const(128)  # IDENTITY text (the daemon's certificate fingerprint)
MAX_PAIR_WINDOW_S = const(600)  # PAIR_WINDOW: the longest countdown the terminal shows


class LinkError(Exception):
    """Base of every error this module raises or reports; `code` is an E_* value."""

    def __init__(self, code: int, detail: str = "", seq: int = 0) -> None:
        super().__init__(code, detail)
        self.code = code
        self.detail = detail
        self.seq = seq

    def name(self) -> str:
        """The code's name from ERROR_NAMES."""
        return ERROR_NAMES.get(self.code, "E_%02X" % self.code)


class FrameError(LinkError):
    """A stream item: bytes that did not form a valid frame (BAD_CRC, OVERSIZE, ...)."""


class DecodeError(LinkError):
    """A valid frame whose type or payload is not acceptable (UNKNOWN_TYPE, BAD_PAYLOAD)."""


# --- CRC-16/CCITT-FALSE, table driven -------------------------------------------------------------
def _crc_table() -> "Any":
    from array import array

    table = array("H", bytes(512))
    for i in range(256):
        c = i << 8
        for _ in range(8):
            c = ((c << 1) ^ 0x1021) if c & 0x8000 else (c << 1)
        table[i] = c & 0xFFFF
    return table


_TABLE = _crc_table()


def crc16(data: "Buffer", start: int = 0, end: int = -1, crc: int = 0xFFFF) -> int:
    """CRC-16/CCITT-FALSE of data[start:end] (end=-1: to the end); check('123456789') = 0x29B1."""
    table = _TABLE
    if end < 0:
        end = len(data)
    for i in range(start, end):
        crc = ((crc << 8) & 0xFFFF) ^ table[((crc >> 8) ^ data[i]) & 0xFF]
    return crc


# --- Frames ---------------------------------------------------------------------------------------
class Frame:
    """One checked frame: sequence number, message type, payload and its CRC."""

    def __init__(self, seq: int, mtype: int, payload: bytes, crc: int = -1) -> None:
        self.seq = seq
        self.mtype = mtype
        self.payload = payload
        self.crc = crc

    def __repr__(self) -> str:
        return "Frame(seq=%d, type=0x%02X, len=%d)" % (self.seq, self.mtype, len(self.payload))


def seal_frame(buf: "Union[bytearray, memoryview]", seq: int, mtype: int, length: int) -> int:
    """Write header and CRC around a payload already at buf[HEADER_LEN:]; returns frame length."""
    if not 0 <= length <= MAX_PAYLOAD:
        raise LinkError(E_OVERSIZE, "payload %d > %d" % (length, MAX_PAYLOAD))
    buf[0] = SOF
    buf[1] = FRAME_VERSION
    buf[2] = seq & 0xFF
    buf[3] = mtype & 0xFF
    buf[4] = length >> 8
    buf[5] = length & 0xFF
    end = HEADER_LEN + length  # type: int
    crc = crc16(buf, 1, end)
    buf[end] = crc >> 8
    buf[end + 1] = crc & 0xFF
    return end + 2


def build_frame(buf: bytearray, seq: int, mtype: int, payload: "Buffer") -> int:
    """Copy payload into the preallocated buf and seal it; returns the frame length."""
    n = len(payload)
    if n > MAX_PAYLOAD or len(buf) < n + OVERHEAD:
        raise LinkError(E_OVERSIZE, "payload %d > %d" % (n, MAX_PAYLOAD))
    buf[HEADER_LEN:HEADER_LEN + n] = payload
    return seal_frame(buf, seq, mtype, n)


def encode_frame(seq: int, mtype: int, payload: "Buffer") -> bytes:
    """A whole frame as new bytes (tests and rare paths; the firmware uses build_frame)."""
    buf = bytearray(len(payload) + OVERHEAD)
    build_frame(buf, seq, mtype, payload)
    return bytes(buf)


class FrameParser:
    """Stream parser: feed() bytes in any chunking; get Frame and FrameError items in order."""

    def __init__(self, max_payload: int = MAX_PAYLOAD) -> None:
        self.max_payload = max_payload
        self._buf = bytearray(max_payload + OVERHEAD)  # the only candidate-frame storage
        self._n = 0  # bytes of the current candidate in _buf (0: hunting for SOF)
        self._need = HEADER_LEN  # candidate length at which the next check runs
        self._garbage = 0  # bytes skipped while hunting, reported when a SOF ends the run

    def pending(self) -> bool:
        """True while a frame has started but is not complete (the inter-byte timer runs)."""
        return self._n > 0

    def feed(self, data: "Buffer", out: "Optional[list[Any]]" = None) -> "list[Any]":
        """Consume data; append Frame / FrameError items to out (new list if None); return it."""
        if out is None:
            out = []
        mv = memoryview(data)
        end = len(mv)
        buf = self._buf
        i = 0
        while i < end:
            n = self._n
            if n == 0:
                b = mv[i]
                i += 1
                if b != SOF:
                    self._garbage += 1
                    continue
                self._flush_garbage(out)
                buf[0] = SOF
                self._n = 1
                self._need = HEADER_LEN
                continue
            take = self._need - n
            if take > end - i:
                take = end - i
            buf[n:n + take] = mv[i:i + take]
            i += take
            self._n = n + take
            if self._n >= self._need:
                self._settle(out)
        return out

    def expire(self, out: "Optional[list[Any]]" = None) -> "list[Any]":
        """Inter-byte timeout: report the stalled frame as TRUNCATED and rescan its bytes."""
        if out is None:
            out = []
        if self._n:
            out.append(FrameError(E_TRUNCATED, "%d bytes" % self._n, self._seq()))
            self._resync(out)
            self._settle(out)  # a whole frame may sit after the stalled one's SOF
        else:
            self._flush_garbage(out)
        return out

    def reset(self) -> None:
        """Forget any partial frame and garbage count."""
        self._n = 0
        self._need = HEADER_LEN
        self._garbage = 0

    # -- internals --
    def _seq(self) -> int:
        return self._buf[2] if self._n > 2 else 0

    def _flush_garbage(self, out: "list[Any]") -> None:
        if self._garbage:
            out.append(FrameError(E_GARBAGE, "%d bytes" % self._garbage))
            self._garbage = 0

    def _settle(self, out: "list[Any]") -> None:
        # Decide on the buffered candidate as far as its bytes allow; loops after a rescan.
        buf = self._buf
        while self._n:
            n = self._n
            if n < HEADER_LEN:
                self._need = HEADER_LEN
                return
            length = (buf[4] << 8) | buf[5]
            if buf[1] != FRAME_VERSION:
                out.append(FrameError(E_BAD_VERSION, "frame version %d" % buf[1], buf[2]))
                self._resync(out)
                continue
            if length > self.max_payload:  # checked before waiting for (or storing) the payload
                out.append(FrameError(E_OVERSIZE, "length %d > %d" % (length, self.max_payload),
                                      buf[2]))
                self._resync(out)
                continue
            total = HEADER_LEN + length + 2
            if n < total:
                self._need = total
                return
            crc = crc16(buf, 1, HEADER_LEN + length)
            got = (buf[total - 2] << 8) | buf[total - 1]
            if crc != got:
                out.append(FrameError(E_BAD_CRC, "crc %04X != %04X" % (got, crc), buf[2]))
                self._resync(out)
                continue
            out.append(Frame(buf[2], buf[3], bytes(buf[HEADER_LEN:HEADER_LEN + length]), crc))
            self._drop(total)

    def _resync(self, out: "list[Any]") -> None:
        # The candidate's SOF was false (or the frame bad): rescan from the byte after it.
        self._drop(1)

    def _drop(self, k: int) -> None:
        # Remove k bytes from the front, then skip to the next SOF inside the buffer.
        buf = self._buf
        n = self._n
        j = k
        while j < n and buf[j] != SOF:
            j += 1
        m = n - j
        for t in range(m):  # forward copy, dest < src: safe without memmove
            buf[t] = buf[j + t]
        self._n = m
        self._need = HEADER_LEN


# --- Field helpers --------------------------------------------------------------------------------
def _bad(detail: str) -> DecodeError:
    return DecodeError(E_BAD_PAYLOAD, detail)


def _need_len(p: "Buffer", lo: int, hi: int, what: str) -> None:
    n = len(p)
    if n < lo or n > hi:
        raise _bad("%s: %d bytes, expected %d..%d" % (what, n, lo, hi))


def _u8(v: int, what: str) -> int:
    if not isinstance(v, int) or v < 0 or v > 0xFF:
        raise _bad("%s out of range" % what)
    return v


def _text_bytes(text: str, limit: int, what: str, newline: bool = True) -> bytes:
    raw = text.encode()
    _check_text(raw, limit, what, newline)
    return raw


def _check_text(raw: "Buffer", limit: int, what: str, newline: bool = True) -> None:
    if len(raw) > limit:
        raise _bad("%s: %d bytes > %d" % (what, len(raw), limit))
    for b in raw:
        if (b < 0x20 or b > 0x7E) and not (newline and b == 0x0A):
            raise _bad("%s: byte %02X is not printable ASCII" % (what, b))


def _text(raw: "Buffer", limit: int, what: str, newline: bool = True) -> str:
    _check_text(raw, limit, what, newline)
    return bytes(raw).decode()


def _slot(v: int) -> int:
    if not isinstance(v, int) or v < 0 or v >= MAX_SLOTS:
        raise DecodeError(E_BAD_SLOT, "slot %r" % (v,))
    return v


# --- Messages -------------------------------------------------------------------------------------
# Each class: TYPE, FIELDS (names, in wire order), payload() -> bytes, parse(payload) -> instance.
# parse() raises DecodeError only; payload() validates the same rules, so they are inverses.


class Message:
    """Common behaviour: equality and repr over FIELDS."""

    TYPE = -1
    FIELDS = ()  # type: tuple[str, ...]

    def payload(self) -> bytes:
        """The message's payload bytes."""
        return b""

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self) or getattr(other, "TYPE", None) != self.TYPE:
            return False
        for f in self.FIELDS:
            if getattr(self, f) != getattr(other, f):
                return False
        return True

    def __repr__(self) -> str:
        return "%s(%s)" % (TYPE_NAMES.get(self.TYPE, "?"),
                           ", ".join("%s=%r" % (f, getattr(self, f)) for f in self.FIELDS))


class Empty(Message):
    """A message without payload (SLOT_STATUS, ABORT, ACK)."""

    def __init__(self, mtype: int) -> None:
        self.TYPE = mtype

    @classmethod
    def parse_for(cls, mtype: int, p: "Buffer") -> "Empty":
        """Parse an empty payload for message type mtype."""
        _need_len(p, 0, 0, TYPE_NAMES[mtype])
        return cls(mtype)


class Hello(Message):
    """Host -> terminal handshake: protocol version and the host's receive limit."""

    TYPE = HELLO
    FIELDS = ("version", "max_payload")

    def __init__(self, version: int = PROTOCOL_VERSION, max_payload: int = MAX_PAYLOAD) -> None:
        self.version = version
        self.max_payload = max_payload

    def payload(self) -> bytes:
        """version u8, max_payload u16."""
        _check_u16(self.max_payload, MIN_PEER_PAYLOAD, "max_payload")
        return bytes((_u8(self.version, "version"), self.max_payload >> 8,
                      self.max_payload & 0xFF))

    @classmethod
    def parse(cls, p: "Buffer") -> "Hello":
        """Decode; BAD_PAYLOAD if short or max_payload below MIN_PEER_PAYLOAD."""
        _need_len(p, 3, 3, "HELLO")
        mp = (p[1] << 8) | p[2]
        _check_u16(mp, MIN_PEER_PAYLOAD, "max_payload")
        return cls(p[0], mp)


def _check_u16(v: int, lo: int, what: str) -> None:
    if not isinstance(v, int) or v < lo or v > 0xFFFF:
        raise _bad("%s %r not in %d..65535" % (what, v, lo))


class HelloAck(Message):
    """Terminal -> host handshake answer."""

    TYPE = HELLO_ACK
    FIELDS = ("version", "fw_major", "fw_minor", "fw_patch", "max_payload", "slots")

    def __init__(self, version: int, fw_major: int, fw_minor: int, fw_patch: int,
                 max_payload: int, slots: int) -> None:
        self.version = version
        self.fw_major = fw_major
        self.fw_minor = fw_minor
        self.fw_patch = fw_patch
        self.max_payload = max_payload
        self.slots = slots

    def payload(self) -> bytes:
        """version, fw major/minor/patch u8, max_payload u16, slots u8."""
        _check_u16(self.max_payload, MIN_PEER_PAYLOAD, "max_payload")
        if not 1 <= self.slots <= MAX_SLOTS:
            raise _bad("slots %r" % (self.slots,))
        return bytes((_u8(self.version, "version"), _u8(self.fw_major, "fw_major"),
                      _u8(self.fw_minor, "fw_minor"), _u8(self.fw_patch, "fw_patch"),
                      self.max_payload >> 8, self.max_payload & 0xFF, self.slots))

    @classmethod
    def parse(cls, p: "Buffer") -> "HelloAck":
        """Decode; BAD_PAYLOAD on length or range errors."""
        _need_len(p, 7, 7, "HELLO_ACK")
        mp = (p[4] << 8) | p[5]
        _check_u16(mp, MIN_PEER_PAYLOAD, "max_payload")
        if not 1 <= p[6] <= MAX_SLOTS:
            raise _bad("slots %d" % p[6])
        return cls(p[0], p[1], p[2], p[3], mp, p[6])


class SlotStatusRsp(Message):
    """Per-slot state: SLOT_EMPTY, SLOT_PRESENT, SLOT_POWERED or SLOT_ERROR."""

    TYPE = SLOT_STATUS_RSP
    FIELDS = ("states",)

    def __init__(self, states: "list[int]") -> None:
        self.states = list(states)

    def payload(self) -> bytes:
        """count u8, then one state byte per slot."""
        n = len(self.states)
        if not 1 <= n <= MAX_SLOTS:
            raise _bad("%d slots" % n)
        for s in self.states:
            if not isinstance(s, int) or not 0 <= s <= SLOT_ERROR:
                raise _bad("slot state %r" % (s,))
        return bytes([n] + self.states)

    @classmethod
    def parse(cls, p: "Buffer") -> "SlotStatusRsp":
        """Decode; BAD_PAYLOAD if the count disagrees with the length or a state is unknown."""
        _need_len(p, 2, 1 + MAX_SLOTS, "SLOT_STATUS_RSP")
        if p[0] != len(p) - 1:
            raise _bad("count %d but %d states" % (p[0], len(p) - 1))
        states = []
        for s in p[1:]:
            if s > SLOT_ERROR:
                raise _bad("slot state %d" % s)
            states.append(s)
        return cls(states)


class SlotRequest(Message):
    """A request naming one slot (POWER_ON, POWER_OFF)."""

    FIELDS = ("slot",)

    def __init__(self, mtype: int, slot: int) -> None:
        self.TYPE = mtype
        self.slot = slot

    def payload(self) -> bytes:
        """slot u8."""
        return bytes((_slot(self.slot),))

    @classmethod
    def parse_for(cls, mtype: int, p: "Buffer") -> "SlotRequest":
        """Decode for mtype; BAD_SLOT if the slot byte is out of range."""
        _need_len(p, 1, 1, TYPE_NAMES[mtype])
        return cls(mtype, _slot(p[0]))


class Atr(Message):
    """POWER_ON answer: slot, protocol in use, TA1-coded Fi/Di in use, the ATR bytes."""

    TYPE = ATR
    FIELDS = ("slot", "protocol", "fidi", "atr")

    def __init__(self, slot: int, protocol: int, fidi: int, atr: bytes) -> None:
        self.slot = slot
        self.protocol = protocol
        self.fidi = fidi
        self.atr = bytes(atr)

    def payload(self) -> bytes:
        """slot, protocol, fidi u8, then 2..33 ATR bytes."""
        _need_len(self.atr, 2, MAX_ATR, "ATR")
        if self.protocol not in (0, 1):
            raise _bad("protocol %r" % (self.protocol,))
        return bytes((_slot(self.slot), self.protocol, _u8(self.fidi, "fidi"))) + self.atr

    @classmethod
    def parse(cls, p: "Buffer") -> "Atr":
        """Decode; BAD_PAYLOAD on length or protocol."""
        _need_len(p, 5, 3 + MAX_ATR, "ATR")
        if p[1] not in (0, 1):
            raise _bad("protocol %d" % p[1])
        return cls(_slot(p[0]), p[1], p[2], bytes(p[3:]))


class Transmit(Message):
    """An APDU for the card in a slot (short APDUs; T=0 carries no extended length)."""

    TYPE = TRANSMIT
    FIELDS = ("slot", "apdu")

    def __init__(self, slot: int, apdu: bytes) -> None:
        self.slot = slot
        self.apdu = bytes(apdu)

    def payload(self) -> bytes:
        """slot u8, then the APDU (4..MAX_PAYLOAD-1 bytes)."""
        _need_len(self.apdu, 4, MAX_PAYLOAD - 1, "APDU")
        return bytes((_slot(self.slot),)) + self.apdu

    @classmethod
    def parse(cls, p: "Buffer") -> "Transmit":
        """Decode; BAD_PAYLOAD if the APDU is shorter than a header."""
        _need_len(p, 5, MAX_PAYLOAD, "TRANSMIT")
        return cls(_slot(p[0]), bytes(p[1:]))


class Response(Message):
    """The card's response to TRANSMIT: data then SW1 SW2."""

    TYPE = RESPONSE
    FIELDS = ("data",)

    def __init__(self, data: bytes) -> None:
        self.data = bytes(data)

    def payload(self) -> bytes:
        """2..258 bytes ending with SW1 SW2."""
        _need_len(self.data, 2, MAX_RESPONSE, "RESPONSE")
        return self.data

    @classmethod
    def parse(cls, p: "Buffer") -> "Response":
        """Decode; BAD_PAYLOAD if it cannot hold a status word."""
        _need_len(p, 2, MAX_RESPONSE, "RESPONSE")
        return cls(bytes(p))


class PinField(Message):
    """How one PIN is put in the APDU: length limits, pad byte, padded length, encoding."""

    FIELDS = ("min_len", "max_len", "pad", "padded_len", "encoding")
    SIZE = 5

    def __init__(self, min_len: int, max_len: int, pad: int = 0xFF, padded_len: int = 0,
                 encoding: int = PIN_ASCII) -> None:
        self.min_len = min_len
        self.max_len = max_len
        self.pad = pad
        self.padded_len = padded_len
        self.encoding = encoding

    def block_len(self, digits: int) -> int:
        """Bytes this field takes in the APDU for a PIN of `digits` digits."""
        raw = digits if self.encoding == PIN_ASCII else (digits + 1) // 2
        return self.padded_len if self.padded_len else raw

    def check(self) -> None:
        """BAD_PAYLOAD unless 1 <= min <= max <= 12, encoding known and padding fits."""
        for f in self.FIELDS:
            _u8(getattr(self, f), f)
        if not 1 <= self.min_len <= self.max_len <= MAX_PIN_DIGITS:
            raise _bad("PIN length %r..%r" % (self.min_len, self.max_len))
        if self.encoding not in (PIN_ASCII, PIN_BCD):
            raise _bad("PIN encoding %r" % (self.encoding,))
        raw = self.max_len if self.encoding == PIN_ASCII else (self.max_len + 1) // 2
        if self.padded_len and not raw <= self.padded_len <= MAX_PIN_BLOCK:
            raise _bad("padded length %r for %r digits" % (self.padded_len, self.max_len))

    def payload(self) -> bytes:
        """min, max, pad, padded_len, encoding (u8 each)."""
        self.check()
        return bytes((self.min_len, self.max_len, self.pad, self.padded_len, self.encoding))

    @classmethod
    def parse(cls, p: "Buffer") -> "PinField":
        """Decode 5 bytes and check them."""
        _need_len(p, 5, 5, "PIN field")
        f = cls(p[0], p[1], p[2], p[3], p[4])
        f.check()
        return f


def _tries(v: int) -> int:
    # ISO 7816-4 §11.5.6 / 63Cx: a counter is 0..15; TRIES_UNKNOWN when the host has none.
    if not isinstance(v, int) or not (0 <= v <= 15 or v == TRIES_UNKNOWN):
        raise _bad("tries %r" % (v,))
    return v


class SecureVerify(Message):
    """The terminal asks for a PIN under its own prompt, builds the APDU, returns only the SW.

    CLA INS P1 P2 say what the host wants sent; the terminal checks them against the prompt's
    rules (terminal.py, PIN policy) and refuses anything else before showing a prompt.
    """

    TYPE = SECURE_VERIFY
    FIELDS = ("slot", "cla", "ins", "p1", "p2", "timeout_s", "prompt", "tries",
              "pin")  # type: tuple[str, ...]

    def __init__(self, slot: int, cla: int, ins: int, p1: int, p2: int, timeout_s: int,
                 prompt: int, tries: int, pin: PinField) -> None:
        self.slot = slot
        self.cla = cla
        self.ins = ins
        self.p1 = p1
        self.p2 = p2
        self.timeout_s = timeout_s
        self.prompt = prompt
        self.tries = tries
        self.pin = pin

    def fields(self) -> "tuple[PinField, ...]":
        """The PIN fields in APDU order."""
        return (self.pin,)

    def payload(self) -> bytes:
        """slot cla ins p1 p2 timeout_s prompt tries (u8 each), then the 5-byte PIN field(s)."""
        head = bytes((_slot(self.slot), _u8(self.cla, "cla"), _u8(self.ins, "ins"),
                      _u8(self.p1, "p1"), _u8(self.p2, "p2"), _u8(self.timeout_s, "timeout_s"),
                      _u8(self.prompt, "prompt"), _tries(self.tries)))
        for f in self.fields():
            head += f.payload()
        return head

    @classmethod
    def parse(cls, p: "Buffer") -> "SecureVerify":
        """Decode; BAD_PAYLOAD on a bad PIN field or tries count."""
        _need_len(p, 13, 13, "SECURE_VERIFY")
        return cls(_slot(p[0]), p[1], p[2], p[3], p[4], p[5], p[6], _tries(p[7]),
                   PinField.parse(p[8:13]))


class SecureChange(SecureVerify):
    """Two PINs in one APDU: current (old PIN, or PUK for SECURE_UNBLOCK) then new."""

    TYPE = SECURE_CHANGE
    FIELDS = ("slot", "cla", "ins", "p1", "p2", "timeout_s", "prompt", "tries", "current",
              "new")

    def __init__(self, slot: int, cla: int, ins: int, p1: int, p2: int, timeout_s: int,
                 prompt: int, tries: int, current: PinField, new: PinField) -> None:
        self.slot = slot
        self.cla = cla
        self.ins = ins
        self.p1 = p1
        self.p2 = p2
        self.timeout_s = timeout_s
        self.prompt = prompt
        self.tries = tries
        self.current = current
        self.new = new

    def fields(self) -> "tuple[PinField, ...]":
        """The PIN fields in APDU order."""
        return (self.current, self.new)

    @classmethod
    def parse(cls, p: "Buffer") -> "SecureChange":
        """Decode; BAD_PAYLOAD on a bad PIN field or tries count."""
        _need_len(p, 18, 18, TYPE_NAMES[cls.TYPE])
        return cls(_slot(p[0]), p[1], p[2], p[3], p[4], p[5], p[6], _tries(p[7]),
                   PinField.parse(p[8:13]), PinField.parse(p[13:18]))


class SecureUnblock(SecureChange):
    """SECURE_CHANGE's layout, where `current` is the PUK (RESET RETRY COUNTER)."""

    TYPE = SECURE_UNBLOCK


class PinResult(Message):
    """The card's status word for a secure PIN operation, nothing else."""

    TYPE = PIN_RESULT
    FIELDS = ("sw",)

    def __init__(self, sw: int) -> None:
        self.sw = sw

    def payload(self) -> bytes:
        """SW1 SW2."""
        _check_u16(self.sw, 0, "sw")
        return bytes((self.sw >> 8, self.sw & 0xFF))

    @classmethod
    def parse(cls, p: "Buffer") -> "PinResult":
        """Decode two bytes."""
        _need_len(p, 2, 2, "PIN_RESULT")
        return cls((p[0] << 8) | p[1])


class Confirm(Message):
    """Show text and wait for OK or Cancel (consent, pairing code)."""

    TYPE = CONFIRM
    FIELDS = ("timeout_s", "text")

    def __init__(self, timeout_s: int, text: str) -> None:
        self.timeout_s = timeout_s
        self.text = text

    def payload(self) -> bytes:
        """timeout_s u8 (0: default 30 s), text (ASCII + LF, 1..128)."""
        raw = _text_bytes(self.text, MAX_TEXT, "text")
        if not raw:
            raise _bad("empty CONFIRM text")
        return bytes((_u8(self.timeout_s, "timeout_s"),)) + raw

    @classmethod
    def parse(cls, p: "Buffer") -> "Confirm":
        """Decode; BAD_PAYLOAD on empty or non-ASCII text."""
        _need_len(p, 2, 1 + MAX_TEXT, "CONFIRM")
        return cls(p[0], _text(p[1:], MAX_TEXT, "text"))


class ConfirmResult(Message):
    """CONFIRM_OK, CONFIRM_CANCEL or CONFIRM_TIMEOUT."""

    TYPE = CONFIRM_RESULT
    FIELDS = ("result",)

    def __init__(self, result: int) -> None:
        self.result = result

    def payload(self) -> bytes:
        """result u8."""
        if self.result not in (CONFIRM_OK, CONFIRM_CANCEL, CONFIRM_TIMEOUT):
            raise _bad("confirm result %r" % (self.result,))
        return bytes((self.result,))

    @classmethod
    def parse(cls, p: "Buffer") -> "ConfirmResult":
        """Decode one byte in 0..2."""
        _need_len(p, 1, 1, "CONFIRM_RESULT")
        if p[0] > CONFIRM_TIMEOUT:
            raise _bad("confirm result %d" % p[0])
        return cls(p[0])


class Display(Message):
    """Lines to show (an empty list clears the screen); secret_s > 0 marks a secret screen.

    A secret screen (a code) leaves the display after min(secret_s, MAX_SECRET_S) seconds,
    on OK, or when the Vitale card is removed, and is never restored after a prompt.
    """

    TYPE = DISPLAY
    FIELDS = ("lines", "secret_s")

    def __init__(self, lines: "list[str]", secret_s: int = 0) -> None:
        self.lines = list(lines)
        self.secret_s = secret_s

    def payload(self) -> bytes:
        """secret_s u8, count u8, then the lines joined by LF (ASCII, <= 128 bytes)."""
        n = len(self.lines)
        if n > MAX_LINES:
            raise _bad("%d lines > %d" % (n, MAX_LINES))
        for line in self.lines:
            if "\n" in line:
                raise _bad("LF inside a line")
        return bytes((_u8(self.secret_s, "secret_s"), n)) + _text_bytes(
            "\n".join(self.lines), MAX_TEXT, "text")

    @classmethod
    def parse(cls, p: "Buffer") -> "Display":
        """Decode; BAD_PAYLOAD if the line count disagrees with the text."""
        _need_len(p, 2, 2 + MAX_TEXT, "DISPLAY")
        n = p[1]
        text = _text(p[2:], MAX_TEXT, "text")
        lines = text.split("\n") if n else []
        if n > MAX_LINES or len(lines) != n or (not n and text):
            raise _bad("line count %d does not match the text" % n)
        return cls(lines, p[0])


class Identity(Message):
    """The daemon's identity (certificate fingerprint) the terminal shows when F1 is pressed."""

    TYPE = IDENTITY
    FIELDS = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text

    def payload(self) -> bytes:
        """text (ASCII + LF, 1..128)."""
        raw = _text_bytes(self.text, MAX_IDENTITY, "text")
        if not raw:
            raise _bad("empty IDENTITY text")
        return raw

    @classmethod
    def parse(cls, p: "Buffer") -> "Identity":
        """Decode; BAD_PAYLOAD on empty or non-ASCII text."""
        _need_len(p, 1, MAX_IDENTITY, "IDENTITY")
        return cls(_text(p, MAX_IDENTITY, "text"))


class PairWindow(Message):
    """A pairing window is open for `seconds` (0: it closed); the terminal counts it down."""

    TYPE = PAIR_WINDOW
    FIELDS = ("seconds",)

    def __init__(self, seconds: int) -> None:
        self.seconds = seconds

    def payload(self) -> bytes:
        """seconds u16 (0..MAX_PAIR_WINDOW_S)."""
        _check_u16(self.seconds, 0, "seconds")
        if self.seconds > MAX_PAIR_WINDOW_S:
            raise _bad("window %d s > %d" % (self.seconds, MAX_PAIR_WINDOW_S))
        return bytes((self.seconds >> 8, self.seconds & 0xFF))

    @classmethod
    def parse(cls, p: "Buffer") -> "PairWindow":
        """Decode; BAD_PAYLOAD beyond MAX_PAIR_WINDOW_S."""
        _need_len(p, 2, 2, "PAIR_WINDOW")
        seconds = (p[0] << 8) | p[1]
        if seconds > MAX_PAIR_WINDOW_S:
            raise _bad("window %d s > %d" % (seconds, MAX_PAIR_WINDOW_S))
        return cls(seconds)


class Event(Message):
    """Unsolicited (sequence 0): card inserted/removed, cancel pressed, slot fault, pairing
    window asked for."""

    TYPE = EVENT
    FIELDS = ("kind", "slot")

    def __init__(self, kind: int, slot: int = NO_SLOT) -> None:
        self.kind = kind
        self.slot = slot

    def payload(self) -> bytes:
        """kind u8, slot u8 (0xFF: none)."""
        if self.kind not in (EV_CARD_INSERTED, EV_CARD_REMOVED, EV_CANCEL_PRESSED, EV_SLOT_FAULT,
                             EV_PAIR_REQUESTED):
            raise _bad("event kind %r" % (self.kind,))
        if self.slot != NO_SLOT:
            _slot(self.slot)
        return bytes((self.kind, self.slot))

    @classmethod
    def parse(cls, p: "Buffer") -> "Event":
        """Decode; BAD_PAYLOAD on an unknown kind."""
        _need_len(p, 2, 2, "EVENT")
        ev = cls(p[0], p[1])
        ev.payload()  # same checks
        return ev


class Error(Message):
    """An error answer (or a link-level complaint): code u8 and a short ASCII detail."""

    TYPE = ERROR
    FIELDS = ("code", "detail")

    def __init__(self, code: int, detail: str = "") -> None:
        self.code = code
        self.detail = detail

    def payload(self) -> bytes:
        """code u8, detail (printable ASCII, <= 64)."""
        return bytes((_u8(self.code, "code"),)) + _text_bytes(self.detail, MAX_DETAIL, "detail",
                                                             False)

    @classmethod
    def parse(cls, p: "Buffer") -> "Error":
        """Decode; BAD_PAYLOAD on a long or non-ASCII detail."""
        _need_len(p, 1, 1 + MAX_DETAIL, "ERROR")
        return cls(p[0], _text(p[1:], MAX_DETAIL, "detail", False))


_EMPTY = (SLOT_STATUS, ABORT, ACK)
_SLOT_REQ = (POWER_ON, POWER_OFF)
_CLASSES = {  # type: Any
    HELLO: Hello, HELLO_ACK: HelloAck, SLOT_STATUS_RSP: SlotStatusRsp, ATR: Atr,
    TRANSMIT: Transmit, RESPONSE: Response, SECURE_VERIFY: SecureVerify,
    SECURE_CHANGE: SecureChange, SECURE_UNBLOCK: SecureUnblock, PIN_RESULT: PinResult,
    CONFIRM: Confirm, CONFIRM_RESULT: ConfirmResult, DISPLAY: Display, IDENTITY: Identity,
    PAIR_WINDOW: PairWindow, EVENT: Event, ERROR: Error,
}


def decode(mtype: int, payload: "Buffer") -> "Any":
    """Message object for (type, payload); DecodeError (UNKNOWN_TYPE, BAD_PAYLOAD, BAD_SLOT)."""
    if mtype in _EMPTY:
        return Empty.parse_for(mtype, payload)
    if mtype in _SLOT_REQ:
        return SlotRequest.parse_for(mtype, payload)
    cls = _CLASSES.get(mtype)
    if cls is None:
        raise DecodeError(E_UNKNOWN_TYPE, "type 0x%02X" % mtype)
    return cls.parse(payload)


def encode(seq: int, msg: "Any") -> bytes:
    """A whole frame for a message object."""
    return encode_frame(seq, msg.TYPE, msg.payload())
