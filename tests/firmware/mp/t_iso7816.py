"""ISO 7816-3 engine against a scripted card: activation, ATR, PPS, T=0 cases 1-4, errors."""

import iso7816
from mptest import raises
from slot import CardSlot
from support import (
    ATR_CPS3,
    ATR_CPS4,
    ATR_FAST,
    ATR_SPECIFIC,
    ATR_T1_ONLY,
    ATR_VITALE2,
    FakeSlotHw,
    case2,
    case3,
)

WT_ATR = 9600 * 372


async def powered(atr=ATR_CPS3, **kw):
    """A slot with the card powered."""
    hw = FakeSlotHw(atr=atr, **kw)
    slot = CardSlot(hw, 0)
    slot.set_present(True)
    await slot.power_on()
    return hw, slot


def out_buf():
    """A response buffer as big as the engine requires."""
    return bytearray(300)


# -- ATR parsing -----------------------------------------------------------------------------
def test_parse_atr_cps3():
    info = iso7816.parse_atr(ATR_CPS3)
    assert info.ta1 == -1 and info.fi() == 372 and info.di() == 1
    assert info.wi == 0x2A and info.offers(0) and not info.offers(1)
    assert info.length == 17


def test_parse_atr_vitale2_and_cps4():
    v = iso7816.parse_atr(ATR_VITALE2)
    assert v.ta1 == 0x13 and v.fi() == 372 and v.di() == 4 and v.wi == 10
    c = iso7816.parse_atr(ATR_CPS4)
    assert c.ta1 == 0x18 and c.di() == 12 and c.offers(0) and c.offers(1)
    assert c.first_protocol == 0


def test_parse_atr_rejects_malformed():
    bad = (
        b"\x3c\x00",  # TS
        b"\x3b",  # too short
        b"\x3b\x10",  # TA1 announced, missing
        bytes.fromhex("3B800180"),  # TCK mismatch
        bytes.fromhex("3B800181AA"),  # byte after TCK
        bytes.fromhex("3BA0000000"),  # TB1 + TD1=00 ... then missing? (length mismatch)
        bytes.fromhex("3B107000"),  # TA1 FI=7 is RFU (and trailing byte)
        bytes.fromhex("3B1070"),  # TA1 FI=7 RFU
        bytes.fromhex("3B804000"),  # TD1 announces TC2 = 00: WI = 0 is RFU
        bytes(40),
    )
    for atr in bad:
        with raises(iso7816.BadAtr):
            iso7816.parse_atr(atr)


def test_atr_length_is_known_incrementally():
    for atr in (ATR_CPS3, ATR_VITALE2, ATR_CPS4, ATR_T1_ONLY, ATR_SPECIFIC):
        known = [iso7816.atr_length(atr, n) for n in range(1, len(atr) + 1)]
        assert known[-1] == len(atr), atr
        assert all(k in (0, len(atr)) for k in known), (atr, known)


# -- activation and ATR reception --------------------------------------------------------------
async def test_cold_reset_sequence_and_waiting_times():
    hw, slot = await powered()
    assert slot.state == iso7816.POWERED
    i_on = hw.log.index("power_on B")
    i_delay = hw.log.index(f"delay {iso7816.RESET_LOW_CLOCKS}")
    i_rst = hw.log.index("rst 1")
    assert i_on < i_delay < i_rst  # VCC+CLK, then RST low >= 400 clocks, then RST high
    assert iso7816.RESET_LOW_CLOCKS >= 400
    assert hw.timeouts[0] == 40_000  # first ATR byte within 40 000 clocks
    assert set(hw.timeouts[1:]) == {WT_ATR}  # then 9600 etu between characters
    assert bytes(slot.atr[:slot.atr_len]) == ATR_CPS3
    assert slot.wwt == 960 * 0x2A * 372
    assert hw.pps_seen == 0 and slot.fidi == 0x11 and slot.pps_status == "none"


async def test_class_b_first_then_class_a():
    hw, slot = await powered(mute_class_b=True)
    powers = [e for e in hw.log if e.startswith("power_on")]
    assert powers == ["power_on B", "power_on A"]
    assert hw.log.index("power_off") < hw.log.index("power_on A")
    assert slot.state == iso7816.POWERED and hw.class_a


async def test_mute_card_gives_card_mute_and_error_state():
    hw = FakeSlotHw()
    hw.mute_always = True
    slot = CardSlot(hw, 0)
    slot.set_present(True)
    with raises(iso7816.CardMute):
        await slot.power_on()
    assert slot.state == iso7816.ERROR and not hw.powered


async def test_activation_refused_by_chip():
    hw = FakeSlotHw()
    hw.refuse_power = True
    slot = CardSlot(hw, 0)
    slot.set_present(True)
    with raises(iso7816.HardwareFault):
        await slot.power_on()


async def test_power_on_without_card():
    slot = CardSlot(FakeSlotHw(present=False), 0)
    with raises(iso7816.NoCard):
        await slot.power_on()
    assert slot.state == iso7816.EMPTY


async def test_inverse_convention_ts():
    hw, slot = await powered(atr=b"\x03" + ATR_CPS3[1:])
    assert hw.inverse and slot.atr[0] == 0x3F


async def test_t1_only_card_answering_t0_bytes_is_an_error():
    # T=1 is selected (t_t1 covers it); a card that answers blocks with T=0 bytes (90 00)
    # gets R-blocks, then RESYNCH, then is deactivated.
    hw = FakeSlotHw(atr=ATR_T1_ONLY)
    slot = CardSlot(hw, 0)
    slot.set_present(True)
    with raises(iso7816.CardProtocolError):
        await slot.power_on()
    assert slot.protocol == 1 and slot.state == iso7816.ERROR and not hw.powered


async def test_bad_atr_deactivates():
    hw = FakeSlotHw(atr=bytes.fromhex("3B800180"))  # TCK mismatch
    slot = CardSlot(hw, 0)
    slot.set_present(True)
    with raises(iso7816.BadAtr):
        await slot.power_on()
    assert slot.state == iso7816.ERROR and not hw.powered


# -- PPS -----------------------------------------------------------------------------------------
async def test_pps_accepted_vitale2():
    hw, slot = await powered(atr=ATR_VITALE2)
    assert bytes(hw.received[:4]) == bytes((0xFF, 0x10, 0x13, 0xFF ^ 0x10 ^ 0x13))
    assert slot.fidi == 0x13 and slot.pps_status == "accepted"
    assert hw.timing == (372, 4, 0)


async def test_pps_refused_stays_at_default():
    hw, slot = await powered(atr=ATR_VITALE2, pps="refuse")
    assert slot.fidi == 0x11 and slot.pps_status == "refused"
    assert hw.timing == (372, 1, 0)


async def test_pps_unanswered_deactivates_and_retries_without_pps():
    hw, slot = await powered(atr=ATR_VITALE2, pps="mute")
    assert slot.pps_status == "failed" and slot.fidi == 0x11 and hw.pps_seen == 1
    assert hw.log.count("rst 1") == 2 and "power_off" in hw.log
    assert slot.state == iso7816.POWERED and hw.timing == (372, 1, 0)


async def test_pps_bad_pck_is_a_failed_pps():
    _hw, slot = await powered(atr=ATR_VITALE2, pps="bad")
    assert slot.pps_status == "failed" and slot.fidi == 0x11


async def test_pps_picks_fastest_supported():
    _, slot = await powered(atr=ATR_FAST)  # card: Fi 512 Di 32; 512/32 = 16 clocks < 31
    assert slot.fidi == 0x95  # Di 16: 32 clocks per etu
    _, fast = await powered(atr=ATR_FAST, min_etu_clocks=8)
    assert fast.fidi == 0x96
    _, cps4 = await powered(atr=ATR_CPS4)  # 372 / 12 = 31 clocks
    assert cps4.fidi == 0x18


async def test_specific_mode_uses_ta1_without_pps():
    hw, slot = await powered(atr=ATR_SPECIFIC)
    assert hw.pps_seen == 0 and slot.pps_status == "specific"
    assert slot.fidi == 0x13 and hw.timing == (372, 4, 0)


# -- T=0 -----------------------------------------------------------------------------------------
async def test_case1():
    hw, slot = await powered()
    hw.programs.append([("send", b"\x90\x00")])
    out = out_buf()
    n = await slot.transmit(bytes.fromhex("00A40000"), out)
    assert bytes(out[:n]) == b"\x90\x00"
    assert hw.commands[-1][0] == bytes.fromhex("00A4000000")


async def test_case2_ack_and_le_256():
    hw, slot = await powered()
    data = bytes(range(4))
    hw.programs.append(case2(0xB0, data))
    out = out_buf()
    n = await slot.transmit(bytes.fromhex("00B0000004"), out, 6)
    assert bytes(out[6:6 + n]) == data + b"\x90\x00"
    big = bytes(i & 0xFF for i in range(256))
    hw.programs.append(case2(0xB0, big))
    n = await slot.transmit(bytes.fromhex("00B0000000"), out)
    assert n == 258 and bytes(out[:256]) == big


async def test_case2_one_byte_at_a_time():
    hw, slot = await powered()
    hw.programs.append([("send", b"\x4f\x01\x4f\x02\x4f\x03\x90\x00")])  # ~B0 = 4F
    out = out_buf()
    n = await slot.transmit(bytes.fromhex("00B0000003"), out)
    assert bytes(out[:n]) == b"\x01\x02\x03\x90\x00"


async def test_case3_ack_sends_all_data():
    hw, slot = await powered()
    hw.programs.append(case3(0xD6, 3))
    out = out_buf()
    n = await slot.transmit(bytes.fromhex("00D6000003AABBCC"), out)
    assert bytes(out[:n]) == b"\x90\x00"
    assert hw.commands[-1][0] == bytes.fromhex("00D6000003")
    assert bytes(hw.commands[-1][1]) == bytes.fromhex("AABBCC")


async def test_case3_one_byte_per_not_ins():
    hw, slot = await powered()
    hw.programs.append([("send", b"\x29"), ("recv", 1), ("send", b"\x29"), ("recv", 1),
                        ("send", b"\x90\x00")])  # ~D6 = 29
    out = out_buf()
    n = await slot.transmit(bytes.fromhex("00D6000002AABB"), out)
    assert bytes(out[:n]) == b"\x90\x00" and bytes(hw.commands[-1][1]) == b"\xaa\xbb"


async def test_case4_drops_le_and_returns_61xx_as_is():
    hw, slot = await powered()
    hw.programs.append(case3(0xA4, 2, b"\x61\x1c"))
    out = out_buf()
    n = await slot.transmit(bytes.fromhex("00A40400023F0000"), out)
    assert bytes(out[:n]) == b"\x61\x1c"  # the host's protocol layer sends GET RESPONSE
    assert hw.commands[-1][0] == bytes.fromhex("00A4040002")


async def test_6cxx_to_case_2_is_sent_again_with_the_cards_length():
    # ISO 7816-3 §12.2.3 case 2S.3: the transport layer reissues with P3 = SW2.
    hw, slot = await powered()
    data = bytes(range(8))
    hw.programs.append([("send", b"\x6c\x08")])
    hw.programs.append(case2(0xCA, data))
    out = out_buf()
    n = await slot.transmit(bytes.fromhex("00CA010000"), out)
    assert bytes(out[:n]) == data + b"\x90\x00"
    assert [bytes(c[0]) for c in hw.commands[-2:]] == [bytes.fromhex("00CA010000"),
                                                       bytes.fromhex("00CA010008")]


async def test_6cxx_after_the_resend_and_outside_case_2_is_returned_as_is():
    hw, slot = await powered()
    hw.programs.append([("send", b"\x6c\x08")])
    hw.programs.append([("send", b"\x6c\x04")])  # a card that changes its mind: once only
    out = out_buf()
    n = await slot.transmit(bytes.fromhex("00CA010000"), out)
    assert bytes(out[:n]) == b"\x6c\x04" and len(hw.commands) == 2
    hw.programs.append([("send", b"\x6c\x08")])  # case 1: no Le to correct
    n = await slot.transmit(bytes.fromhex("00CA0100"), out)
    assert bytes(out[:n]) == b"\x6c\x08" and len(hw.commands) == 3


async def test_null_bytes_restart_the_wait():
    hw, slot = await powered()
    hw.programs.append([("send", b"\x60\x60\x60\xb0\x01\x90\x00")])
    out = out_buf()
    n = await slot.transmit(bytes.fromhex("00B0000001"), out)
    assert bytes(out[:n]) == b"\x01\x90\x00"
    assert hw.timeouts[-1] == slot.wwt == 960 * 0x2A * 372  # WWT = 960 x WI x Fi clocks


async def test_endless_null_bytes_count_as_mute():
    hw, slot = await powered()
    hw.programs.append([("send", b"\x60" * (iso7816.MAX_NULLS + 5))])
    with raises(iso7816.CardMute):
        await slot.transmit(bytes.fromhex("00B0000001"), out_buf())
    assert slot.state == iso7816.ERROR


async def test_mute_card_times_out_at_wwt():
    hw, slot = await powered(atr=ATR_VITALE2)
    hw.programs.append([("mute",)])
    with raises(iso7816.CardMute):
        await slot.transmit(bytes.fromhex("00B0000010"), out_buf())
    assert hw.timeouts[-1] == 960 * 10 * 372  # WI default 10, Fi from TA1 = 372
    assert slot.state == iso7816.ERROR and not hw.powered
    with raises(iso7816.NotPowered):
        await slot.transmit(bytes.fromhex("00B0000010"), out_buf())


async def test_removal_mid_apdu_gives_card_removed_and_empty():
    hw, slot = await powered()
    hw.programs.append([("send", b"\xb0\x01\x02"), ("remove",)])
    with raises(iso7816.CardRemoved):
        await slot.transmit(bytes.fromhex("00B0000010"), out_buf())
    assert slot.state == iso7816.EMPTY and not hw.powered


async def test_bad_procedure_byte_is_a_protocol_error():
    hw, slot = await powered()
    hw.programs.append([("send", b"\x12")])
    with raises(iso7816.CardProtocolError):
        await slot.transmit(bytes.fromhex("00B0000001"), out_buf())
    assert slot.state == iso7816.ERROR


async def test_apdus_t0_cannot_carry():
    _hw, slot = await powered()
    for apdu in ("00A400", "00A40000000002AABB", "00D6000003AABB", "00D6000002AABBCCDD"):
        with raises(iso7816.BadApdu):
            await slot.transmit(bytes.fromhex(apdu), out_buf())
    assert slot.state == iso7816.POWERED  # nothing reached the card


async def test_states_and_transitions():
    hw = FakeSlotHw()
    slot = CardSlot(hw, 0)
    assert slot.state == iso7816.EMPTY
    slot.set_present(True)
    assert slot.state == iso7816.PRESENT
    with raises(iso7816.NotPowered):
        await slot.transmit(bytes.fromhex("00A40000"), out_buf())
    await slot.power_on()
    slot.power_off()
    assert slot.state == iso7816.PRESENT and not hw.powered
    await slot.power_on()
    await slot.power_on()  # a second POWER_ON is a fresh cold reset
    assert hw.log.count("rst 1") == 3
    hw.card_present = False
    slot.set_present(False)
    assert slot.state == iso7816.EMPTY and not hw.powered
    with raises(iso7816.NoCard):
        await slot.transmit(bytes.fromhex("00A40000"), out_buf())


async def test_fault_line_while_powered():
    hw, slot = await powered()
    hw.fault_flag = True
    hw.programs.append([("send", b"\xb0"), ("mute",)])
    with raises(iso7816.HardwareFault):
        await slot.transmit(bytes.fromhex("00B0000002"), out_buf())
    assert slot.state == iso7816.ERROR
