"""The firmware's PIN policy seen from edged (review M4): over the pty, through the real host
codec, a PIN request the terminal's policy refuses fails at once with PIN_POLICY, shows no
prompt and sends nothing to the card; the allowed one shows the firmware's own prompt."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

from bifente.edged.readers.link import ErrorCode
from bifente.edged.readers.terminal import TerminalError, TerminalLink, TerminalTransport
from bifente.simulators.terminal import VirtualTerminal

VERIFY_PIN_CPS = bytes.fromhex("00200001")


def _chars(vt: VirtualTerminal, slot: int) -> int:
    return sum(vt.wire_stats(slot).chars.values())


def _refused(vt: VirtualTerminal, transport: TerminalTransport, template: bytes) -> str:
    vt.wire_stats(transport.slot, reset=True)
    screens = len(vt.screens)
    with pytest.raises(TerminalError) as caught:
        transport.secure_verify(template, min_length=4, max_length=4, pad_to=8,
                                pad_byte=0xFF, prompt="PIN CPS (3 left)", timeout=20)
    assert caught.value.code == ErrorCode.PIN_POLICY, caught.value
    shown = [line for screen in list(vt.screens)[screens:] for line in screen]
    assert "Code PIN :" not in shown and "PIN carte CPS" not in shown  # no prompt was shown
    assert _chars(vt, transport.slot) == 0  # not one character reached the card
    assert vt.wait_screen("Demande refusee", 5)
    return str(caught.value)


def test_pin_cps_for_the_patient_slot_is_refused(vt: VirtualTerminal,
                                                 link: TerminalLink) -> None:
    with TerminalTransport(link, 1) as patient_slot:
        why = _refused(vt, patient_slot, VERIFY_PIN_CPS)
    assert "PIN_POLICY" in why and "not the CPS slot" in why


def test_other_commands_for_the_cps_are_refused(vt: VirtualTerminal,
                                                link: TerminalLink) -> None:
    with TerminalTransport(link, 0) as cps:
        assert "INS D6" in _refused(vt, cps, bytes.fromhex("00D60000"))
        assert "CLA 80" in _refused(vt, cps, bytes.fromhex("80200001"))
        assert "P2 02" in _refused(vt, cps, bytes.fromhex("00200002"))


def test_the_prompt_is_the_firmware_s_and_names_the_card(vt: VirtualTerminal,
                                                         link: TerminalLink) -> None:
    with TerminalTransport(link, 0) as cps, ThreadPoolExecutor(1) as pool:
        pending = pool.submit(cps.secure_verify, VERIFY_PIN_CPS, min_length=4,
                              max_length=4, pad_to=8, pad_byte=0xFF,
                              prompt="Please type your PIN here (2 left)", timeout=20)
        assert vt.wait_screen("PIN carte CPS\nReste 2 essais\nCode PIN :", 10)
        assert "Please" not in "\n".join(vt.screen_lines())  # host text is not shown
        vt.press("1234", "OK", wait=10)
        assert pending.result(timeout=20) == 0x9000
