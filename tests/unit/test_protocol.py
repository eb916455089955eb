"""CardProtocol over InProcessTransport against small misbehaving cards defined here.

Each fake card sits at the transport seam (`atr` + `transmit(bytes) -> bytes`) and answers the
way a T=0 card would: 61xx with GET RESPONSE, 6Cxx with the exact length, chaining, 6282 at EOF.
"""

from __future__ import annotations

import pytest

from bifente.apdu.command import MAX_LE, CommandApdu
from bifente.apdu.errors import (
    ApduError,
    AuthMethodBlocked,
    ConditionsNotSatisfied,
    FileNotFound,
    MalformedData,
    ProtocolError,
    SecurityStatusNotSatisfied,
)
from bifente.apdu.ins import INS
from bifente.apdu.protocol import MAX_GET_RESPONSE, CardProtocol
from bifente.apdu.transport import InProcessTransport

PAYLOAD = bytes((i * 37 + 11) & 0xFF for i in range(1000))
SIGN = CommandApdu(0x00, INS.PERFORM_SECURITY_OPERATION, 0x9E, 0x9A)  # case 1, answer via 61xx


def sw(value: int) -> bytes:
    return value.to_bytes(2, "big")


class FakeCard:
    """Records every command; subclasses answer one parsed command."""

    atr = bytes.fromhex("3B020000")

    def __init__(self) -> None:
        self.commands: list[bytes] = []

    def transmit(self, raw: bytes) -> bytes:
        self.commands.append(bytes(raw))
        return self.answer(CommandApdu.parse(raw))

    def answer(self, c: CommandApdu) -> bytes:
        return sw(0x9000)


def over(card: FakeCard) -> CardProtocol:
    return CardProtocol(InProcessTransport(card))


# -- GET RESPONSE ------------------------------------------------------------------------------
class ChunkingCard(FakeCard):
    """Any command leaves `payload` pending (after `head` bytes); GET RESPONSE hands it out."""

    def __init__(self, payload: bytes, *, head: int = 0, chunk: int = 256) -> None:
        super().__init__()
        self.payload, self.head, self.chunk = payload, head, chunk
        self.pending = b""

    def _more(self, out: bytes) -> bytes:
        if self.pending:
            return out + sw(0x6100 | (min(len(self.pending), 256) & 0xFF))
        return out + sw(0x9000)

    def answer(self, c: CommandApdu) -> bytes:
        if c.ins == INS.GET_RESPONSE:
            if not self.pending:
                return sw(0x6985)
            n = min(c.le or 256, self.chunk)
            out, self.pending = self.pending[:n], self.pending[n:]
            return self._more(out)
        out, self.pending = self.payload[:self.head], self.payload[self.head:]
        return self._more(out)


@pytest.mark.parametrize(("size", "head", "chunk"), [
    (1, 0, 256), (255, 0, 256), (256, 0, 256), (257, 0, 256), (1000, 0, 256), (1000, 0xE7, 0xE7),
    (1000, 100, 256), (5000, 0, 256),
])
def test_get_response_collects_everything(size: int, head: int, chunk: int) -> None:
    card = ChunkingCard((PAYLOAD * 5)[:size], head=head, chunk=chunk)
    response = over(card).send(SIGN)
    assert response.ok and response.data == (PAYLOAD * 5)[:size]
    gets = [CommandApdu.parse(raw) for raw in card.commands[1:]]
    assert all(g.ins == INS.GET_RESPONSE and (g.p1, g.p2) == (0, 0) for g in gets)
    assert sum(min(g.le, chunk) for g in gets) >= size - head


def test_get_response_sw2_00_means_256() -> None:
    card = ChunkingCard(PAYLOAD[:700])
    assert over(card).send(SIGN).data == PAYLOAD[:700]
    # 700 pending -> 6100 -> Le 00 (256); 444 -> 6100 -> Le 00; 188 -> 61BC -> Le BC.
    assert [raw.hex() for raw in card.commands[1:]] == ["00c0000000", "00c0000000", "00c00000bc"]


def test_get_response_drops_the_chaining_bit_and_keeps_the_channel() -> None:
    card = ChunkingCard(PAYLOAD[:10])
    over(card).send(CommandApdu(0x13, INS.PERFORM_SECURITY_OPERATION, 0x80, 0x86, b"x"))
    assert card.commands[1] == bytes.fromhex("03C000000A")


class Endless61Card(FakeCard):
    """Answers 61xx to everything, GET RESPONSE included, with `per` bytes each time."""

    def __init__(self, per: int, sw2: int) -> None:
        super().__init__()
        self.per, self.sw2 = per, sw2

    def answer(self, c: CommandApdu) -> bytes:
        return bytes(self.per) + sw(0x6100 | self.sw2)


def test_61xx_forever_without_data_hits_the_cap() -> None:
    card = Endless61Card(0, 0x10)
    with pytest.raises(ProtocolError, match="61xx"):
        over(card).send(SIGN)
    assert len(card.commands) == 1 + MAX_GET_RESPONSE


def test_61xx_forever_with_data_stops_at_max_le() -> None:
    card = Endless61Card(256, 0x00)
    with pytest.raises(ProtocolError):
        over(card).send(SIGN)
    assert len(card.commands) <= 1 + MAX_GET_RESPONSE
    assert len(card.commands) * 256 > MAX_LE  # it stopped because the data grew too long


def test_61xx_forever_through_transceive() -> None:
    card = Endless61Card(1, 0x01)
    with pytest.raises(ProtocolError):
        over(card).transceive(SIGN)
    assert len(card.commands) == 1 + MAX_GET_RESPONSE


# -- 6Cxx --------------------------------------------------------------------------------------
class WrongLeCard(FakeCard):
    """Answers 6C<len> unless Le is the exact length; `stubborn` answers 6Cxx every time."""

    def __init__(self, content: bytes, *, stubborn: bool = False) -> None:
        super().__init__()
        self.content, self.stubborn = content, stubborn

    def answer(self, c: CommandApdu) -> bytes:
        if self.stubborn or c.le != len(self.content):
            return sw(0x6C00 | (len(self.content) & 0xFF))
        return self.content + sw(0x9000)


@pytest.mark.parametrize(("size", "le_byte"), [(1, 0x01), (0x0C, 0x0C), (255, 0xFF), (256, 0x00)])
def test_6cxx_resends_with_the_exact_le(size: int, le_byte: int) -> None:
    card = WrongLeCard(PAYLOAD[:size])
    command = CommandApdu(0x00, INS.READ_BINARY, 0x00, 0x00, le=16 if size != 16 else 8)
    assert over(card).transceive(command) == PAYLOAD[:size]
    assert len(card.commands) == 2
    assert card.commands[1] == bytes.fromhex("00B00000") + bytes([le_byte])


def test_6cxx_keeps_the_command_data() -> None:
    card = WrongLeCard(PAYLOAD[:32])
    command = CommandApdu(0x00, INS.INTERNAL_AUTHENTICATE, 0x00, 0x00, b"\x01\x02\x03", le=256)
    assert over(card).transceive(command) == PAYLOAD[:32]
    assert card.commands[1] == bytes.fromhex("008800000301020320")


def test_6cxx_is_resent_only_once() -> None:
    card = WrongLeCard(PAYLOAD[:16], stubborn=True)
    protocol = over(card)
    response = protocol.send(CommandApdu(0x00, INS.READ_BINARY, le=8))
    assert response.sw == 0x6C10 and len(card.commands) == 2
    with pytest.raises(ApduError) as info:
        protocol.transceive(CommandApdu(0x00, INS.READ_BINARY, le=8))
    assert info.value.sw == 0x6C10 and len(card.commands) == 4


# -- command chaining --------------------------------------------------------------------------
class ChainCard(FakeCard):
    """Keeps chained pieces (CLA b5 set), answers the whole data's length on the last one."""

    def __init__(self, fail_at: int | None = None) -> None:
        super().__init__()
        self.fail_at = fail_at
        self.buffer = bytearray()
        self.received: bytes | None = None

    def answer(self, c: CommandApdu) -> bytes:
        if self.fail_at is not None and len(self.commands) == self.fail_at:
            return sw(0x6A80)
        self.buffer += c.data
        if c.cla & 0x10:
            return sw(0x9000)
        self.received, self.buffer = bytes(self.buffer), bytearray()
        return len(self.received).to_bytes(2, "big") + sw(0x9000)


@pytest.mark.parametrize(("size", "pieces"), [(1, [1]), (255, [255]), (256, [255, 1]),
                                               (510, [255, 255]), (600, [255, 255, 90]),
                                               (1000, [255, 255, 255, 235])])
def test_chaining_splits_at_255_and_sets_the_bit_on_all_but_the_last(size: int,
                                                                      pieces: list[int]) -> None:
    card = ChainCard()
    data = PAYLOAD[:size]
    command = CommandApdu(0x00, INS.PERFORM_SECURITY_OPERATION, 0x80, 0x86, data, le=256)
    assert over(card).transceive(command, chained=True) == size.to_bytes(2, "big")
    sent = [CommandApdu.parse(raw) for raw in card.commands]
    assert [len(c.data) for c in sent] == pieces
    assert [c.cla for c in sent] == [0x10] * (len(pieces) - 1) + [0x00]
    assert all((c.ins, c.p1, c.p2) == (0x2A, 0x80, 0x86) for c in sent)
    assert [c.le for c in sent] == [None] * (len(pieces) - 1) + [256]  # Le only on the last
    assert card.received == data
    assert all(not c.extended for c in sent)


def test_chaining_with_a_smaller_chunk() -> None:
    card = ChainCard()
    response = over(card).send_chained(CommandApdu(0x00, 0x2A, 0x80, 0x86, PAYLOAD[:100]),
                                       chunk=40)
    assert response.ok and card.received == PAYLOAD[:100]
    assert [len(raw) - 5 for raw in card.commands] == [40, 40, 20]


def test_chaining_stops_at_the_first_refused_piece() -> None:
    card = ChainCard(fail_at=2)
    protocol = over(card)
    response = protocol.send_chained(CommandApdu(0x00, 0x2A, 0x80, 0x86, PAYLOAD[:800]))
    assert response.sw == 0x6A80 and len(card.commands) == 2
    with pytest.raises(ApduError) as info:
        over(ChainCard(fail_at=1)).transceive(CommandApdu(0x00, 0x2A, 0x80, 0x86, PAYLOAD[:800]),
                                              chained=True)
    assert info.value.sw == 0x6A80


# -- malformed responses and status words ------------------------------------------------------
class RawCard(FakeCard):
    """Answers the same raw bytes to everything."""

    def __init__(self, raw: bytes) -> None:
        super().__init__()
        self.raw = raw

    def answer(self, c: CommandApdu) -> bytes:
        return self.raw


@pytest.mark.parametrize("raw", [b"", b"\x90", bytes(MAX_LE + 3), bytes(MAX_LE + 100)])
def test_malformed_responses(raw: bytes) -> None:
    with pytest.raises(MalformedData):
        over(RawCard(raw)).send(CommandApdu(0x00, INS.READ_BINARY, le=256))


def test_longest_response_accepted() -> None:
    raw = bytes(MAX_LE) + sw(0x9000)
    response = over(RawCard(raw)).send(CommandApdu(0x00, INS.READ_BINARY, le=MAX_LE))
    assert len(response.data) == MAX_LE


@pytest.mark.parametrize(("status", "kind"), [
    (0x6982, SecurityStatusNotSatisfied), (0x6983, AuthMethodBlocked),
    (0x6A82, FileNotFound), (0x6985, ConditionsNotSatisfied), (0x6A80, ApduError),
    (0x6700, ApduError), (0x63C2, ApduError),
])
def test_transceive_maps_status_words(status: int, kind: type[ApduError]) -> None:
    with pytest.raises(ApduError) as info:
        over(RawCard(sw(status))).transceive(CommandApdu(0x00, INS.SELECT, 0x04, 0x0C, b"\xa0"))
    assert type(info.value) is kind and info.value.sw == status
    assert f"{status:04X}" in str(info.value)


def test_transceive_returns_data_on_9000() -> None:
    assert over(RawCard(b"\x01\x02" + sw(0x9000))).transceive(CommandApdu(0, 0xB0, le=2)) \
        == b"\x01\x02"


# -- READ BINARY until the end -----------------------------------------------------------------
class FileCard(FakeCard):
    """One transparent EF; `end_sw` answers reads at or past its end, `tail_sw` short reads."""

    def __init__(self, content: bytes, *, end_sw: int = 0x6282, tail_sw: int = 0x9000,
                 refuse: int | None = None) -> None:
        super().__init__()
        self.content, self.end_sw, self.tail_sw, self.refuse = content, end_sw, tail_sw, refuse

    def answer(self, c: CommandApdu) -> bytes:
        if self.refuse is not None:
            return sw(self.refuse)
        offset = (c.p1 << 8) | c.p2
        if offset >= len(self.content):
            return sw(self.end_sw)
        out = self.content[offset:offset + (c.le or 256)]
        return out + sw(0x9000 if len(out) == (c.le or 256) else self.tail_sw)


def offsets(card: FakeCard) -> list[int]:
    return [(raw[2] << 8) | raw[3] for raw in card.commands]


@pytest.mark.parametrize("end_sw", [0x6282, 0x6B00, 0x9000])
def test_read_binary_all_stops_at_the_end_status(end_sw: int) -> None:
    card = FileCard(PAYLOAD[:512], end_sw=end_sw)
    assert over(card).read_binary_all() == PAYLOAD[:512]
    assert offsets(card) == [0, 256, 512]


@pytest.mark.parametrize(("size", "tail_sw"), [(1, 0x9000), (300, 0x9000), (300, 0x6282),
                                                (767, 0x9000)])
def test_read_binary_all_stops_on_a_short_chunk(size: int, tail_sw: int) -> None:
    card = FileCard(PAYLOAD[:size], end_sw=0x6A80, tail_sw=tail_sw)  # 6A80 would fail the read
    assert over(card).read_binary_all() == PAYLOAD[:size]
    assert offsets(card) == list(range(0, size, 256))


def test_read_binary_all_chunk_size() -> None:
    card = FileCard(PAYLOAD[:200])
    assert over(card).read_binary_all(chunk=0x80) == PAYLOAD[:200]
    assert offsets(card) == [0, 0x80] and all(raw[4] == 0x80 for raw in card.commands)


def test_read_binary_all_raises_the_typed_error() -> None:
    with pytest.raises(SecurityStatusNotSatisfied):
        over(FileCard(PAYLOAD, refuse=0x6982)).read_binary_all()


def test_read_binary_all_is_bounded() -> None:
    endless = FileCard(PAYLOAD * 100)  # 100 000 bytes: more than a 15-bit offset reaches
    with pytest.raises(ProtocolError):
        over(endless).read_binary_all()
    # Offsets 0x0000..0x7F00 are read; 0x8000 does not fit P1-P2 and is never sent.
    assert offsets(endless) == list(range(0, 0x8000, 256))
    limited = FileCard(PAYLOAD * 100)
    assert over(limited).read_binary_all(limit=1024) == (PAYLOAD * 100)[:1024]
    assert len(limited.commands) == 4


# -- SELECT ------------------------------------------------------------------------------------
def test_select_path_strips_the_mf_and_uses_p1_08() -> None:
    card = FakeCard()
    protocol = over(card)
    protocol.select_path([0x3F00, 0x0001, 0x5031])
    protocol.select_path([0x0001, 0x5031])
    protocol.select_path([0x3F00, 0xD003], fcp=True)
    assert [raw.hex() for raw in card.commands] == [
        "00a4080c0400015031", "00a4080c0400015031", "00a4080402d00300"]


def test_select_path_relative_uses_p1_09() -> None:
    card = FakeCard()
    over(card).select_path([0x5031], from_mf=False)
    assert card.commands == [bytes.fromhex("00A4090C025031")]


@pytest.mark.parametrize("path", [[0x3F00], []])
def test_select_path_to_the_mf_alone(path: list[int]) -> None:
    card = FakeCard()
    over(card).select_path(path)
    assert card.commands == [bytes.fromhex("00A4000C")]


def test_select_fid() -> None:
    card = FakeCard()
    protocol = over(card)
    protocol.select_fid(0x3F00)
    protocol.select_fid(0x2F00)
    protocol.select_fid(0x3F00, fcp=True)
    protocol.select_aid(bytes.fromhex("E828BD080F8025000001FF0010"))
    assert [raw.hex() for raw in card.commands] == [
        "00a4000c", "00a4020c022f00", "00a4000400", "00a4040c0de828bd080f8025000001ff0010"]


def test_protocol_counts_and_exposes_the_atr() -> None:
    card = ChunkingCard(PAYLOAD[:600])
    protocol = over(card)
    protocol.send(SIGN)
    assert protocol.apdu_count == len(card.commands) == 4
    assert protocol.atr == FakeCard.atr


class GetResponseWrongLeCard(FakeCard):
    """A T=0 card behind a reader: 61 00 announces 256 bytes, but it sends 0xE7 at a time and
    answers a GET RESPONSE asking for more with 6C E7 (what the virtual terminal does)."""

    def __init__(self, payload: bytes) -> None:
        super().__init__()
        self.pending = payload

    def answer(self, c: CommandApdu) -> bytes:
        if c.ins != 0xC0:
            return sw(0x6100)
        if (c.le or 256) != min(len(self.pending), 0xE7):
            return sw(0x6C00 | min(len(self.pending), 0xE7))
        head, self.pending = self.pending[:0xE7], self.pending[0xE7:]
        return head + sw(0x6100 | len(self.pending) if self.pending else 0x9000)


def test_get_response_answered_6cxx_is_resent_with_the_exact_le() -> None:
    payload = bytes(range(256))
    card = GetResponseWrongLeCard(payload)
    response = over(card).send(CommandApdu(0x00, 0x88, 0x00, 0x00, b"\x01" * 51, le=256))
    assert response.ok and response.data == payload
    les = [CommandApdu.parse(raw).le for raw in card.commands[1:]]
    assert les == [256, 0xE7, 25]
