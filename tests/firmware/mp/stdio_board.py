"""The terminal on this process's stdin/stdout through port.StreamPort, with empty slots.

`micropython -m stdio_board` is the link half of board.Board on the unix port: tests feed it
frames through a pipe that stays open and read the answers (tests/firmware/test_micropython.py,
test_short_frame_answered_on_an_open_pipe). Not a t_* module: mptest does not run it.
"""

import asyncio
import sys

import main
import port
from display import TextDisplay
from keypad import KeyQueue
from support import FakeSlotHw


class StdioBoard:
    """port on stdin/stdout (blocking, as the Pico's USB CDC), no card in either slot."""

    def __init__(self):
        self.port = port.StreamPort(asyncio.StreamReader(sys.stdin.buffer),
                                    asyncio.StreamWriter(sys.stdout.buffer, {}))
        self.slot_hw = [FakeSlotHw(present=False), FakeSlotHw(present=False)]
        self.keys = KeyQueue()
        self.display = TextDisplay(None)

    def background(self):
        """Nothing beside the terminal."""
        return []


asyncio.run(main.run(StdioBoard()))
