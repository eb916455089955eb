"""The card core: APDU parsing, INS -> handler dispatch, response chunking, power cycles.

Handlers take the command and return response data; any refusal is `raise CardStatus(sw)`.
The core answers in T=0 style: 6Cxx when a short Le is smaller than the data it asked for,
61xx when the data exceeds what the card sends at once (held for GET RESPONSE).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from bifente.apdu.command import CommandApdu, ResponseApdu
from bifente.apdu.errors import MalformedData
from bifente.apdu.ins import INS
from bifente.apdu.sw import SW
from bifente.simulators.cardos.fs import DF, EF, RecordEF, fcp
from bifente.simulators.cardos.security import Pin, SecurityEnvironment

__all__ = ["Card", "CardStatus", "Handler"]

log = logging.getLogger(__name__)

MAX_CHAIN_DATA = 4096  # cap on data a command chain may accumulate before we refuse it


class CardStatus(Exception):
    """Raised by a handler to answer with a status word and no data."""

    def __init__(self, sw: int) -> None:
        super().__init__(f"{sw:04X}")
        self.sw = sw


Handler = Callable[[CommandApdu], bytes]


class Card:
    """A simulated contact card: subclasses build the file system and register handlers."""

    atr: bytes = b"\x3b\x00"
    max_response = 256  # bytes sent before 61xx; IAS-ECC CPx sends at most 0xE7
    # SELECT P2 values answered (ISO 7816-4 §11.1.1): 00 FCI, 02 FMD/none, 04 FCP, 0C nothing.
    select_p2: frozenset[int] = frozenset({0x00, 0x02, 0x04, 0x0C})

    def __init__(self) -> None:
        self.mf = DF(0x3F00, name="MF")
        self.pins: dict[int, Pin] = {}
        self.se = SecurityEnvironment()
        self.current_df: DF = self.mf
        self.current_ef: EF | RecordEF | None = None
        self.handlers: dict[int, Handler] = {
            INS.SELECT: self.do_select,
            INS.READ_BINARY: self.do_read_binary,
            INS.READ_RECORD: self.do_read_record,
            INS.GET_RESPONSE: self.do_get_response,
            INS.VERIFY: self.do_verify,
        }
        self.powered = False
        self._pending = b""  # data waiting for GET RESPONSE
        self._chain: tuple[int, int, int, bytearray] | None = None
        self.apdu_count = 0

    # -- power -------------------------------------------------------------------------
    def power_on(self) -> bytes:
        """Cold reset: every volatile state is cleared; returns the ATR."""
        self.reset_state()
        self.powered = True
        return self.atr

    def power_off(self) -> None:
        """Remove power: the security state does not survive (TOOLCHAIN.md, pcscd timing)."""
        self.reset_state()
        self.powered = False

    def reset_state(self) -> None:
        """Clear the security environment, selection, chaining and pending response."""
        self.se.reset()
        self.current_df = self.mf
        self.current_ef = None
        self._pending = b""
        self._chain = None

    # -- dispatch ----------------------------------------------------------------------
    def transmit(self, raw: bytes) -> bytes:
        """Process one command APDU; always answers (a card that never answers hangs vpcd)."""
        self.apdu_count += 1
        try:
            command = CommandApdu.parse(raw)
        except (MalformedData, ValueError):
            return ResponseApdu(b"", SW.WRONG_LENGTH).to_bytes()
        try:
            data = self._dispatch(command)
        except _MoreData as more:
            self._pending = more.rest
            return ResponseApdu(more.head, more.sw).to_bytes()
        except CardStatus as status:
            return ResponseApdu(b"", status.sw).to_bytes()
        except Exception:  # a simulator bug must still answer, never hang the reader
            log.exception("card handler failed")
            return ResponseApdu(b"", SW.NO_PRECISE_DIAGNOSIS).to_bytes()
        return self._respond(command, data).to_bytes()

    def _dispatch(self, command: CommandApdu) -> bytes:
        if command.cla & 0x80 and command.cla != 0x80:
            raise CardStatus(SW.CLA_NOT_SUPPORTED)
        if command.ins != INS.GET_RESPONSE:
            self._pending = b""
        handler = self.handlers.get(command.ins)
        if handler is None:
            raise CardStatus(SW.INS_NOT_SUPPORTED)
        if command.cla & 0x10:  # ISO 7816-4 §5.4.1 command chaining: keep, answer 9000
            if self._chain and self._chain[:3] != (command.ins, command.p1, command.p2):
                self._chain = None
                raise CardStatus(SW.LAST_COMMAND_OF_CHAIN_EXPECTED)
            chain = self._chain or (command.ins, command.p1, command.p2, bytearray())
            chain[3].extend(command.data)
            if len(chain[3]) > MAX_CHAIN_DATA:
                self._chain = None
                raise CardStatus(SW.WRONG_LENGTH)
            self._chain = chain
            return b""
        if self._chain is not None:
            ins, p1, p2, head = self._chain
            self._chain = None
            if (ins, p1, p2) != (command.ins, command.p1, command.p2):
                raise CardStatus(SW.LAST_COMMAND_OF_CHAIN_EXPECTED)
            command = CommandApdu(command.cla, command.ins, command.p1, command.p2,
                                  bytes(head) + command.data, command.le, extended=True)
        return handler(command)

    def _respond(self, command: CommandApdu, data: bytes) -> ResponseApdu:
        if not data:
            return ResponseApdu(b"", SW.OK)
        le = command.le
        if le is None:
            # Case 3 on T=0: the data waits for GET RESPONSE (ISO 7816-3 §10.3.4).
            self._pending = data
            return ResponseApdu(b"", 0x6100 | min(len(data), 256) & 0xFF)
        if le < len(data) and len(data) <= 256 and le < self.max_response:
            return ResponseApdu(b"", 0x6C00 | (len(data) & 0xFF))  # wrong Le, exact length
        if len(data) > self.max_response:
            head, self._pending = data[: self.max_response], data[self.max_response:]
            return ResponseApdu(head, 0x6100 | (min(len(self._pending), 256) & 0xFF))
        return ResponseApdu(data, SW.OK)

    # -- file handling ------------------------------------------------------------------
    def _child(self, df: DF, fid: int) -> DF | EF | RecordEF:
        node = df.children.get(fid)
        if node is None:
            raise CardStatus(SW.FILE_NOT_FOUND)
        return node

    def _select(self, node: DF | EF | RecordEF) -> None:
        if isinstance(node, DF):
            if node is not self.current_df and node.aid is not None and node is not self.mf:
                # Entering another application drops the security state (IAS-ECC §7.x
                # behaviour); the MF is no application even when it has a DF name.
                self.se.templates.clear()
                self.se.hash_state = None
            self.current_df, self.current_ef = node, None
        else:
            self.current_ef = node

    def do_select(self, c: CommandApdu) -> bytes:
        """SELECT (ISO 7816-4 §11.1.1): by FID (P1 00/02), AID (04), path (08/09)."""
        if c.p2 not in self.select_p2:
            raise CardStatus(SW.INCORRECT_P1_P2)
        node: DF | EF | RecordEF
        if c.p1 == 0x04:
            found = self.mf.find_aid(c.data) if c.data else self.mf
            if found is None:
                raise CardStatus(SW.FILE_NOT_FOUND)
            node = found
        elif c.p1 in (0x00, 0x01, 0x02):
            if not c.data or c.data == b"\x3f\x00":
                node = self.mf
            elif len(c.data) != 2:
                raise CardStatus(SW.WRONG_LENGTH)
            else:
                fid = int.from_bytes(c.data, "big")
                df = self.current_df
                if fid == df.fid:
                    node = df
                elif fid in df.children:
                    node = df.children[fid]
                elif df.parent is not None and c.p1 == 0x00 and fid in df.parent.children:
                    node = df.parent.children[fid]
                else:
                    raise CardStatus(SW.FILE_NOT_FOUND)
        elif c.p1 == 0x03:
            node = self.current_df.parent or self.mf
        elif c.p1 in (0x08, 0x09):
            if not c.data or len(c.data) % 2:
                raise CardStatus(SW.WRONG_LENGTH)
            fids = [int.from_bytes(c.data[i:i + 2], "big") for i in range(0, len(c.data), 2)]
            node = self.mf if c.p1 == 0x08 else self.current_df
            if fids and fids[0] == 0x3F00:
                node, fids = self.mf, fids[1:]
            for fid in fids:
                if not isinstance(node, DF):
                    raise CardStatus(SW.FILE_NOT_FOUND)
                node = self._child(node, fid)
        else:
            raise CardStatus(SW.INCORRECT_P1_P2)
        self._select(node)
        if c.p2 in (0x0C, 0x02):
            return b""
        return fcp(node)

    def _check_read(self, node: EF | RecordEF) -> None:
        if not node.read.always and node.read.pin not in self.se.verified:
            raise CardStatus(SW.SECURITY_STATUS_NOT_SATISFIED)

    def _ef_for_read(self, c: CommandApdu) -> EF | RecordEF:
        if c.p1 & 0x80:  # short EF identifier in P1 b5-b1 (ISO 7816-4 §11.2.2)
            sfi = c.p1 & 0x1F
            for child in self.current_df.children.values():
                if isinstance(child, EF | RecordEF) and child.sfi == sfi:
                    self.current_ef = child
                    return child
            raise CardStatus(SW.FILE_NOT_FOUND)
        if self.current_ef is None:
            raise CardStatus(SW.COMMAND_NOT_ALLOWED_NO_EF)
        return self.current_ef

    def do_read_binary(self, c: CommandApdu) -> bytes:
        """READ BINARY (ISO 7816-4 §11.2.3) with a 15-bit offset or an SFI."""
        ef = self._ef_for_read(c)
        if not isinstance(ef, EF):
            raise CardStatus(SW.INCOMPATIBLE_FILE_STRUCTURE)
        self._check_read(ef)
        offset = c.p2 if c.p1 & 0x80 else ((c.p1 & 0x7F) << 8) | c.p2
        if offset >= len(ef.data):
            # End of file: 6282 with no data, which hosts (OpenSC's IAS-ECC driver among
            # them) take as "nothing more"; 6B00 would fail their whole read.
            raise CardStatus(SW.END_OF_FILE)
        return ef.data[offset:offset + (c.le or 256)]

    def do_read_record(self, c: CommandApdu) -> bytes:
        """READ RECORD by number (P2 b3-b1 = 100)."""
        if c.p2 & 0x07 != 0x04:
            raise CardStatus(SW.INCORRECT_P1_P2)
        sfi = c.p2 >> 3
        if sfi:
            target = next((ch for ch in self.current_df.children.values()
                           if isinstance(ch, RecordEF) and ch.sfi == sfi), None)
            if target is None:
                raise CardStatus(SW.FILE_NOT_FOUND)
            self.current_ef = target
        ef = self.current_ef
        if ef is None:
            raise CardStatus(SW.COMMAND_NOT_ALLOWED_NO_EF)
        if not isinstance(ef, RecordEF):
            raise CardStatus(SW.INCOMPATIBLE_FILE_STRUCTURE)
        self._check_read(ef)
        if not 1 <= c.p1 <= len(ef.records):
            raise CardStatus(SW.RECORD_NOT_FOUND)
        return ef.records[c.p1 - 1]

    def do_get_response(self, c: CommandApdu) -> bytes:
        """GET RESPONSE (ISO 7816-4 §11.7.1): hand out what a previous command left."""
        if not self._pending:
            raise CardStatus(SW.CONDITIONS_NOT_SATISFIED)
        want = min(c.le or 256, self.max_response)
        head, rest = self._pending[:want], self._pending[want:]
        self._pending = b""
        if rest:  # keep the rest for the next GET RESPONSE
            raise _MoreData(head, rest)
        return head

    # -- PIN ---------------------------------------------------------------------------
    def pin(self, reference: int) -> Pin:
        """The PIN object with this reference (6A88 if there is none)."""
        found = self.pins.get(reference & 0x7F) or self.pins.get(reference)
        if found is None:
            raise CardStatus(SW.REFERENCED_DATA_NOT_FOUND)
        return found

    def do_verify(self, c: CommandApdu) -> bytes:
        """VERIFY (ISO 7816-4 §11.5.6): check, or with no data report the tries left."""
        if c.p1 not in (0x00, 0xFF):
            raise CardStatus(SW.INCORRECT_P1_P2)
        pin = self.pin(c.p2)
        if c.p1 == 0xFF:  # ISO 7816-4: reset the verification status
            self.se.verified.discard(pin.reference)
            return b""
        if pin.blocked:
            raise CardStatus(SW.AUTH_METHOD_BLOCKED)
        if not c.data:  # status query without a try
            if pin.reference in self.se.verified:
                return b""
            raise CardStatus(0x63C0 | pin.tries_left)
        if not pin.valid_format(c.data):
            raise CardStatus(SW.WRONG_LENGTH)
        if pin.check(c.data):
            self.se.verified.add(pin.reference)
            return b""
        self.se.verified.discard(pin.reference)
        if pin.blocked:
            raise CardStatus(SW.AUTH_METHOD_BLOCKED)
        raise CardStatus(0x63C0 | pin.tries_left)


class _MoreData(CardStatus):
    """GET RESPONSE handing out one piece while more remains."""

    def __init__(self, head: bytes, rest: bytes) -> None:
        super().__init__(0x6100 | (min(len(rest), 256) & 0xFF))
        self.head, self.rest = head, rest
