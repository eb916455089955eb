"""The whole firmware over the link: handshake, cards, secure PIN entry, prompts, bad frames."""

import asyncio

import iso7816
import link
from display import TextDisplay
from keypad import KeyQueue
from rig import PIN, PIN4, PUK, PUK8, Rig, entry, verify_msg
from support import ATR_CPS3, ATR_VITALE2, FakeSlotHw, Host, MemoryPort


async def test_requests_before_hello_are_refused():
    async with Rig(hello=False, power=False) as rig:
        answer = await rig.host.request(link.Empty(link.SLOT_STATUS))
        assert answer.code == link.E_HANDSHAKE


async def test_hello_version_check_and_status():
    async with Rig(hello=False, power=False) as rig:
        bad = await rig.host.request(link.Hello(1, 512))  # version 1: before the PIN policy
        assert bad.code == link.E_BAD_VERSION
        ack = await rig.host.request(link.Hello(2, 300))
        assert (ack.version, ack.max_payload, ack.slots) == (2, link.MAX_PAYLOAD, 2)
        assert rig.term.peer_max_payload == 300
        status = await rig.host.request(link.Empty(link.SLOT_STATUS))
        assert status.states == [link.SLOT_PRESENT, link.SLOT_PRESENT]


async def test_power_on_pps_and_transmit():
    async with Rig() as rig:
        atr = await rig.host.request(link.SlotRequest(link.POWER_ON, 1))
        assert atr.atr == ATR_VITALE2 and atr.fidi == 0x13 and atr.protocol == 0
        rsp = await rig.host.request(link.Transmit(0, bytes.fromhex("00B0000010")))
        assert rsp.data == bytes(range(16)) + b"\x90\x00"
        rsp = await rig.host.request(link.Transmit(0, bytes.fromhex("00B0000000")))
        assert len(rsp.data) == 258
        status = await rig.host.request(link.Empty(link.SLOT_STATUS))
        assert status.states == [link.SLOT_POWERED, link.SLOT_POWERED]
        ack = await rig.host.request(link.SlotRequest(link.POWER_OFF, 1))
        assert ack.TYPE == link.ACK and not rig.hw1.powered


async def test_secure_verify_pin_never_leaves_the_terminal():
    async with Rig() as rig:
        rig.typing(entry(PIN))
        result = await rig.host.request(verify_msg())
        assert isinstance(result, link.PinResult) and result.sw == 0x9000
        hdr, data = rig.hw0.commands[-1]
        assert hdr == bytes.fromhex("0020000108") and bytes(data) == PIN + b"\xff" * 4
        wire = bytes(rig.port.sent) + bytes(rig.port.inbox)
        assert PIN not in wire and PIN[:3] not in wire
        for line in rig.screens():
            assert "1357" not in line and "135" not in line, line
        assert "****" in rig.screens()
        assert "PIN carte CPS" in rig.screens() and "Reste 3 essais" in rig.screens()
        assert rig.display.lines() == ["Code correct"]
        for buf in rig.term._pins:
            assert buf == bytearray(len(buf))
        assert rig.term._apdu == bytearray(len(rig.term._apdu))


async def test_wrong_pin_shows_tries_left_then_blocks():
    async with Rig() as rig:
        for left in (2, 1, 0):
            rig.typing(["9", "9", "9", "9", "OK"])
            result = await rig.host.request(verify_msg())
            assert result.sw == 0x63C0 | left
            if left:
                plural = "s" if left > 1 else ""
                assert rig.display.lines() == ["Code incorrect", f"Reste {left} essai{plural}"]
            else:
                assert rig.display.lines() == ["Code incorrect", "Carte bloquee"]
        rig.typing(entry(PIN))
        result = await rig.host.request(verify_msg())
        assert result.sw == 0x6983 and rig.display.lines() == ["Code bloque"]


async def test_secure_change_asks_twice_and_sends_old_and_new():
    async with Rig() as rig:
        rig.typing(entry(PIN), entry(b"2468"), entry(b"2468"))
        msg = link.SecureChange(0, 0x00, 0x24, 0x00, 0x01, 30, link.PROMPT_PIN_CPS, 3, PIN4,
                                PIN4)
        result = await rig.host.request(msg)
        assert result.sw == 0x9000 and rig.card.pin == b"2468"
        hdr, data = rig.hw0.commands[-1]
        assert hdr == bytes.fromhex("0024000110") and bytes(data) == PIN + b"\xff" * 4 + b"2468" + \
            b"\xff" * 4
        assert b"2468" not in bytes(rig.port.sent)


async def test_secure_change_confirmation_mismatch_sends_nothing():
    async with Rig() as rig:
        before = len(rig.hw0.commands)
        rig.typing(entry(PIN), entry(b"2468"), entry(b"2469"))
        msg = link.SecureChange(0, 0x00, 0x24, 0x00, 0x01, 30, link.PROMPT_PIN_CPS,
                                link.TRIES_UNKNOWN, PIN4, PIN4)
        answer = await rig.host.request(msg)
        assert answer.code == link.E_PIN_MISMATCH and len(rig.hw0.commands) == before
        assert rig.display.lines() == ["Codes differents"]


async def test_secure_unblock_with_puk():
    async with Rig() as rig:
        rig.card.tries = 0
        rig.typing(entry(PUK), entry(b"1111"), entry(b"1111"))
        msg = link.SecureUnblock(0, 0x00, 0x2C, 0x02, 0x01, 30, link.PROMPT_PIN_CPS, 0, PUK8,
                                 PIN4)
        result = await rig.host.request(msg)
        assert result.sw == 0x9000 and rig.card.pin == b"1111" and rig.card.tries == 3
        assert PUK not in bytes(rig.port.sent)


async def test_secure_verify_cancel_timeout_and_abort():
    async with Rig() as rig:
        rig.typing(["1", "CANCEL"])
        answer = await rig.host.request(verify_msg())
        assert answer.code == link.E_USER_CANCELLED and rig.display.lines() == ["Annule"]
        answer = await rig.host.request(verify_msg(timeout_s=1), timeout_ms=3000)
        assert answer.code == link.E_PROMPT_TIMEOUT and rig.display.lines() == ["Delai depasse"]
        seq = rig.host.send(verify_msg())
        while not rig.keys.claimed:
            await asyncio.sleep_ms(1)
        abort_seq = rig.host.send(link.Empty(link.ABORT))
        first = await rig.host.next()
        second = await rig.host.next()
        answers = {first.seq: first, second.seq: second}
        assert answers[abort_seq].mtype == link.ACK
        err = link.decode(answers[seq].mtype, answers[seq].payload)
        assert err.code == link.E_ABORTED


async def test_secure_verify_refused_without_powered_card():
    async with Rig(power=False) as rig:
        answer = await rig.host.request(verify_msg())
        assert answer.code == link.E_NOT_POWERED
        assert "PIN carte CPS" not in rig.screens()  # no prompt was shown


async def test_confirm_and_display():
    async with Rig(power=False) as rig:
        rig.typing(["OK"])
        result = await rig.host.request(link.Confirm(10, "Consentement DMP ?"))
        assert result.result == link.CONFIRM_OK
        rig.typing(["CANCEL"])
        result = await rig.host.request(link.Confirm(10, "Consentement DMP ?"))
        assert result.result == link.CONFIRM_CANCEL
        result = await rig.host.request(link.Confirm(1, "Appairage 482913 ?"), timeout_ms=3000)
        assert result.result == link.CONFIRM_TIMEOUT
        ack = await rig.host.request(link.Display(["Code d'appairage", "482 913"]))
        assert ack.TYPE == link.ACK
        assert rig.display.lines() == ["Code d'appairage", "482 913"]


def code_of(item):
    """The ERROR code of a frame item (-1 when it is not an ERROR)."""
    msg = link.decode(item.mtype, item.payload)
    return msg.code if item.mtype == link.ERROR else -1


async def test_a_pin_prompt_holds_only_its_own_slot_and_the_screen():
    # Review M2: while the holder types, the patient's card and the status keep working;
    # the CPS slot, the screen and a second prompt are BUSY until the prompt ends.
    async with Rig() as rig:
        await rig.host.request(link.SlotRequest(link.POWER_ON, 1))
        seq = rig.host.send(verify_msg())
        while not rig.keys.claimed:
            await asyncio.sleep_ms(1)
        status = await rig.host.request(link.Empty(link.SLOT_STATUS))
        assert status.states == [link.SLOT_POWERED, link.SLOT_POWERED]
        rsp = await rig.host.request(link.Transmit(1, bytes.fromhex("00B0000004")))
        assert rsp.TYPE == link.RESPONSE and rsp.data[-2:] == b"\x90\x00"
        for msg in (link.Transmit(0, bytes.fromhex("00B0000004")),
                    link.SlotRequest(link.POWER_OFF, 0), link.Display(["Autre chose"]),
                    link.Confirm(10, "Autre question ?"), verify_msg()):
            busy = await rig.host.request(msg)
            assert busy.TYPE == link.ERROR and busy.code == link.E_BUSY, msg
        assert rig.keys.claimed and "Code PIN :" in rig.display.lines()  # still asking
        for k in entry(PIN):  # the prompt is already waiting
            rig.keys.push(k)
        done = await rig.host.next()
        assert done.seq == seq and link.decode(done.mtype, done.payload).sw == 0x9000
        rsp = await rig.host.request(link.Transmit(0, bytes.fromhex("00B0000004")))
        assert rsp.TYPE == link.RESPONSE  # the CPS slot is free again


async def test_cards_answer_while_a_consent_prompt_waits():
    async with Rig() as rig:
        await rig.host.request(link.SlotRequest(link.POWER_ON, 1))
        seq = rig.host.send(link.Confirm(30, "Consentement DMP ?"))
        while not rig.keys.claimed:
            await asyncio.sleep_ms(1)
        for slot in (0, 1):
            rsp = await rig.host.request(link.Transmit(slot, bytes.fromhex("00B0000010")))
            assert rsp.TYPE == link.RESPONSE and rsp.data[-2:] == b"\x90\x00", slot
        assert rig.display.lines() == ["Consentement DMP", "?", "OK / Annuler"]
        rig.keys.push("OK")
        done = await rig.host.next()
        assert done.seq == seq and link.decode(done.mtype, done.payload).result == 0


async def test_a_prompt_resent_while_it_runs_is_busy_then_answered_from_cache():
    async with Rig() as rig:
        frame = link.encode(40, verify_msg())
        rig.port.host_send(frame)
        while not rig.keys.claimed:
            await asyncio.sleep_ms(1)
        rig.port.host_send(frame)  # the host's resend: same sequence number, same CRC
        busy = await rig.host.next()
        assert busy.seq == 40 and code_of(busy) == link.E_BUSY
        for k in entry(PIN):
            rig.keys.push(k)
        done = await rig.host.next()
        tries = len(rig.hw0.commands)
        rig.port.host_send(frame)  # its answer was lost: sent again, not run again
        again = await rig.host.next()
        assert again.seq == done.seq == 40 and again.payload == done.payload
        assert len(rig.hw0.commands) == tries and not rig.keys.claimed


async def test_a_kept_prompt_answer_never_serves_a_later_request():
    # After a new HELLO, or once the host's numbering came round, the same bytes are a new
    # request: the holder is asked again, the card sees a second VERIFY.
    frame = link.encode(7, verify_msg())
    for before_repeat in (link.encode(9, link.Hello()),
                          link.encode(6, link.Empty(link.SLOT_STATUS))):
        async with Rig() as rig:
            rig.typing(entry(PIN))
            rig.port.host_send(frame)
            first = await rig.host.next()
            assert first.seq == 7 and link.decode(first.mtype, first.payload).sw == 0x9000
            rig.port.host_send(before_repeat)
            await rig.host.next()
            verifies = len(rig.hw0.commands)
            rig.typing(entry(PIN))
            rig.port.host_send(frame)
            again = await rig.host.next()
            assert again.seq == 7 and link.decode(again.mtype, again.payload).sw == 0x9000
            assert len(rig.hw0.commands) == verifies + 1  # it ran: a new PIN, a new VERIFY


async def test_pin_prompt_ends_when_its_card_is_removed():
    async with Rig() as rig:
        seq = rig.host.send(verify_msg())
        while not rig.keys.claimed:
            await asyncio.sleep_ms(1)
        before = len(rig.hw0.commands)
        rig.keys.push("1")
        rig.hw0.card_present = False  # the holder pulls the card out mid-entry
        done = await rig.host.next()
        assert done.seq == seq and code_of(done) == link.E_CARD_REMOVED
        assert len(rig.hw0.commands) == before and not rig.keys.claimed
        assert rig.display.lines() == ["Carte retiree"]
        for buf in rig.term._pins:
            assert buf == bytearray(len(buf))


async def test_prompt_timeouts_are_capped():
    import terminal

    assert terminal.Terminal._timeout_ms(255) == terminal.MAX_PROMPT_S * 1000 == 60_000
    assert terminal.Terminal._timeout_ms(0) == link.DEFAULT_TIMEOUT_S * 1000


async def test_bad_frames_get_error_frames_and_the_link_resyncs():
    async with Rig(power=False) as rig:
        good = bytearray(link.encode(77, link.Empty(link.SLOT_STATUS)))
        bad = bytearray(good)
        bad[-1] ^= 0x55
        rig.port.host_send(b"\x00\x01\x02" + bad)  # garbage, then a corrupted frame
        err = await rig.host.next()
        assert err.seq == 77 and link.decode(err.mtype, err.payload).code == link.E_BAD_CRC
        rig.port.host_send(bytes((link.SOF, 1, 78, link.TRANSMIT, 0x7F, 0xFF)))  # oversized
        err = await rig.host.next()
        assert link.decode(err.mtype, err.payload).code == link.E_OVERSIZE
        rig.port.host_send(good[:7])  # truncated: the rest never comes
        err = await rig.host.next(timeout_ms=2000)
        assert link.decode(err.mtype, err.payload).code == link.E_TRUNCATED
        status = await rig.host.request(link.Empty(link.SLOT_STATUS))
        assert status.TYPE == link.SLOT_STATUS_RSP
        assert rig.term.link_errors == 3 and rig.term.garbage_runs >= 1


async def test_unknown_type_bad_payload_and_bad_slot():
    async with Rig(power=False) as rig:
        rig.port.host_send(link.encode_frame(50, 0x42, b""))
        err = await rig.host.next()
        assert link.decode(err.mtype, err.payload).code == link.E_UNKNOWN_TYPE
        rig.port.host_send(link.encode_frame(51, link.ACK, b""))  # a response type from the host
        err = await rig.host.next()
        assert link.decode(err.mtype, err.payload).code == link.E_UNKNOWN_TYPE
        rig.port.host_send(link.encode_frame(52, link.TRANSMIT, b"\x00\x00"))
        err = await rig.host.next()
        assert link.decode(err.mtype, err.payload).code == link.E_BAD_PAYLOAD
        answer = await rig.host.request(link.SlotRequest(link.POWER_ON, 5))
        assert answer.code == link.E_BAD_SLOT


async def test_repeated_request_is_answered_from_cache():
    async with Rig() as rig:
        frame = link.encode(90, link.Transmit(0, bytes.fromhex("00B0000004")))
        rig.port.host_send(frame)
        first = await rig.host.next()
        n_commands = len(rig.hw0.commands)
        rig.port.host_send(frame)  # the host lost the answer and sends the same frame again
        again = await rig.host.next()
        assert again.seq == first.seq == 90 and again.payload == first.payload
        assert len(rig.hw0.commands) == n_commands  # the card saw it once


async def test_card_removed_mid_apdu():
    async with Rig() as rig:
        rig.hw0.programs.append([("send", b"\xb0\x00\x01"), ("remove",)])
        err = await rig.host.request(link.Transmit(0, bytes.fromhex("00B0000010")))
        assert err.code == link.E_CARD_REMOVED
        status = await rig.host.request(link.Empty(link.SLOT_STATUS))
        assert status.states[0] == link.SLOT_EMPTY
        for _ in range(3):
            await rig.term.poll_once()
        kinds = [(e.kind, e.slot) for e in rig.host.events()]
        assert (link.EV_CARD_REMOVED, 0) in kinds


async def test_mute_card_times_out():
    async with Rig() as rig:
        rig.hw0.programs.append([("mute",)])
        err = await rig.host.request(link.Transmit(0, bytes.fromhex("00B0000010")))
        assert err.code == link.E_CARD_MUTE
        status = await rig.host.request(link.Empty(link.SLOT_STATUS))
        assert status.states[0] == link.SLOT_ERROR


async def test_events_insert_remove_cancel():
    async with Rig(power=False) as rig:
        rig.host.events()
        rig.hw1.card_present = False
        for _ in range(3):
            await rig.term.poll_once()
        rig.hw1.card_present = True
        for _ in range(3):
            await rig.term.poll_once()
        rig.keys.push("CANCEL")  # no prompt: an event for the host
        await rig.term.poll_once()
        await asyncio.sleep_ms(10)
        kinds = [(e.kind, e.slot) for e in rig.host.events()]
        assert kinds == [(link.EV_CARD_REMOVED, 1), (link.EV_CARD_INSERTED, 1),
                         (link.EV_CANCEL_PRESSED, link.NO_SLOT)], kinds


async def test_one_byte_at_a_time_from_the_host():
    async with Rig(chunk=1) as rig:
        rsp = await rig.host.request(link.Transmit(0, bytes.fromhex("00B0000002")))
        assert rsp.data == b"\x00\x01\x90\x00"


async def test_slot_error_state_after_mute_recovers_on_power_on():
    async with Rig() as rig:
        rig.hw0.programs.append([("mute",)])
        await rig.host.request(link.Transmit(0, bytes.fromhex("00B0000001")))
        assert rig.term.slots[0].state == iso7816.ERROR
        atr = await rig.host.request(link.SlotRequest(link.POWER_ON, 0))
        assert atr.atr == ATR_CPS3 and rig.term.slots[0].state == iso7816.POWERED


class SimBoard:
    """The smallest board main.run() accepts: the seams of docs/firmware.md, all in memory."""

    def __init__(self):
        self.port = MemoryPort()
        self.slot_hw = [FakeSlotHw(atr=ATR_CPS3), FakeSlotHw(atr=ATR_VITALE2)]
        self.keys = KeyQueue()
        self.display = TextDisplay()
        self.ticks = 0

    def background(self):
        """One extra task, cancelled when the terminal stops."""
        return [self._tick()]

    async def _tick(self):
        while True:
            self.ticks += 1
            await asyncio.sleep_ms(5)


async def test_main_runs_a_board_until_the_port_closes():
    import main

    board = SimBoard()
    task = asyncio.create_task(main.run(board))
    host = Host(board.port)
    ack = await host.request(link.Hello())
    assert ack.slots == 2
    atr = await host.request(link.SlotRequest(link.POWER_ON, 1))
    assert atr.fidi == 0x13
    board.port.close()
    await asyncio.wait_for_ms(task, 2000)
    ticks = board.ticks
    await asyncio.sleep_ms(20)
    assert ticks > 0 and board.ticks == ticks  # the background task was cancelled
