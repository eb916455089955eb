"""The card side of ISO 7816-3 on its own: what goes on the wire, character by character.

A reader is played here by hand with the same line messages the firmware sends; the card is
a real simulated card. (The firmware itself drives the engine in the other test modules.)
"""

from __future__ import annotations

import pytest

from bifente.apdu.cps_spec import ATR_CONTACT, CPS_AID
from bifente.apdu.vitale_spec import ATR_VITALE2, VITALE_AID, StandinFid
from bifente.simulators.cps3 import Cps3Card
from bifente.simulators.terminal.card_io import ATR_CPS3_T1, CardEngine, WireStats, t1_edc
from bifente.simulators.vitale import Vitale2Card

F_HZ = 3_906_250


class Line:
    """The reader's end of one slot line."""

    def __init__(self, engine: CardEngine) -> None:
        self.engine = engine
        self.got = bytearray()
        self.switch: list[tuple[int, int]] = []
        engine.attach(self._from_card)

    def _from_card(self, data: bytes) -> None:
        i = 0
        while i < len(data):
            tag, n = data[i], data[i + 1]
            payload = data[i + 2:i + 2 + n]
            if tag == ord("D"):
                self.got += payload
            else:
                self.switch.append((tag, payload[0]))
            i += 2 + n

    def msg(self, tag: str, payload: bytes = b"") -> None:
        self.engine.feed(bytes((ord(tag), len(payload))) + payload)

    def take(self) -> bytes:
        out, self.got = bytes(self.got), bytearray()
        return out

    def send(self, data: bytes) -> bytes:
        self.msg("D", data)
        return self.take()

    def timing(self, f: int, d: int) -> None:
        self.msg("T", bytes((f >> 8, f & 0xFF, d, 0)))

    def reset(self) -> bytes:
        self.timing(372, 1)
        self.msg("P", b"\x00")
        self.msg("R", b"\x00")
        self.msg("R", b"\x01")
        return self.take()


def test_atr_on_reset_and_card_detect_on_attach() -> None:
    line = Line(CardEngine(Vitale2Card("adult")))
    assert line.switch == [(ord("C"), 1), (ord("F"), 0)]
    assert line.reset() == ATR_VITALE2
    line.msg("O")
    line.msg("R", b"\x00")
    line.msg("R", b"\x01")
    assert line.take() == b""  # no VCC, no ATR


@pytest.mark.parametrize(("pps1", "echo"), [(0x13, True), (0x12, True), (0x14, False),
                                             (0x96, False)])
def test_pps_against_the_vitale_ta1(pps1: int, echo: bool) -> None:
    line = Line(CardEngine(Vitale2Card("adult")))
    line.reset()
    request = bytes((0xFF, 0x10, pps1, 0xFF ^ 0x10 ^ pps1))
    answer = line.send(request)
    assert answer == (request if echo else bytes((0xFF, 0x00, 0xFF)))


def test_cps3_offers_only_the_default_speed_and_ignores_a_bad_pck() -> None:
    line = Line(CardEngine(Cps3Card("gp")))
    assert line.reset() == ATR_CONTACT
    assert line.send(bytes((0xFF, 0x10, 0x13, 0x00))) == b""  # PCK wrong: no answer (§9.3)
    line.reset()
    assert line.send(bytes((0xFF, 0x10, 0x13, 0xFF ^ 0x10 ^ 0x13))) == bytes((0xFF, 0, 0xFF))


def test_t0_case_3_then_case_2_with_a_wrong_le() -> None:
    card = Vitale2Card("adult")
    engine = CardEngine(card, single_byte_every=0)
    line = Line(engine)
    line.reset()
    select = bytes((0x00, 0xA4, 0x04, 0x0C, len(VITALE_AID))) + VITALE_AID
    assert line.send(select[:5]) == b"\xa4"  # ACK: send all the data
    assert line.send(select[5:]) == b"\x90\x00"
    fid = StandinFid.PUBLIC.to_bytes(2, "big")
    assert line.send(bytes.fromhex("00A4020C02")) == b"\xa4"
    assert line.send(fid) == b"\x90\x00"
    before = card.apdu_count
    wrong = line.send(bytes.fromhex("00B0000000"))  # Le = 256, the file is shorter
    assert wrong[0] == 0x6C and wrong[1] > 0
    answer = line.send(bytes((0x00, 0xB0, 0x00, 0x00, wrong[1])))
    assert answer[0] == 0xB0 and answer[-2:] == b"\x90\x00" and len(answer) == wrong[1] + 3
    assert card.apdu_count == before + 1  # the resend got the kept data, not a second run
    assert engine.stats.wrong_le == 1 and engine.stats.headers == 4


def test_t0_single_byte_procedure_and_nulls_on_slow_commands() -> None:
    engine = CardEngine(Cps3Card("gp"), single_byte_every=1, slow_nulls=3, null_gap=0)
    line = Line(engine)
    line.reset()
    # Every command here moves its first two data bytes one at a time (~INS), then ACK.
    for command in (bytes((0x00, 0xA4, 0x04, 0x0C, len(CPS_AID))) + CPS_AID,
                    bytes.fromhex("002241B606840181800142")):  # SELECT, then MSE SET DST
        ins = command[1]
        assert line.send(command[:5]) == bytes((ins ^ 0xFF,))
        assert line.send(command[5:6]) == bytes((ins ^ 0xFF,))
        assert line.send(command[6:7]) == bytes((ins,))
        assert line.send(command[7:]) == b"\x90\x00"
    # PSO HASH is slow: NULL bytes come before the status word.
    engine.stats = WireStats()
    pso = bytes.fromhex("002A90A0") + bytes((4,)) + bytes.fromhex("80020000")
    line.send(pso[:5])
    answer = line.send(pso[5:])
    assert answer[-5:-2] == b"\x60\x60\x60" and engine.stats.nulls == 3  # then SW1 SW2


def test_timing_mismatch_is_a_framing_error_not_an_answer() -> None:
    engine = CardEngine(Vitale2Card("adult"))
    line = Line(engine)
    line.reset()
    line.timing(372, 4)  # the reader switched speed without PPS
    assert line.send(bytes.fromhex("00B0000010")) == b""
    assert engine.stats.framing_errors == 5


def test_wire_model() -> None:
    stats = WireStats()
    stats.count((372, 1), 100, to_card=True, turnaround=True)
    stats.count((372, 4), 100, to_card=False, turnaround=True)
    etu = 372 / F_HZ
    assert stats.seconds(F_HZ) == pytest.approx((100 * 12 + 4) * etu + (100 * 12 + 4) * etu / 4)
    assert stats.seconds(F_HZ, at=(372, 1)) == pytest.approx(2 * (100 * 12 + 4) * etu)
    assert stats.total_chars == 200 and (stats.to_card, stats.from_card) == (100, 100)


# -- T=1 (§11): a card whose ATR offers only T=1 ------------------------------------------------
class EchoT1Card:
    """A tiny card OS behind the T=1-only CPS3 ATR: GET DATA gives 200 bytes, else an echo."""

    atr = ATR_CPS3_T1

    def __init__(self) -> None:
        self.apdus: list[bytes] = []

    def power_on(self) -> bytes:
        return self.atr

    def power_off(self) -> None:
        pass

    def transmit(self, raw: bytes) -> bytes:
        self.apdus.append(raw)
        if raw[1] == 0xCA:
            return bytes(i & 0xFF for i in range(200)) + b"\x90\x00"
        return raw[5:5 + raw[4]] + b"\x90\x00" if len(raw) > 5 else b"\x90\x00"


def block(pcb: int, inf: bytes = b"") -> bytes:
    head = bytes((0, pcb, len(inf))) + inf
    return head + t1_edc(head)


def blocks(data: bytes) -> list[tuple[int, bytes]]:
    """(PCB, INF) of each block in what the card sent, EDC checked."""
    out = []
    while data:
        n = data[2]
        assert t1_edc(data[:3 + n]) == data[3 + n:4 + n]
        out.append((data[1], data[3:3 + n]))
        data = data[4 + n:]
    return out


def t1_line() -> tuple[Line, CardEngine, EchoT1Card]:
    card = EchoT1Card()
    engine = CardEngine(card)
    line = Line(engine)
    assert line.reset() == ATR_CPS3_T1 and engine.t1
    return line, engine, card


def test_t1_ifs_negotiation_and_a_chained_response() -> None:
    line, engine, _card = t1_line()
    assert blocks(line.send(block(0xC1, b"\x50"))) == [(0xE1, b"\x50")]  # IFSD 80
    got = blocks(line.send(block(0x00, bytes.fromhex("00CA010000"))))
    assert got == [(0x20, bytes(range(80)))]  # N(S)=0, M: more to come
    got = blocks(line.send(block(0x90)))  # R(N(R)=1): next
    assert got == [(0x60, bytes(range(80, 160)))]
    got = blocks(line.send(block(0x80)))
    assert got == [(0x00, bytes(range(160, 200)) + b"\x90\x00")]
    assert engine.stats.chained_out == 1 and engine.stats.framing_errors == 0


def test_t1_chained_command_to_ifsc_32() -> None:
    line, engine, card = t1_line()
    apdu = bytes((0x00, 0x2A, 0x80, 0x86, 40)) + bytes(range(40)) + b"\x00"
    assert blocks(line.send(block(0x20, apdu[:32]))) == [(0x90, b"")]  # R(1): acknowledged
    assert blocks(line.send(block(0x40, apdu[32:]))) == [(0xC3, b"\x01")]  # slow: WTX first
    # No S(IFS) yet: IFSD is 32 (§11.4.2), so the 42-byte answer is chained as well.
    assert blocks(line.send(block(0xE3, b"\x01"))) == [(0x20, bytes(range(32)))]
    assert blocks(line.send(block(0x90))) == [(0x40, bytes(range(32, 40)) + b"\x90\x00")]
    assert card.apdus == [apdu] and engine.stats.chained_in == 1 and engine.stats.wtx == 1
    assert engine.stats.chained_out == 1


def test_t1_edc_error_repetition_and_resynch() -> None:
    line, _engine, card = t1_line()
    bad = bytearray(block(0x00, b"\x00\xa4\x00\x00"))
    bad[-1] ^= 0xFF
    assert blocks(line.send(bytes(bad))) == [(0x81, b"")]  # R(0), EDC error
    first = line.send(block(0x00, b"\x00\xa4\x00\x00"))
    assert blocks(first) == [(0x00, b"\x90\x00")]
    assert line.send(block(0x81)) == first  # the reader lost it: the same block again
    assert blocks(line.send(block(0xC0))) == [(0xE0, b"")]  # RESYNCH: N(S) = N(R) = 0
    assert blocks(line.send(block(0x00, b"\x00\xa4\x00\x00"))) == [(0x00, b"\x90\x00")]
    assert len(card.apdus) == 2
