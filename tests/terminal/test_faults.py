"""Bad input on the link, cards that leave or go mute, prompts nobody answers, a terminal that
restarts: over the real pty, against the firmware on MicroPython."""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
import time
from collections.abc import Iterator

import pytest
import serial

from bifente.apdu.cps import CpsSession
from bifente.apdu.errors import CardRemoved, PinCancelled
from bifente.apdu.protocol import CardProtocol
from bifente.apdu.vitale_spec import ATR_VITALE2
from bifente.edged.readers.link import (
    ErrorCode,
    Frame,
    FrameError,
    FrameParser,
    Hello,
    LinkErrorMessage,
    Message,
    SlotState,
    SlotStatus,
    SlotStatusResponse,
    Transmit,
    decode_message,
    encode_message,
)
from bifente.edged.readers.terminal import (
    TerminalError,
    TerminalLink,
    TerminalReader,
    TerminalTransport,
    TerminalUI,
)
from bifente.simulators.terminal import ControlError, TerminalControl, VirtualTerminal

SELECT_MF = bytes.fromhex("00A4000C023F00")


class RawHost:
    """A host that writes whatever bytes it likes to the pty and parses what comes back."""

    def __init__(self, path: str) -> None:
        self.port = serial.Serial(path, 115200, timeout=0.02)
        self.port.reset_input_buffer()
        self.parser = FrameParser()
        self.items: list[Frame | FrameError] = []

    def close(self) -> None:
        self.port.close()

    def send(self, data: bytes) -> None:
        self.port.write(data)

    def next(self, timeout: float = 3.0) -> Frame:
        deadline = time.monotonic() + timeout
        while not self.items:
            if time.monotonic() > deadline:
                raise AssertionError("no frame from the terminal")
            self.items += self.parser.feed(self.port.read(512))
        item = self.items.pop(0)
        assert isinstance(item, Frame), item
        return item

    def silent(self, seconds: float) -> bool:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            self.items += self.parser.feed(self.port.read(512))
        return not self.items

    def request(self, seq: int, msg: Message) -> Message:
        self.send(encode_message(seq, msg))
        frame = self.next()
        assert frame.seq == seq
        return decode_message(frame)


@pytest.fixture
def raw(vt: VirtualTerminal) -> Iterator[RawHost]:
    host = RawHost(vt.pty_path)
    assert host.request(1, Hello()).TYPE.name == "HELLO_ACK"
    yield host
    host.close()


def error_of(frame: Frame) -> LinkErrorMessage:
    msg = decode_message(frame)
    assert isinstance(msg, LinkErrorMessage), msg
    return msg


@contextlib.contextmanager
def typing(vt: VirtualTerminal, *keys: str) -> Iterator[None]:
    result: list[BaseException] = []

    def press() -> None:
        try:
            vt.press(*keys, wait=15)
        except BaseException as exc:  # re-raised in the test's thread
            result.append(exc)

    t = threading.Thread(target=press)
    t.start()
    yield
    t.join(30)
    if result:
        raise result[0]


# -- link ----------------------------------------------------------------------------------------
def test_corrupted_frame_gets_bad_crc_and_the_link_resynchronises(raw: RawHost) -> None:
    frame = bytearray(encode_message(7, SlotStatus()))
    frame[-1] ^= 0x55
    raw.send(bytes(frame))
    answer = raw.next()
    assert answer.seq == 7 and error_of(answer).code == ErrorCode.BAD_CRC
    status = raw.request(8, SlotStatus())
    assert isinstance(status, SlotStatusResponse) and len(status.states) == 2


def test_truncated_frame_is_dropped_after_the_interbyte_timeout(raw: RawHost) -> None:
    frame = encode_message(9, SlotStatus())
    started = time.monotonic()
    raw.send(frame[:5])
    answer = raw.next()
    waited = time.monotonic() - started
    assert error_of(answer).code == ErrorCode.TRUNCATED
    assert 0.15 < waited < 2.0, waited
    assert isinstance(raw.request(10, SlotStatus()), SlotStatusResponse)


def test_oversized_frame_is_refused_from_its_header(raw: RawHost) -> None:
    started = time.monotonic()
    raw.send(bytes((0xA5, 0x01, 0x0B, 0x05, 0x10, 0x00)))  # LEN 4096 > 512: no payload awaited
    answer = raw.next()
    assert answer.seq == 0x0B and error_of(answer).code == ErrorCode.OVERSIZE
    assert time.monotonic() - started < 0.15  # not the inter-byte timeout: at once
    assert isinstance(raw.request(12, SlotStatus()), SlotStatusResponse)


def test_garbage_and_a_bad_version_then_a_good_frame(raw: RawHost) -> None:
    raw.send(b"\x00\x13 line noise \xff\xfe")
    assert raw.silent(0.3)  # garbage is never answered
    raw.send(bytes((0xA5, 0x02, 0x0D, 0x02, 0x00, 0x00, 0x12, 0x34)))
    assert error_of(raw.next()).code == ErrorCode.BAD_VERSION
    raw.send(b"noise" + encode_message(14, SlotStatus()))
    answer = raw.next()
    assert answer.seq == 14 and isinstance(decode_message(answer), SlotStatusResponse)


def test_a_repeated_frame_is_answered_again_but_not_run_twice(vt: VirtualTerminal,
                                                              raw: RawHost) -> None:
    raw.request(20, decode_message(Frame(0, 0x03, b"\x01")))  # POWER_ON slot 1
    frame = encode_message(21, Transmit(1, SELECT_MF))
    before = vt.engines[1].stats.headers
    raw.send(frame)
    first = raw.next()
    raw.send(frame)  # as if the answer had been lost
    second = raw.next()
    assert first == second and decode_message(first).TYPE.name == "RESPONSE"
    assert vt.engines[1].stats.headers == before + 1


def test_the_host_link_works_after_the_bad_frames(vt: VirtualTerminal) -> None:
    with TerminalLink(vt.pty_path) as link:
        assert len(link.slot_status()) == 2


# -- cards -----------------------------------------------------------------------------------------
def test_card_removed_mid_apdu_gives_an_error_and_an_empty_slot(vt: VirtualTerminal,
                                                                link: TerminalLink) -> None:
    transport = TerminalTransport(link, 1)
    vt.remove(1, mid_command=True)
    with pytest.raises(CardRemoved):
        transport.transmit(SELECT_MF)
    assert link.slot_status()[1] == SlotState.EMPTY
    transport.close()
    vt.insert(1)
    assert link.slot_status()[1] == SlotState.PRESENT
    with TerminalTransport(link, 1) as again:
        assert again.transmit(SELECT_MF)[-2:] == b"\x90\x00"


def test_mute_card_times_out_instead_of_hanging(vt: VirtualTerminal, link: TerminalLink) -> None:
    transport = TerminalTransport(link, 1)
    vt.mute(1)
    started = time.monotonic()
    with pytest.raises(TerminalError) as failed:
        transport.transmit(SELECT_MF)
    waited = time.monotonic() - started
    assert failed.value.code == ErrorCode.CARD_MUTE
    assert 0.85 < waited < 4.0, waited  # WWT = 960 x WI(10) x 372 / 3.90625 MHz = 0.91 s
    assert link.slot_status()[1] == SlotState.ERROR
    with pytest.raises(TerminalError) as no_atr:  # still mute: no ATR at power on
        TerminalTransport(link, 1)
    assert no_atr.value.code == ErrorCode.CARD_MUTE
    vt.mute(1, False)
    with TerminalTransport(link, 1) as again:
        assert again.atr == ATR_VITALE2
        assert again.transmit(SELECT_MF)[-2:] == b"\x90\x00"


def test_unanswered_pin_prompt_is_cancelled_at_its_timeout(vt: VirtualTerminal,
                                                           link: TerminalLink) -> None:
    with TerminalTransport(link, 0) as cps:
        session = CpsSession(CardProtocol(cps))
        started = time.monotonic()
        with pytest.raises(PinCancelled, match="timed out"):
            session.verify_pin(None, timeout=1)
        assert 0.9 < time.monotonic() - started < 4.0
        assert vt.screen_lines() == ["Delai depasse"]
        with typing(vt, "12", "CANCEL"), pytest.raises(PinCancelled, match="cancelled"):
            session.verify_pin(None, timeout=20)
        assert vt.screen_lines() == ["Annule"]
        assert session.pin_status().tries_left == 3  # the card was never asked


def test_terminal_ui_confirm_and_show(vt: VirtualTerminal, link: TerminalLink) -> None:
    ui = TerminalUI(link)

    async def scenario() -> list[str]:
        answers = []
        await ui.show(["Carte Vitale lue", "Hélène Lefèvre née Müller, bénéficiaire n°2"])
        assert vt.screen_lines() == ["Carte Vitale lue", "Helene Lefevre", "nee Muller,",
                                     "beneficiaire no2"]
        with typing(vt, "OK"):
            answers.append(await ui.confirm("Autoriser l'accès au DMP ?", timeout=10))
        with typing(vt, "CANCEL"):
            answers.append(await ui.confirm("Autoriser ?", timeout=10))
        answers.append(await ui.confirm("Personne ne répond", timeout=1))
        return answers

    assert asyncio.run(scenario()) == ["ok", "cancel", "timeout"]
    assert ["Autoriser", "l'acces au DMP ?", "OK / Annuler"] in list(vt.screens)
    # After the answer the terminal shows again what it showed before the question.
    assert vt.screen_lines()[0] == "Carte Vitale lue"


@pytest.mark.leaks("TerminalUI.confirm: a cancelled prompt leaves its to_thread(link.confirm) "
                   "future unawaited (edged/readers/terminal/ui.py)")
def test_abort_ends_a_prompt_from_the_host(vt: VirtualTerminal, link: TerminalLink) -> None:
    ui = TerminalUI(link)

    async def ask_then_give_up() -> None:
        question = asyncio.create_task(ui.confirm("Attendre ?", timeout=30))
        assert await asyncio.to_thread(vt.wait_screen, "OK / Annuler", 5)
        question.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await question

    started = time.monotonic()
    asyncio.run(ask_then_give_up())
    assert time.monotonic() - started < 5
    assert vt.wait_screen("Annule par\nl'hote", 5)  # 17 characters: wrapped
    with TerminalTransport(link, 0) as cps:  # a PIN prompt, aborted from another thread
        session = CpsSession(CardProtocol(cps))
        stopper = threading.Thread(target=lambda: (vt.wait_screen("Code PIN :", 5),
                                                   link.abort()))
        stopper.start()
        with pytest.raises(PinCancelled, match="aborted"):
            session.verify_pin(None, timeout=30)
        stopper.join()
        assert session.pin_status().tries_left == 3


# -- the supervisor edged uses ------------------------------------------------------------
@pytest.mark.leaks("the restarted VirtualTerminal's vt-* threads outlive the test")
def test_reader_reports_cards_and_reconnects_after_a_restart(vt: VirtualTerminal) -> None:
    cards: list[tuple[int, bool, bytes]] = []
    states: list[bool] = []
    changed = threading.Condition()

    def on_card(slot: int, present: bool, atr: bytes) -> None:
        with changed:
            cards.append((slot, present, atr))
            changed.notify_all()

    def on_state(connected: bool) -> None:
        with changed:
            states.append(connected)
            changed.notify_all()

    def wait(predicate, timeout: float = 10.0) -> None:  # type: ignore[no-untyped-def]
        with changed:
            assert changed.wait_for(predicate, timeout), (cards, states)

    reader = TerminalReader(vt.pty_path, on_card=on_card, on_state=on_state, timeout=1.5,
                            keepalive=0.3, backoff=(0.1, 1.0)).start()
    try:
        wait(lambda: {(s, p) for s, p, _ in cards} == {(0, True), (1, True)})
        assert states == [True] and dict((s, a) for s, _, a in cards)[1] == ATR_VITALE2
        cards.clear()
        vt.remove(0, wait=False)
        wait(lambda: (0, False, b"") in cards)
        vt.insert(0, wait=False)
        wait(lambda: any(s == 0 and p for s, p, _ in cards))
        with reader.transport(1) as transport:
            assert transport.transmit(SELECT_MF)[-2:] == b"\x90\x00"
        cards.clear()
        vt.reboot()
        wait(lambda: states[-2:] == [False, True] and len(cards) >= 4)
        assert {(s, p) for s, p, _ in cards[-2:]} == {(0, True), (1, True)}
        assert reader.connected and reader.connects == 2
    finally:
        reader.stop()
    assert states[-1] is False


@pytest.mark.leaks("TerminalControl's vt-control-server thread is not stopped")
def test_control_server_for_other_processes(vt: VirtualTerminal) -> None:
    address = vt.serve_control("127.0.0.1:0")
    control = TerminalControl(address)
    assert control.screen() == vt.screen_lines()
    assert control.status()["pty"] == vt.pty_path
    with pytest.raises(ControlError, match="unknown op"):
        control.request("reboot")
    with pytest.raises(ControlError, match="no slot"):
        control.remove(7)
    with pytest.raises(ControlError, match="no key"):
        control.press("ENTER")
    with pytest.raises(ControlError, match="no prompt"):
        control.press("5", wait=0.2)


def test_stop_leaves_no_process_thread_or_pty(firmware_tools: None) -> None:
    before = {t.ident for t in threading.enumerate()}
    terminal = VirtualTerminal("gp", None).start()
    pid = terminal.pid
    with TerminalLink(terminal.pty_path) as link:
        assert link.slot_status() == (SlotState.PRESENT, SlotState.EMPTY)
    terminal.stop()
    terminal.stop()  # idempotent
    assert pid is not None and terminal.pid is None
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    leaked = [t.name for t in threading.enumerate() if t.ident not in before]
    assert leaked == []
