"""The RP2040 board: every hardware object built once from pinmap and handed to the firmware."""

import asyncio
import sys

import machine
import micropython

import display
import keypad
import pinmap
import port
import slot_hw

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


class Board:
    """Pico + two TDA8035 slots + 4x4 keypad + SSD1306, wired as hardware/PINMAP.md says."""

    def __init__(self, link: "Any" = None) -> None:
        # link: the port to the host; USB CDC on stdin/stdout unless given (the tests give
        # one on ports without asyncio streams, e.g. WebAssembly).
        machine.freq(pinmap.SYS_CLK_HZ)  # the card clock and etu arithmetic assume 125 MHz
        micropython.kbd_intr(-1)  # the link is binary: a 0x03 byte must not raise Ctrl-C
        pin = machine.Pin
        self.keys = keypad.KeyQueue()
        rows = [pin(p, pin.OPEN_DRAIN, value=1) for p in pinmap.KEYPAD_ROWS]
        cols = [pin(p, pin.IN, pin.PULL_UP) for p in pinmap.KEYPAD_COLS]
        self.keypad = keypad.MatrixKeypad(rows, cols, pinmap.KEYMAP, self.keys)
        i2c = machine.I2C(pinmap.I2C_ID, sda=pin(pinmap.I2C_SDA), scl=pin(pinmap.I2C_SCL),
                          freq=pinmap.I2C_FREQ)
        driver = None  # type: Any
        try:
            driver = display.SSD1306(i2c, pinmap.OLED_ADDR, pinmap.OLED_WIDTH,
                                     pinmap.OLED_HEIGHT)
        except OSError:
            driver = None  # no display answered: keep the link up, prompts show nothing
        self.display = display.TextDisplay(driver)
        self.display.show(["bifente", "pret"])
        self.slot_hw = [slot_hw.Rp2SlotHw(i, pins) for i, pins in enumerate(pinmap.SLOTS)]
        self.port = link if link is not None else port.StreamPort(
            asyncio.StreamReader(sys.stdin.buffer), asyncio.StreamWriter(sys.stdout.buffer, {}))
        self.led = pin(pinmap.LED_BOARD, pin.OUT, value=0)

    def background(self) -> list:
        """Coroutines to run beside the terminal: the keypad scanner and a heartbeat."""
        return [self.keypad.run(), self._heartbeat()]

    async def _heartbeat(self) -> None:
        while True:
            self.led.toggle()
            await asyncio.sleep_ms(500)
