"""The card side of an ISO/IEC 7816-3 contact: ATR, PPS, T=0 and T=1, one character at a time.

A `CardEngine` sits on one slot's I/O line of the virtual terminal. The firmware (reader
side, firmware/slot.py and t1.py) drives the line through simulators/terminal/mp/sim_board.py;
every line event arrives here as one message (power, RST, timing, characters), and this
engine answers exactly what a T=0 card would put on the wire: its ATR on RST rising, the PPS
echo, procedure bytes (ACK = INS, ~INS one byte at a time, NULL 60 while working), data and
SW1 SW2, 61xx for data left behind a case 3/4 command and 6Cxx for a wrong Le. A card whose
ATR offers T=1 and not T=0 speaks T=1 instead (§11): blocks NAD PCB LEN INF EDC, I-blocks
chained to the reader's IFSD and received chained to its own IFSC, R-blocks acknowledging
chains and asking for repetitions, S-blocks (IFS, WTX while a slow command runs, RESYNCH,
ABORT). The APDUs themselves go to a simulated card object (simulators/cardos: Cps3Card,
Vitale2Card); `t1_card()` gives a CPS3 card behind a T=1-only ATR.
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

from bifente.apdu.atr import Atr
from bifente.contracts.iso7816_3 import DI_TABLE, FI_TABLE, t1_edc

__all__ = ["ATR_CPS3_T1", "CardEngine", "LineCard", "WireStats", "t1_card", "t1_edc"]

log = logging.getLogger(__name__)

DEFAULT_F, DEFAULT_D = 372, 1  # §8.3: Fd, Dd
CHAR_ETU = 12  # §7.2: 10 etu of character frame + 2 etu of minimum guard time
TURNAROUND_ETU = 16  # §10.2: leading edges of characters in opposite directions >= 16 etu apart
NULL = 0x60
PPSS = 0xFF

# A T=0 card knows from INS (and P1 P2) whether P3 is Le (data goes out) or Lc (data comes
# in): ISO 7816-3 §10.3.2. These send data; everything else receives it (P3 = 00: case 1).
OUTGOING_INS = frozenset({0xB0, 0xB1, 0xB2, 0xB3, 0xC0, 0xCA, 0x84})
OUTGOING_INS_P1P2 = frozenset({(0x2A, 0x9E, 0x9A)})  # PSO COMPUTE DIGITAL SIGNATURE (case 2)
# Commands a real card spends hundreds of milliseconds on: NULL bytes keep the reader waiting.
SLOW_INS = frozenset({0x2A, 0x88, 0x46})  # PSO, INTERNAL AUTHENTICATE, GENERATE KEY PAIR

# A T=1-only CPS3 ATR. It keeps every byte OpenSC's CPx mask fixes (apdu/cps_spec.py's is_cps_atr,
# so CpsSession accepts the card) and uses the free ones: T0 = 8B (TD1, 11 historical bytes),
# TD1 = 81 (T=1, TD2 follows), TD2 = 11 (TA3, T=1), TA3 = 20 (IFSC 32; BWI 4 and CWI 13 by
# default), historical bytes 00 12 25 00 64 80 00 03 7B 00 90, TCK 00. (The CPS3 contactless
# ATR, apdu/cps_spec.py's ATR_CONTACTLESS, has TD1 = 80 and so announces T=0 as well as T=1.)
ATR_CPS3_T1 = bytes.fromhex("3B8B81112000122500648000037B009000")
T1_DEFAULT_IFS = 32  # §11.4.2

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
    BLOCK = "block"  # T=1: receiving a block
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
    blocks: int = 0  # T=1 blocks, both directions
    wtx: int = 0  # T=1 S(WTX request) sent while a slow command ran
    chained_in: int = 0  # T=1 commands that came in more than one I-block
    chained_out: int = 0  # T=1 responses sent in more than one I-block

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
            "framing_errors": self.framing_errors, "blocks": self.blocks, "wtx": self.wtx,
            "chained_in": self.chained_in, "chained_out": self.chained_out,
        }


def t1_card(profile: str = "gp") -> LineCard:
    """A CPS3 card (bifente.simulators.cps3) answering with a T=1-only ATR (ATR_CPS3_T1)."""
    from bifente.simulators.cps3 import Cps3Card

    card = Cps3Card(profile)
    card.atr = ATR_CPS3_T1
    return card


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
        # T=1 (§11): chosen at each ATR; sequence numbers, sizes, the blocks in flight.
        self.t1 = False
        self._crc = False
        self._ifsc = T1_DEFAULT_IFS  # what we take per block (our ATR's TA3)
        self._ifsd = T1_DEFAULT_IFS  # what the reader takes (its S(IFS request))
        self._ns = 0
        self._nr = 0
        self._chain = bytearray()  # command received so far (chained I-blocks)
        self._pending = b""  # response still to send (chained I-blocks)
        self._slow: bytes | None = None  # APDU waiting for the reader's S(WTX response)
        self._last = b""  # last block sent, for repetitions

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
            self._t1_reset(atr)
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
            if self._silenced():  # by the previous character (a bad one, a deactivation)
                return
            self._char(b)

    def _silenced(self) -> bool:
        return self._phase is Phase.MUTE or self._phase is Phase.OFF

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
                self._phase = Phase.BLOCK if self.t1 else Phase.HEADER
            return
        self._buf.append(b)
        if phase is Phase.PPS:
            if len(self._buf) >= 2 and len(self._buf) == 3 + bin(self._buf[1] & 0x70).count("1"):
                self._pps(bytes(self._buf))
        elif phase is Phase.HEADER:
            if len(self._buf) == 5:
                self._header(bytes(self._buf))
        elif phase is Phase.BLOCK:
            if len(self._buf) >= 3 and len(self._buf) == 3 + self._buf[2] + (2 if self._crc
                                                                               else 1):
                self._phase = Phase.IDLE
                self._block(bytes(self._buf))
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
        if check or (req[1] & 0x0F) != (1 if self.t1 else 0):
            return  # §9.3: no answer to an erroneous request or to a protocol not offered
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

    # -- T=1 (§11) ------------------------------------------------------------------------------
    def _t1_reset(self, atr_raw: bytes) -> None:
        atr = Atr.parse(atr_raw)
        self.t1 = 0 not in atr.protocols and 1 in atr.protocols
        self._ifsc = atr.ifsc
        self._crc = False
        for i in range(1, len(atr.interface)):  # §11.4.4: the first TC for T=1, bit 1
            if atr.interface[i - 1].next_protocol == 1:
                tc = atr.interface[i].tc
                self._crc = bool(tc is not None and tc & 1)
                break
        self._ifsd = T1_DEFAULT_IFS
        self._ns = self._nr = 0
        self._chain = bytearray()
        self._pending = b""
        self._slow = None
        self._last = b""

    def _send_block(self, pcb: int, inf: bytes = b"", *, keep: bool = True) -> None:
        block = bytes((0, pcb, len(inf))) + inf
        block += t1_edc(block, self._crc)
        if keep:
            self._last = block
        self.stats.blocks += 1
        self._to_reader(block)

    def _block(self, block: bytes) -> None:
        self.stats.blocks += 1
        n = block[2]
        if block[0] != 0 or n == 0xFF or t1_edc(block[:3 + n], self._crc) != block[3 + n:]:
            # §11.6.3: a bad block is answered with R(N(R)) and the error (1: EDC/parity).
            self._send_block(0x80 | (self._nr << 4) | 1, keep=False)
            return
        pcb, inf = block[1], block[3:3 + n]
        if not pcb & 0x80:
            self._i_block(pcb, inf)
        elif pcb & 0xC0 == 0x80:  # R-block
            if self._pending and (pcb >> 4) & 1 == self._ns:
                self._next_chunk()  # acknowledges our chained block
            elif self._last:
                self.stats.blocks += 1
                self._to_reader(self._last)  # asks for our last block again
            else:
                self._send_block(0x80 | (self._nr << 4) | 2, keep=False)
        else:
            self._s_block(pcb & 0x3F, inf)

    def _i_block(self, pcb: int, inf: bytes) -> None:
        if (pcb >> 6) & 1 != self._nr:
            if self._last:  # a repetition of a block we already took: our answer again
                self.stats.blocks += 1
                self._to_reader(self._last)
            return
        self._nr ^= 1
        self._chain += inf
        if pcb & 0x20:  # M: more to come; acknowledge with the next N(R) (§11.6.2.2)
            if len(self._chain) == len(inf):
                self.stats.chained_in += 1
            self._send_block(0x80 | (self._nr << 4))
            return
        apdu, self._chain = bytes(self._chain), bytearray()
        self.stats.headers += 1
        self.commands += 1
        if self.remove_at_next_command:
            self.remove()
            return
        if len(apdu) >= 2 and apdu[1] in SLOW_INS:
            # §11.6.2.3: the card needs more than BWT: S(WTX request), then the answer.
            self._slow = apdu
            self.stats.wtx += 1
            self._send_block(0xC3, b"\x01")
            return
        self._answer(apdu)

    def _answer(self, apdu: bytes) -> None:
        self._pending = self._run_apdu(apdu)
        if len(self._pending) > self._ifsd:
            self.stats.chained_out += 1
        self._next_chunk()

    def _next_chunk(self) -> None:
        data, self._pending = self._pending[:self._ifsd], self._pending[self._ifsd:]
        pcb = (self._ns << 6) | (0x20 if self._pending else 0)
        self._ns ^= 1
        self._send_block(pcb, data)

    def _s_block(self, kind: int, inf: bytes) -> None:
        if kind == 0x01 and len(inf) == 1 and 0 < inf[0] < 0xFF:  # S(IFS request)
            self._ifsd = inf[0]
            self._send_block(0xE1, inf)
        elif kind == 0x00:  # S(RESYNCH request): back to N(S) = N(R) = 0
            self._ns = self._nr = 0
            self._chain = bytearray()
            self._pending = b""
            self._slow = None
            self._ifsd = T1_DEFAULT_IFS
            self._send_block(0xE0)
        elif kind == 0x02:  # S(ABORT request): drop the chain
            self._chain = bytearray()
            self._pending = b""
            self._send_block(0xE2)
        elif kind == 0x23 and self._slow is not None:  # S(WTX response): now the answer
            apdu, self._slow = self._slow, None
            self._lock.release()
            try:
                time.sleep(self.null_gap)  # (the card works)
            finally:
                self._lock.acquire()
            if self.present and self._phase is not Phase.OFF:
                self._answer(apdu)
        else:
            self._send_block(0x80 | (self._nr << 4) | 2, keep=False)
