"""The protocol layer over one transport: GET RESPONSE, wrong-Le retry, chaining, SELECT.

Sessions speak in CommandApdu/ResponseApdu; the transport only moves bytes.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from bifente.apdu.command import MAX_LE, CommandApdu, ResponseApdu
from bifente.apdu.errors import ProtocolError, error_for_sw
from bifente.apdu.ins import INS
from bifente.apdu.transport import Transport

__all__ = ["CardProtocol"]

log = logging.getLogger(__name__)
# Raw APDU traffic goes to this level, below DEBUG, opt-in only (STYLE.md habit 8).
TRACE = 5

# 61xx chains are capped so a card cannot keep us reading forever: 256 * 256 covers MAX_LE.
MAX_GET_RESPONSE = 257
CHAIN_BIT = 0x10  # ISO 7816-4 §5.4.1: CLA b5 set on every command but the last of a chain
# Commands whose data is a PIN or PUK: the trace shows their header, never their data.
_SECRET_INS = frozenset({INS.VERIFY, INS.CHANGE_REFERENCE_DATA, INS.RESET_RETRY_COUNTER})


class CardProtocol:
    """ISO 7816-4 exchange rules on top of a Transport."""

    def __init__(self, transport: Transport, *, max_short_data: int = 255) -> None:
        self.transport = transport
        self.max_short_data = max_short_data
        self.apdu_count = 0

    @property
    def atr(self) -> bytes:
        """The card's answer to reset."""
        return self.transport.atr

    def _raw(self, command: CommandApdu) -> ResponseApdu:
        raw = command.to_bytes()
        if command.ins in _SECRET_INS and command.data:
            log.log(TRACE, "> %s <%d secret bytes>", raw[:4].hex(), len(command.data))
        else:
            log.log(TRACE, "> %s", raw.hex())
        self.apdu_count += 1
        response = ResponseApdu.parse(self.transport.transmit(raw))
        if command.ins == INS.PERFORM_SECURITY_OPERATION and (command.p1, command.p2) == (
                0x80, 0x86):  # PSO DECIPHER answers a session key: never traced
            log.log(TRACE, "< <%d secret bytes> %04X", len(response.data), response.sw)
        else:
            log.log(TRACE, "< %s %04X", response.data.hex(), response.sw)
        return response

    def send(self, command: CommandApdu) -> ResponseApdu:
        """Send one command; follow 61xx with GET RESPONSE and resend once on 6Cxx."""
        response = self._raw(command)
        if response.sw1 == 0x6C:
            # ISO 7816-3 §10.3.3 / 7816-4 §5.6: resend with Le = SW2 (00 means 256).
            response = self._raw(command.with_le(response.sw2 or 256))
        data = bytearray(response.data)
        for _ in range(MAX_GET_RESPONSE):
            if response.sw1 != 0x61:
                return ResponseApdu(bytes(data), response.sw)
            # GET RESPONSE on the same logical channel, without the chaining bit.
            get = CommandApdu(command.cla & ~CHAIN_BIT & 0xFF, INS.GET_RESPONSE, 0, 0,
                              le=response.sw2 or 256)
            response = self._raw(get)
            if response.sw1 == 0x6C:
                # A T=0 card may answer GET RESPONSE itself with 6Cxx when it sends fewer
                # bytes at once than the SW2 of its 61xx announced (ISO 7816-3 §10.3.3).
                response = self._raw(get.with_le(response.sw2 or 256))
            data += response.data
            if len(data) > MAX_LE:
                raise ProtocolError(f"response longer than {MAX_LE} bytes")
        raise ProtocolError(f"card sent 61xx more than {MAX_GET_RESPONSE} times")

    def send_chained(self, command: CommandApdu, chunk: int | None = None) -> ResponseApdu:
        """Split long data into a command chain (ISO 7816-4 §5.4.1) and send it."""
        size = chunk or self.max_short_data
        data = command.data
        if len(data) <= size:
            return self.send(command)
        pieces = [data[i:i + size] for i in range(0, len(data), size)]
        for piece in pieces[:-1]:
            part = CommandApdu(command.cla | CHAIN_BIT, command.ins, command.p1, command.p2,
                               piece)
            response = self.send(part)
            if not response.ok:
                return response
        return self.send(CommandApdu(command.cla, command.ins, command.p1, command.p2,
                                     pieces[-1], command.le))

    def transceive(self, command: CommandApdu, *, chained: bool = False) -> bytes:
        """Send (chaining if asked), return the data, raise the typed error on non-9000."""
        response = self.send_chained(command) if chained else self.send(command)
        if not response.ok:
            raise error_for_sw(response.sw)
        return response.data

    # SELECT, ISO 7816-4 §11.1.1. P2=0C: no response data; 04: return FCP.
    def select_aid(self, aid: bytes, *, fcp: bool = False) -> bytes:
        """Select an application by AID (P1=04)."""
        return self.transceive(CommandApdu(0x00, INS.SELECT, 0x04, 0x04 if fcp else 0x0C,
                                           aid, 256 if fcp else None))

    def select_fid(self, fid: int, *, fcp: bool = False) -> bytes:
        """Select an EF or DF under the current DF by file identifier (P1=02 / 00)."""
        return self.transceive(CommandApdu(0x00, INS.SELECT, 0x02 if fid != 0x3F00 else 0x00,
                                           0x04 if fcp else 0x0C,
                                           b"" if fid == 0x3F00 else fid.to_bytes(2, "big"),
                                           256 if fcp else None))

    def select_path(self, path: Sequence[int], *, from_mf: bool = True,
                    fcp: bool = False) -> bytes:
        """Select by path (P1=08 from the MF, without 3F00; P1=09 from the current DF)."""
        fids = list(path)
        if from_mf and fids and fids[0] == 0x3F00:
            fids = fids[1:]
        if not fids:
            return self.select_fid(0x3F00, fcp=fcp)
        data = b"".join(f.to_bytes(2, "big") for f in fids)
        return self.transceive(CommandApdu(0x00, INS.SELECT, 0x08 if from_mf else 0x09,
                                           0x04 if fcp else 0x0C, data,
                                           256 if fcp else None))

    def read_binary_all(self, *, chunk: int = 256, limit: int = 65536) -> bytes:
        """READ BINARY the selected transparent EF until end of file (ISO 7816-4 §11.2.3)."""
        out = bytearray()
        while len(out) < limit:
            offset = len(out)
            if offset > 0x7FFF:
                # Past a 15-bit offset we cannot tell "ended at 32 KiB" from "longer":
                # refuse rather than truncate silently.
                raise ProtocolError("file larger than a 15-bit READ BINARY offset")
            response = self.send(CommandApdu(0x00, INS.READ_BINARY, offset >> 8, offset & 0xFF,
                                             le=chunk))
            if response.sw in (0x6B00, 0x6282) or (response.sw == 0x9000 and not response.data):
                out += response.data
                break
            if not response.ok:
                raise error_for_sw(response.sw)
            out += response.data
            if len(response.data) < chunk:
                break
        return bytes(out)

    def read_record(self, number: int, *, le: int = 256) -> bytes:
        """READ RECORD by number in the selected record EF (ISO 7816-4 §11.3.3, P2=04)."""
        return self.transceive(CommandApdu(0x00, INS.READ_RECORD, number, 0x04, le=le))

    def close(self) -> None:
        """Close the transport."""
        self.transport.close()
