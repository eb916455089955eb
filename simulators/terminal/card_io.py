"""The card side of an ISO/IEC 7816-3 contact: ATR, PPS and T=0, one character at a time.

A `CardEngine` sits on one slot's I/O line of the virtual terminal. The firmware (reader
side, firmware/iso7816.py) drives the line through simulators/terminal/mp/sim_board.py;
every line event arrives here as one message (power, RST, timing, characters), and this
engine answers exactly what a T=0 card would put on the wire: its ATR on RST rising, the PPS
echo, procedure bytes (ACK = INS, ~INS one byte at a time, NULL 60 while working), data and
SW1 SW2, 61xx for data left behind a case 3/4 command and 6Cxx for a wrong Le. The APDUs
themselves go to a simulated card object (simulators/cardos: Cps3Card, Vitale2Card).
Clauses are ISO/IEC 7816-3:2006 unless said otherwise.
"""

from __future__ import annotations

import enum
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from apdu.atr import Atr

__all__ = ["CardEngine", "LineCard", "WireStats"]

log = logging.getLogger(__name__)

DEFAULT_F, DEFAULT_D = 372, 1  # §8.3: Fd, Dd
CHAR_ETU = 12  # §7.2: 10 etu of character frame + 2 etu of minimum guard time
TURNAROUND_ETU = 16  # §10.2: leading edges of characters in opposite directions >= 16 etu apart
NULL = 0x60
PPSS = 0xFF
# ISO 7816-3 Tables 7 and 8 (index -> Fi, Di; 0 = RFU).
FI_TABLE = (372, 372, 558, 744, 1116, 1488, 1860, 0, 0, 512, 768, 1024, 1536, 2048, 0, 0)
DI_TABLE = (0, 1, 2, 4, 8, 16, 32, 64, 12, 20, 0, 0, 0, 0, 0, 0)

# A T=0 card knows from INS (and P1 P2) whether P3 is Le (data goes out) or Lc (data comes
# in): ISO 7816-3 §10.3.2. These send data; everything else receives it (P3 = 00: case 1).
OUTGOING_INS = frozenset({0xB0, 0xB1, 0xB2, 0xB3, 0xC0, 0xCA, 0x84})
OUTGOING_INS_P1P2 = frozenset({(0x2A, 0x9E, 0x9A)})  # PSO COMPUTE DIGITAL SIGNATURE (case 2)
# Commands a real card spends hundreds of milliseconds on: NULL bytes keep the reader waiting.
SLOW_INS = frozenset({0x2A, 0x88, 0x46})  # PSO, INTERNAL AUTHENTICATE, GENERATE KEY PAIR

# Line messages (simulators/terminal/mp/sim_board.py): TAG u8 | LEN u8 | payload.
TAG_POWER, TAG_OFF, TAG_RST, TAG_TIMING, TAG_DATA = b"P"[0], b"O"[0], b"R"[0], b"T"[0], b"D"[0]
TAG_PRESENT, TAG_FAULT = b"C"[0], b"F"[0]


class LineCard(Protocol):
    """What the engine needs from a simulated card (Cps3Card, Vitale2Card)."""

    atr: bytes

    def power_on(self) -> bytes: ...
    def power_off(self) -> None: ...
    def transmit(self, raw: bytes) -> bytes: ...


class Phase(enum.Enum):
    """Where the card is in its exchange with the reader."""

    OFF = "off"  # no VCC
    RESET = "reset"  # powered, RST low
    IDLE = "idle"  # waiting for a PPS request or a command header
    PPS = "pps"
    HEADER = "header"
    DATA_IN = "data_in"  # receiving the P3 data bytes of an incoming command
    MUTE = "mute"  # a mute card: nothing more until the next reset


@dataclass
class WireStats:
    """Characters on the card wire, by the (F, D) they went at, and what they were."""

    chars: dict[tuple[int, int], int] = field(default_factory=dict)
    turnarounds: dict[tuple[int, int], int] = field(default_factory=dict)
    to_card: int = 0
    from_card: int = 0
    atr_chars: int = 0
    pps_chars: int = 0
    headers: int = 0
    procedure_bytes: int = 0  # ACK, ~INS and NULL
    nulls: int = 0
    get_responses: int = 0
    wrong_le: int = 0  # 6Cxx answers
    framing_errors: int = 0  # characters sent at an etu the other side was not using

    def count(self, timing: tuple[int, int], n: int, *, to_card: bool, turnaround: bool) -> None:
        """Add n characters sent at timing (F, D) in one direction."""
        self.chars[timing] = self.chars.get(timing, 0) + n
        if turnaround:
            self.turnarounds[timing] = self.turnarounds.get(timing, 0) + 1
        if to_card:
            self.to_card += n
        else:
            self.from_card += n

    @property
    def total_chars(self) -> int:
        """Every character, both directions."""
        return sum(self.chars.values())

    def seconds(self, clock_hz: float, *, at: tuple[int, int] | None = None) -> float:
        """Modelled wire time: 12 etu per character + 4 etu per direction change.

        With `at`, every character is timed at that (F, D) (for instance the default 372/1);
        otherwise each at the speed it really went (the ATR and PPS always go at 372/1).
        """
        total = 0.0
        for timing, n in self.chars.items():
            f, d = at or timing
            total += n * CHAR_ETU * f / (d * clock_hz)
        for timing, n in self.turnarounds.items():
            f, d = at or timing
            total += n * (TURNAROUND_ETU - CHAR_ETU) * f / (d * clock_hz)
        return total

    def as_dict(self) -> dict[str, object]:
        """Plain values for the control protocol."""
        return {
            "chars": {f"{f}/{d}": n for (f, d), n in self.chars.items()},
            "turnarounds": {f"{f}/{d}": n for (f, d), n in self.turnarounds.items()},
            "to_card": self.to_card, "from_card": self.from_card, "atr_chars": self.atr_chars,
            "pps_chars": self.pps_chars, "headers": self.headers,
            "procedure_bytes": self.procedure_bytes, "nulls": self.nulls,
            "get_responses": self.get_responses, "wrong_le": self.wrong_le,
            "framing_errors": self.framing_errors,
        }


def _encode(tag: int, payload: bytes) -> bytes:
    out = bytearray()
    for i in range(0, max(len(payload), 1), 255):
        piece = payload[i:i + 255]
        out += bytes((tag, len(piece))) + piece
    return bytes(out)


class CardEngine:
    """One card behind one slot's I/O line, speaking T=0 character by character."""

    def __init__(self, card: LineCard | None, *, slow_nulls: int = 2, null_gap: float = 0.002,
                 single_byte_every: int = 4) -> None:
        self.card = card
        self.present = card is not None
        self.fault = False
        self.mute = False  # fault injection: stop answering (until a new card or unmute)
        self.remove_at_next_command = False  # fault injection: pulled after the next header
        self.slow_nulls = slow_nulls
        self.null_gap = null_gap
        self.single_byte_every = single_byte_every  # every Nth data transfer uses ~INS first
        self.stats = WireStats()
        self.commands = 0
        self.on_removed: Callable[[], None] | None = None
        self._write: Callable[[bytes], None] | None = None
        self._lock = threading.RLock()
        self._phase = Phase.OFF
        self._rst = 0
        self._reader_timing = (DEFAULT_F, DEFAULT_D)
        self._card_timing = (DEFAULT_F, DEFAULT_D)
        self._last_dir_to_card: bool | None = None
        self._buf = bytearray()
        self._hdr = b""
        self._need = 0
        self._single = 0  # data bytes still to move one at a time (~INS)
        self._held: tuple[bytes, bytes] | None = None  # (header[:4], response) after a 6Cxx
        self._in = bytearray()  # partial message from the reader
        self._pps_allowed = False

    @property
    def phase(self) -> str:
        """Where the card is: off, reset, idle, pps, header, data_in or mute."""
        return self._phase.value

    # -- wiring ---------------------------------------------------------------------------
    def attach(self, write: Callable[[bytes], None] | None) -> None:
        """Connect the line (a function that sends bytes to the reader side), or detach it."""
        with self._lock:
            self._write = write
            self._power_off()
            self._in.clear()
            if write is not None:
                write(bytes((TAG_PRESENT, 1, int(self.present))))
                write(bytes((TAG_FAULT, 1, int(self.fault))))

    def _emit(self, data: bytes) -> None:
        if self._write is not None:
            try:
                self._write(data)
            except OSError:
                self._write = None

    # -- card-detect ------------------------------------------------------------------------
    def insert(self, card: LineCard | None = None) -> None:
        """Put a card (or the same one) in: the card-detect switch closes."""
        with self._lock:
            if card is not None:
                self._power_off()
                self.card = card
            if self.card is None:
                raise ValueError("the slot has no card yet: give a profile (--profile NAME)")
            self.present = True
            self.mute = False
            self.remove_at_next_command = False
            self._emit(bytes((TAG_PRESENT, 1, 1)))

    def remove(self) -> None:
        """Pull the card: it loses power (and its security state); the switch opens."""
        with self._lock:
            self.present = False
            self.remove_at_next_command = False
            self._power_off()
            self._emit(bytes((TAG_PRESENT, 1, 0)))
        if self.on_removed is not None:
            self.on_removed()

    def set_fault(self, fault: bool) -> None:
        """The interface chip's fault line (short circuit, overheating)."""
        with self._lock:
            self.fault = fault
            if fault:
                self._power_off()
            self._emit(bytes((TAG_FAULT, 1, int(fault))))

    # -- line events from the reader --------------------------------------------------------
    def feed(self, data: bytes) -> None:
        """Bytes of line messages from the reader side, in any chunking."""
        with self._lock:
            self._in += data
            while len(self._in) >= 2 and len(self._in) >= 2 + self._in[1]:
                tag, n = self._in[0], self._in[1]
                payload = bytes(self._in[2:2 + n])
                del self._in[:2 + n]
                self._message(tag, payload)

    def _message(self, tag: int, payload: bytes) -> None:
        if tag == TAG_POWER:
            self._power_on()
        elif tag == TAG_OFF:
            self._power_off()
        elif tag == TAG_RST and payload:
            self._set_rst(payload[0])
        elif tag == TAG_TIMING and len(payload) == 4:
            self._reader_timing = ((payload[0] << 8) | payload[1], payload[2])
        elif tag == TAG_DATA:
            self._from_reader(payload)
        else:
            log.warning("line: unknown message %02X (%d bytes)", tag, len(payload))

    def _power_on(self) -> None:
        if self.present and self.card is not None and not self.fault:
            self._phase = Phase.RESET
            self._rst = 0

    def _power_off(self) -> None:
        if self._phase is not Phase.OFF and self.card is not None:
            self.card.power_off()  # a powered-down card forgets its verified PIN
        self._phase = Phase.OFF
        self._rst = 0
        self._card_timing = (DEFAULT_F, DEFAULT_D)
        self._buf.clear()
        self._held = None

    def _set_rst(self, level: int) -> None:
        rising = level and not self._rst
        self._rst = level
        if self._phase is Phase.OFF or self.card is None:
            return
        if not level:
            self._phase = Phase.RESET  # §6.3: a warm reset starts with RST low
            return
        if rising:
            # §6.2.2 / §6.3.2: cold or warm reset, the card answers with its ATR at Fd/Dd.
            atr = self.card.power_on()
            self._card_timing = (DEFAULT_F, DEFAULT_D)
            self._held = None
            self._buf.clear()
            if self.mute:
                self._phase = Phase.MUTE
                return
            self._phase = Phase.IDLE
            self._pps_allowed = True
            self.stats.atr_chars += len(atr)
            self._to_reader(atr)

    # -- characters -------------------------------------------------------------------------
    def _to_reader(self, data: bytes) -> None:
        if not data:
            return
        timing = self._card_timing
        turnaround = self._last_dir_to_card is not False
        self._last_dir_to_card = False
        self.stats.count(timing, len(data), to_card=False, turnaround=turnaround)
        if timing != self._reader_timing:
            self.stats.framing_errors += len(data)  # the reader samples at another etu
            return
        self._emit(_encode(TAG_DATA, data))

    def _from_reader(self, data: bytes) -> None:
        timing = self._reader_timing
        turnaround = self._last_dir_to_card is not True
        self._last_dir_to_card = True
        self.stats.count(timing, len(data), to_card=True, turnaround=turnaround)
        if self._phase in (Phase.OFF, Phase.RESET, Phase.MUTE) or not self.present:
            return  # an unpowered or mute card hears nothing
        if timing != self._card_timing:
            self.stats.framing_errors += len(data)
            return
        for b in data:
            if self._phase is Phase.MUTE or self._phase is Phase.OFF:
                return
            self._char(b)

    def _char(self, b: int) -> None:
        phase = self._phase
        if phase is Phase.IDLE:
            if self.mute:
                self._phase = Phase.MUTE
                return
            self._buf = bytearray((b,))
            if b == PPSS and self._pps_allowed:
                self._phase = Phase.PPS
            else:
                self._pps_allowed = False  # §9.1: PPS only right after the ATR
                self._phase = Phase.HEADER
            return
        self._buf.append(b)
        if phase is Phase.PPS:
            if len(self._buf) >= 2 and len(self._buf) == 3 + bin(self._buf[1] & 0x70).count("1"):
                self._pps(bytes(self._buf))
        elif phase is Phase.HEADER:
            if len(self._buf) == 5:
                self._header(bytes(self._buf))
        elif phase is Phase.DATA_IN:
            self._need -= 1
            if self._need == 0:
                self._phase = Phase.IDLE
                self._execute(self._hdr + bytes(self._buf))
            elif self._single:
                # §10.3.3: each ~INS let one byte through; after the last one, ACK the rest.
                self._single -= 1
                self._procedure(self._hdr[1] ^ 0xFF if self._single else self._hdr[1])

    # -- PPS (§9) -------------------------------------------------------------------------------
    def _pps(self, req: bytes) -> None:
        self._pps_allowed = False
        self._phase = Phase.IDLE
        self.stats.pps_chars += len(req)
        check = 0
        for b in req:
            check ^= b
        if check or (req[1] & 0x0F) != 0:
            return  # §9.3: no answer to an erroneous request (T=1 is not offered either)
        assert self.card is not None
        atr = Atr.parse(self.card.atr)
        wanted = req[2] if req[1] & 0x10 else 0x11
        fi, di = FI_TABLE[wanted >> 4], DI_TABLE[wanted & 0x0F]
        if wanted == 0x11 or (fi == atr.fi and di and di <= atr.di
                              and not (req[1] & 0x60) and not atr.specific_mode):
            self.stats.pps_chars += len(req)
            self._to_reader(req)  # §9.3: the echo accepts
            self._card_timing = (fi, di)
        else:
            pps0 = req[1] & 0x0F  # PPS1 absent: Fd, Dd stay
            answer = bytes((PPSS, pps0, PPSS ^ pps0))
            self.stats.pps_chars += len(answer)
            self._to_reader(answer)

    # -- T=0 (§10) ------------------------------------------------------------------------------
    def _procedure(self, byte: int) -> None:
        self.stats.procedure_bytes += 1
        self._to_reader(bytes((byte,)))

    def _header(self, hdr: bytes) -> None:
        self.stats.headers += 1
        self.commands += 1
        self._hdr = hdr
        self._phase = Phase.IDLE
        if self.remove_at_next_command:
            self.remove()  # pulled while the reader waits for a procedure byte
            return
        _cla, ins, p1, p2, p3 = hdr
        if ins == 0xC0:
            self.stats.get_responses += 1
        if ins in OUTGOING_INS or (ins, p1, p2) in OUTGOING_INS_P1P2:
            self._outgoing(hdr)
        elif p3 == 0:
            self._execute(hdr[:4])  # case 1
        else:
            self._phase = Phase.DATA_IN
            self._need = p3
            self._buf = bytearray()
            self._single = 0
            if self.single_byte_every and self.commands % self.single_byte_every == 0:
                self._single = min(2, p3)  # the first bytes one at a time, then ACK
                self._procedure(ins ^ 0xFF)
            else:
                self._procedure(ins)

    def _work(self, ins: int) -> bool:
        """NULL bytes while a slow command runs; False if the card left meanwhile."""
        if ins not in SLOW_INS:
            return True
        for _ in range(self.slow_nulls):
            self.stats.nulls += 1
            self._procedure(NULL)
            self._lock.release()
            try:
                time.sleep(self.null_gap)
            finally:
                self._lock.acquire()
            if not self.present or self._phase is Phase.OFF:
                return False
        return True

    def _run_apdu(self, apdu: bytes) -> bytes:
        assert self.card is not None
        return self.card.transmit(apdu)

    def _outgoing(self, hdr: bytes) -> None:
        le = hdr[4] or 256
        held, self._held = self._held, None
        if held is not None and held[0] == hdr[:4] and len(held[1]) - 2 == le:
            response = held[1]  # the resend after our 6Cxx: the data we kept
        else:
            if not self._work(hdr[1]):
                return
            response = self._run_apdu(hdr)  # case 2: CLA INS P1 P2 Le
        data, sw = response[:-2], response[-2:]
        if not data:
            if sw[0] == 0x6C:
                self.stats.wrong_le += 1
            self._to_reader(sw)
            return
        if len(data) != le:
            # §10.3.3 / ISO 7816-4 §5.3.4: wrong Le; SW2 gives the exact length. The data are
            # kept so a GET RESPONSE resent with that Le still gets them.
            self._held = (hdr[:4], response)
            self.stats.wrong_le += 1
            self._to_reader(bytes((0x6C, len(data) & 0xFF)))
            return
        ins = hdr[1]
        if self.single_byte_every and self.commands % self.single_byte_every == 0 and le > 1:
            self._procedure(ins ^ 0xFF)
            self._to_reader(data[:1])
            self._procedure(ins)
            self._to_reader(data[1:] + sw)
        else:
            self._procedure(ins)
            self._to_reader(data + sw)

    def _execute(self, apdu: bytes) -> None:
        if not self._work(apdu[1]):
            return
        response = self._run_apdu(apdu)
        data, sw = response[:-2], response[-2:]
        if data:
            # A case 3 APDU on T=0 cannot carry response data: the card OS answers 61xx for
            # it (simulators/cardos); anything else would be a simulator bug.
            log.warning("card returned %d data bytes to an incoming command", len(data))
        self._to_reader(sw)
