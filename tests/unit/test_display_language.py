"""The display speaks French, the firmware's and the simulated PIN pad's alike (docs/terminal.md):
the simulator says what the firmware says, word for word, for every PIN outcome and prompt."""

from __future__ import annotations

import ast
import asyncio
from pathlib import Path

import pytest

from bifente.simulators.pinpad import (
    ANSWER_SCREENS,
    CONFIRM_KEYS,
    Keypad,
    PinPadTransport,
    SimulatedDisplay,
    pin_screen,
)

FIRMWARE = Path(__file__).resolve().parents[2] / "firmware"
ENGLISH = ("PIN OK", "Wrong", "blocked", "left", "Error", "Cancel", "Accepted", "Refused",
           "No answer")


def _firmware_pin_screen():
    """The firmware's own `_pin_screen`, taken from its source (it needs no MicroPython)."""
    tree = ast.parse((FIRMWARE / "terminal.py").read_text(encoding="utf-8"))
    node = next(n for n in ast.walk(tree)
                if isinstance(n, ast.FunctionDef) and n.name == "_pin_screen")
    node.decorator_list = []
    scope: dict = {}
    exec(compile(ast.Module([node], []), "firmware/terminal.py", "exec"), scope)
    return scope["_pin_screen"]


@pytest.mark.parametrize("sw", [0x9000, 0x63C3, 0x63C1, 0x63C0, 0x6983, 0x6A82])
def test_pin_outcomes_read_as_the_firmware_shows_them(sw: int) -> None:
    assert pin_screen(sw) == _firmware_pin_screen()(sw)
    assert not any(word in line for line in pin_screen(sw) for word in ENGLISH)


def test_the_question_ends_with_the_firmware_keys_line() -> None:
    source = (FIRMWARE / "pinentry.py").read_text(encoding="utf-8")
    assert f'lines.append("{CONFIRM_KEYS}")' in source


class _Card:
    atr = b"\x3b\x00"

    def __init__(self, sw: bytes) -> None:
        self.sw = sw

    def transmit(self, command: bytes) -> bytes:
        return self.sw

    def close(self) -> None:
        pass


def test_every_screen_of_a_prompt_and_a_pin_entry_is_french() -> None:
    keypad = Keypad()
    display = SimulatedDisplay(keypad)
    for key in ("OK", "CANCEL"):
        keypad.press(key)
        answer = asyncio.run(display.confirm("Autoriser Dr Claire ?", timeout=5))
        assert display.history[-2] == ["Autoriser Dr Claire ?", "OK / Annuler"]
        assert display.history[-1] == [ANSWER_SCREENS[answer]]
    pad = PinPadTransport(_Card(b"\x63\xc2"), keypad, display)  # type: ignore[arg-type]
    keypad.press("1234", "OK")
    sw = pad.secure_verify(b"\x00\x20\x00\x01", min_length=4, max_length=8, pad_to=8,
                           pad_byte=0xFF, prompt="PIN CPS", timeout=5)
    assert sw == 0x63C2 and display.history[-1] == ["Code incorrect", "Reste 2 essais"]
    for screen in display.history:
        for line in screen:
            assert not any(word in line for word in ENGLISH), screen
