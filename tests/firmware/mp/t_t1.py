"""ISO 7816-3 T=1 (§11) against a scripted T=1 card: blocks, chaining, errors, WTX, IFS, BWT."""

import iso7816
from mptest import raises
from slot import CardSlot
from support import ATR_T2_ONLY, FakeSlotHw, T1Card, edc, t1_atr

# The CPS3 contactless historical bytes behind a T=1-only ATR (IFSC 32, BWI 4, CWI 13).
HIST = bytes.fromhex("0031B86404B0ECC173940180829000")
ATR = t1_atr(ta3=0x20, tb3=0x4D, hist=HIST)
CLK_F = 372


def echo(apdu):
    """Card OS: the command data back, then 90 00 (case 4: CLA INS P1 P2 Lc data Le)."""
    if len(apdu) > 5:
        return bytes(apdu[5:5 + apdu[4]]) + b"\x90\x00"
    return b"\x90\x00"


def big(apdu):
    """Card OS: 256 bytes (a signature) then 90 00."""
    return bytes(i & 0xFF for i in range(256)) + b"\x90\x00"


async def powered(atr=ATR, card=None, **kw):
    hw = FakeSlotHw(atr=atr, **kw)
    hw.t1 = card or T1Card(echo)
    slot = CardSlot(hw, 0)
    slot.set_present(True)
    await slot.power_on()
    return hw, slot


def apdu(n, ins=0x2A):
    """A case 4 APDU with n data bytes."""
    return bytes((0x00, ins, 0x9E, 0x9A, n)) + bytes((i * 7) & 0xFF for i in range(n)) + b"\x00"


async def run(slot, cmd):
    out = bytearray(300)
    n = await slot.transmit(cmd, out)
    return bytes(out[:n])


def test_parse_t1_atr_fields():
    info = iso7816.parse_atr(ATR)
    assert info.offers(1) and not info.offers(0)
    assert (info.ifsc, info.bwi, info.cwi, info.crc) == (32, 4, 13, False)
    crc = iso7816.parse_atr(t1_atr(ta3=0xFE, tb3=0x25, tc3=0x01))
    assert (crc.ifsc, crc.bwi, crc.cwi, crc.crc) == (254, 2, 5, True)
    plain = iso7816.parse_atr(t1_atr())
    assert (plain.ifsc, plain.bwi, plain.cwi) == (32, 4, 13)
    with raises(iso7816.BadAtr):
        iso7816.parse_atr(t1_atr(ta3=0xFF))
    with raises(iso7816.BadAtr):
        iso7816.parse_atr(t1_atr(tb3=0xA0))


async def test_power_on_selects_t1_and_negotiates_ifsd():
    hw, slot = await powered()
    assert slot.state == iso7816.POWERED and slot.protocol == 1
    card = hw.t1
    assert card.received[0] == (0xC1, bytes((254,)))  # S(IFS request), IFSD = 254
    assert card.ifsd == 254 and slot.ifsc == 32
    # §11.4.3: BWT = 11 etu + 2^4 x 960 x 372 clocks; CWT = (11 + 2^13) etu.
    assert slot.bwt == 11 * CLK_F + 16 * 960 * CLK_F
    assert slot.cwt == (11 + 8192) * CLK_F
    assert slot.bwt in hw.timeouts and slot.cwt in hw.timeouts


async def test_pps_proposes_t1_then_blocks_at_the_new_speed():
    hw, slot = await powered(atr=t1_atr(ta1=0x13, ta3=0xFE))
    assert hw.pps_seen == 1 and slot.pps_status == "accepted" and slot.fidi == 0x13
    assert bytes(hw.received[:4]) == bytes((0xFF, 0x11, 0x13, 0xFF ^ 0x11 ^ 0x13))  # PPS0: T=1
    assert hw.timing == (372, 4, 0)
    assert slot.cwt == (11 + 8192) * CLK_F // 4  # CWT in etu at D = 4
    assert slot.bwt == 11 * CLK_F // 4 + 16 * 960 * CLK_F  # BWT's 960 x 2^BWI part is in Fd
    assert slot.ifsc == 254
    assert await run(slot, apdu(100)) == apdu(100)[5:105] + b"\x90\x00"  # no chaining
    assert len(hw.t1.received) == 2


async def test_unsupported_protocols_still_refused():
    hw = FakeSlotHw(atr=ATR_T2_ONLY)
    slot = CardSlot(hw, 0)
    slot.set_present(True)
    with raises(iso7816.UnsupportedCard):
        await slot.power_on()
    assert slot.state == iso7816.ERROR and not hw.powered


async def test_i_block_exchange_toggles_sequence_numbers():
    hw, slot = await powered()
    card = hw.t1
    for k in range(3):
        assert await run(slot, apdu(4)) == apdu(4)[5:9] + b"\x90\x00"
    pcbs = [pcb for pcb, _inf in card.received[1:]]
    assert pcbs == [0x00, 0x40, 0x00]  # N(S) 0, 1, 0
    assert [pcb for pcb, _inf in card.sent[1:]] == [0x00, 0x40, 0x00]
    assert card.apdus[0] == apdu(4)
    # The block on the wire: NAD PCB LEN INF LRC.
    first = bytes((0, 0, 10)) + apdu(4)
    assert bytes(hw.received[5:5 + 14]) == first + edc(first)  # after S(IFS): 5 bytes


async def test_command_chained_to_ifsc():
    hw, slot = await powered()
    card = hw.t1
    cmd = apdu(70)  # 76 bytes > IFSC 32: 32 + 32 + 12, M set on the first two
    assert await run(slot, cmd) == cmd[5:75] + b"\x90\x00"
    got = card.received[1:]
    assert [(pcb, len(inf)) for pcb, inf in got] == [(0x20, 32), (0x60, 32), (0x00, 12)]
    assert [pcb for pcb, _ in card.sent[1:3]] == [0x90, 0x80]  # R(1), R(0): acknowledged
    assert card.apdus == [cmd]


async def test_response_chained_to_ifsd():
    card = T1Card(big)
    hw, slot = await powered(card=card)
    card.ifsd = 100  # as if the card could not send more per block
    rsp = await run(slot, apdu(2))
    assert rsp == bytes(i & 0xFF for i in range(256)) + b"\x90\x00"
    assert [(pcb, len(inf)) for pcb, inf in card.sent[1:]] == [(0x20, 100), (0x60, 100),
                                                                (0x00, 58)]
    assert [pcb for pcb, _ in card.received[2:]] == [0x90, 0x80]  # our R(N(R)) acks


async def test_response_longer_than_ifsd_254_is_chained():
    hw, slot = await powered(card=T1Card(big))
    rsp = await run(slot, apdu(2))
    assert len(rsp) == 258
    assert [len(inf) for _pcb, inf in hw.t1.sent[1:]] == [254, 4]


async def test_edc_error_gets_r_block_and_the_card_resends():
    hw, slot = await powered()
    card = hw.t1
    card.faults = ["corrupt"]
    assert await run(slot, apdu(3)) == apdu(3)[5:8] + b"\x90\x00"
    assert card.received[-1] == (0x81, b"")  # R-block N(R)=0, EDC error
    assert card.sent[-1] == card.sent[-2]  # the same I-block again
    assert slot.state == iso7816.POWERED


async def test_lost_chain_ack_is_asked_again():
    hw, slot = await powered()
    card = hw.t1
    card.faults = ["drop"]  # the R-block acknowledging our first chained block is lost
    cmd = apdu(40)
    assert await run(slot, cmd) == cmd[5:45] + b"\x90\x00"
    assert card.apdus == [cmd]
    assert 0x82 in [pcb for pcb, _ in card.received]  # R(N(R)=0), other error: nothing came


async def test_three_errors_then_resynch_and_retry():
    hw, slot = await powered()
    card = hw.t1
    card.faults = ["corrupt"] * 4
    assert await run(slot, apdu(1)) == apdu(1)[5:6] + b"\x90\x00"
    assert (0xC0, b"") in card.received and slot.resynchs == 1
    assert card.apdus == [apdu(1), apdu(1)]  # sent again after RESYNCH, from N(S) = 0
    assert card.received[-1][0] == 0x00


async def test_wtx_request_is_answered_and_extends_the_wait():
    hw, slot = await powered()
    card = hw.t1
    card.faults = [("wtx", 3)]
    assert await run(slot, apdu(2)) == apdu(2)[5:7] + b"\x90\x00"
    assert (0xE3, b"\x03") in card.received and slot.wtx_seen == 1
    assert slot.bwt * 3 in hw.timeouts


async def test_endless_wtx_counts_as_mute():
    hw, slot = await powered()
    hw.t1.faults = [("wtx", 1)] * 70
    with raises(iso7816.CardMute):
        await run(slot, apdu(1))
    assert slot.wtx_seen == 61 and slot.state == iso7816.ERROR


async def test_card_ifs_request_changes_ifsc():
    hw, slot = await powered()
    card = hw.t1
    card.ifsc = 16
    card.last = b""
    # The card asks for IFSC 16 before answering (S(IFS request) from the card side).
    card.pending = b""
    orig = card._next_chunk

    def ifs_first():
        card._next_chunk = orig
        return card._send(0xC1, b"\x10")
    card._next_chunk = ifs_first
    await run(slot, apdu(1))
    assert (0xE1, b"\x10") in card.received and slot.ifsc == 16
    await run(slot, apdu(20))  # 26 bytes: 16 + 10
    assert [len(inf) for pcb, inf in card.received[-2:]] == [16, 10]


async def test_crc_edc_when_tc3_says_so():
    card = T1Card(echo, crc=True)
    hw, slot = await powered(atr=t1_atr(tc3=0x01), card=card)
    assert slot.crc
    assert await run(slot, apdu(5)) == apdu(5)[5:10] + b"\x90\x00"
    assert card.edc_errors == 0


async def test_mute_card_times_out_at_bwt():
    hw, slot = await powered()
    card = hw.t1
    card.faults = ["mute"]
    del hw.timeouts[:]
    with raises(iso7816.CardMute):
        await run(slot, apdu(1))
    assert slot.state == iso7816.ERROR and not hw.powered
    assert hw.timeouts and all(t == slot.bwt for t in hw.timeouts)
    assert len(hw.timeouts) == 1 + 3 + 3  # the block, 3 R-blocks, 3 RESYNCH


async def test_mute_at_ifs_negotiation_is_card_mute():
    card = T1Card(echo)
    card.faults = ["mute"]
    hw = FakeSlotHw(atr=ATR)
    hw.t1 = card
    slot = CardSlot(hw, 0)
    slot.set_present(True)
    with raises(iso7816.CardMute):
        await slot.power_on()
    assert slot.state == iso7816.ERROR


async def test_abort_request_ends_the_exchange():
    hw, slot = await powered()
    hw.t1.faults = ["abort"]
    with raises(iso7816.CardProtocolError):
        await run(slot, apdu(1))
    assert (0xE2, b"") in hw.t1.received
    assert slot.state == iso7816.ERROR


async def test_removal_mid_block_is_card_removed():
    hw, slot = await powered()
    hw.t1.faults = ["drop"]
    hw.card_present = False
    with raises(iso7816.CardRemoved):
        await run(slot, apdu(1))
    assert slot.state == iso7816.EMPTY
