"""The PIN policy (review M4): a PIN typed under "PIN carte CPS" goes only to the CPS, in VERIFY,
CHANGE REFERENCE DATA or RESET RETRY COUNTER with CLA 00 and PIN reference 01; every other
request is refused with ERROR PIN_POLICY before a prompt is shown or a byte reaches a card."""

import link
from rig import PIN, PIN4, PUK8, Rig, entry
from support import ATR_CPS3, ATR_VITALE2

CPS = link.PROMPT_PIN_CPS


async def refused(rig, msg, why):
    """Send msg; it must be refused with PIN_POLICY, no prompt, no byte to either card."""
    prompts = rig.keys.prompts
    before = (len(rig.hw0.commands), len(rig.hw1.commands), len(rig.hw0.received),
              len(rig.hw1.received))
    typist = rig.typing(entry(PIN))  # a holder ready to type: no prompt may ask for it
    try:
        answer = await rig.host.request(msg)
    finally:
        typist.cancel()  # (a task left waiting would keep the whole rig on the heap)
    assert answer.TYPE == link.ERROR, answer
    assert answer.code == link.E_PIN_POLICY, (answer.code, answer.detail)
    assert why in answer.detail, answer.detail
    assert rig.keys.prompts == prompts and not rig.keys.claimed  # no prompt was shown
    after = (len(rig.hw0.commands), len(rig.hw1.commands), len(rig.hw0.received),
             len(rig.hw1.received))
    assert after == before, (before, after)
    assert rig.display.lines() == ["Demande refusee"]
    assert "PIN carte CPS" not in rig.screens()
    return answer


async def power(rig, slot):
    """POWER_ON a slot through the link."""
    atr = await rig.host.request(link.SlotRequest(link.POWER_ON, slot))
    assert isinstance(atr, link.Atr), atr


async def test_review_repro_pin_cps_for_the_patient_slot_is_refused():
    # The review's reproduction: prompt "PIN CPS", slot 1, a recording card in the patient slot.
    async with Rig() as rig:
        await power(rig, 1)
        msg = link.SecureVerify(1, 0x00, 0x20, 0x00, 0x01, 30, CPS, 3, PIN4)
        await refused(rig, msg, "slot 1 is not the CPS slot")
        assert rig.hw1.commands == []  # the recording card saw no command at all


async def test_a_rogue_card_with_a_cps_atr_in_the_patient_slot_is_refused():
    async with Rig() as rig:
        rig.hw1.atr = ATR_CPS3  # a card that answers like a CPS, in the patient slot
        await power(rig, 1)
        for cls, ins, fields in ((link.SecureVerify, 0x20, (PIN4,)),
                                 (link.SecureChange, 0x24, (PIN4, PIN4)),
                                 (link.SecureUnblock, 0x2C, (PUK8, PIN4))):
            msg = cls(1, 0x00, ins, 0x00, 0x01, 30, CPS, 3, *fields)
            await refused(rig, msg, "slot 1 is not the CPS slot")
        assert rig.hw1.commands == []


async def test_review_repro_other_instruction_is_refused():
    # The review's second reproduction: INS D6 (UPDATE BINARY) would write the PIN in a file.
    async with Rig() as rig:
        await refused(rig, link.SecureVerify(0, 0x00, 0xD6, 0x00, 0x01, 30, CPS, 3, PIN4),
                      "INS D6")
        # An allowed INS under the wrong request type (its prompt said something else).
        await refused(rig, link.SecureVerify(0, 0x00, 0x24, 0x00, 0x01, 30, CPS, 3, PIN4),
                      "INS 24 not allowed for SECURE_VERIFY")
        await refused(rig, link.SecureChange(0, 0x00, 0x20, 0x00, 0x01, 30, CPS, 3, PIN4, PIN4),
                      "INS 20 not allowed for SECURE_CHANGE")
        await refused(rig, link.SecureUnblock(0, 0x00, 0x24, 0x00, 0x01, 30, CPS, 0, PUK8,
                                              PIN4), "INS 24 not allowed for SECURE_UNBLOCK")
        for ins in (0x2A, 0x88, 0xDA, 0xE2):  # PSO, INTERNAL AUTHENTICATE, PUT DATA, APPEND
            await refused(rig, link.SecureVerify(0, 0x00, ins, 0x00, 0x01, 30, CPS, 3, PIN4),
                          "INS %02X" % ins)


async def test_other_pin_reference_or_p1_is_refused():
    async with Rig() as rig:
        for p2 in (0x00, 0x02, 0x81, 0x11):  # 02: the PUK's own reference; 81: a key
            await refused(rig, link.SecureVerify(0, 0x00, 0x20, 0x00, p2, 30, CPS, 3, PIN4),
                          "P2 %02X is not PIN reference 01" % p2)
        # CHANGE REFERENCE DATA with P1 01 sets a new PIN without the old one (ISO 7816-4
        # §11.5.7); RESET RETRY COUNTER P1 00/01/03 are other data layouts (§11.5.10).
        await refused(rig, link.SecureChange(0, 0x00, 0x24, 0x01, 0x01, 30, CPS, 3, PIN4, PIN4),
                      "P1 01")
        for p1 in (0x00, 0x01, 0x03):  # unblocking is IAS-ECC's P1 02 only
            await refused(rig, link.SecureUnblock(0, 0x00, 0x2C, p1, 0x01, 30, CPS, 0, PUK8,
                                                  PIN4), "P1 %02X" % p1)
        await refused(rig, link.SecureVerify(0, 0x00, 0x20, 0xFF, 0x01, 30, CPS, 3, PIN4),
                      "P1 FF")


async def test_other_class_byte_is_refused():
    async with Rig() as rig:
        for cla in (0x80, 0x0C, 0x10, 0x01, 0xA0):  # proprietary, SM, chaining, channel 1
            await refused(rig, link.SecureVerify(0, cla, 0x20, 0x00, 0x01, 30, CPS, 3, PIN4),
                          "CLA %02X" % cla)


async def test_pin_prompt_for_a_card_that_is_not_a_cps_is_refused():
    async with Rig(power=False) as rig:
        rig.hw0.atr = ATR_VITALE2  # a Vitale card (or any other card) in the CPS slot
        await power(rig, 0)
        await refused(rig, link.SecureVerify(0, 0x00, 0x20, 0x00, 0x01, 30, CPS, 3, PIN4),
                      "the card in slot 0 is not a CPS")
        assert rig.hw0.commands == []


async def test_unknown_prompt_is_refused():
    async with Rig() as rig:
        for prompt in (0, 2, 0xFF):
            await refused(rig, link.SecureVerify(0, 0x00, 0x20, 0x00, 0x01, 30, prompt, 3, PIN4),
                          "prompt %d unknown" % prompt)


async def test_policy_errors_come_before_the_slot_state():
    # A request the policy refuses is refused even with no card: nothing to probe.
    async with Rig(power=False) as rig:
        await refused(rig, link.SecureVerify(1, 0x00, 0x20, 0x00, 0x01, 30, CPS, 3, PIN4),
                      "slot 1")
        answer = await rig.host.request(link.SecureVerify(0, 0x00, 0x20, 0x00, 0x01, 30, CPS, 3,
                                                          PIN4))
        assert answer.code == link.E_NOT_POWERED


async def test_the_allowed_requests_reach_the_cps_exactly():
    async with Rig() as rig:
        await power(rig, 1)
        rig.typing(entry(PIN))
        ok = await rig.host.request(link.SecureVerify(0, 0x00, 0x20, 0x00, 0x01, 30, CPS, 1,
                                                      PIN4))
        assert ok.TYPE == link.PIN_RESULT and ok.sw == 0x9000
        hdr, data = rig.hw0.commands[-1]
        assert hdr == bytes.fromhex("0020000108") and bytes(data) == PIN + b"\xff" * 4
        seen = rig.screens()
        assert "Reste 1 essai" in seen and "Code PIN :" in seen
        seen = None
        rig.rec.screens = []  # keep the heap small (192K, like a Pico)
        rig.typing(entry(PIN), entry(b"2468"), entry(b"2468"))
        ok = await rig.host.request(link.SecureChange(0, 0x00, 0x24, 0x00, 0x01, 30, CPS, 3,
                                                      PIN4, PIN4))
        assert ok.sw == 0x9000 and rig.card.pin == b"2468"
        assert rig.hw0.commands[-1][0] == bytes.fromhex("0024000110")
        rig.rec.screens = []
        rig.card.tries = 0
        rig.typing(entry(b"24682468"), entry(b"1111"), entry(b"1111"))
        ok = await rig.host.request(link.SecureUnblock(0, 0x00, 0x2C, 0x02, 0x01, 30, CPS, 0,
                                                       PUK8, PIN4))
        assert ok.sw == 0x9000 and rig.card.pin == b"1111"
        # The PUK verified under its own reference, then the new PIN alone (IAS-ECC).
        assert [c[0] for c in rig.hw0.commands[-2:]] == [bytes.fromhex("0020000208"),
                                                         bytes.fromhex("002C020108")]
        seen = rig.screens()
        assert "Deblocage" in seen and "Code PUK :" in seen
        assert rig.hw1.commands == []  # the patient's card never saw a PIN command
        wire = bytes(rig.port.sent) + bytes(rig.port.inbox)
        for secret in (PIN, b"2468", b"1111", b"24682468"):
            assert secret not in wire


def test_cps_atr_mask():
    import terminal

    assert terminal.is_cps_atr(ATR_CPS3, len(ATR_CPS3))
    varied = bytearray(ATR_CPS3)
    varied[1] ^= 0x0F  # batch-dependent bytes under OpenSC's mask
    varied[12] ^= 0xFF
    assert terminal.is_cps_atr(varied, len(varied))
    for i in (0, 5, 10, 16):
        other = bytearray(ATR_CPS3)
        other[i] ^= 0x01
        assert not terminal.is_cps_atr(other, len(other)), i
    assert not terminal.is_cps_atr(ATR_VITALE2, len(ATR_VITALE2))
    assert not terminal.is_cps_atr(ATR_CPS3, len(ATR_CPS3) - 1)

