"""Boot entry: build the board from the pin map and run the terminal until power off."""
# MicroPython runs main.py at boot. A simulated board (unix port) calls run() with its own
# board object instead; see docs/firmware.md, "Board".

import asyncio

import terminal

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


async def run(board: "Any") -> None:
    """Run the terminal on a board (port, slot_hw, keys, display, background()) until EOF."""
    term = terminal.Terminal(board.port, board.slot_hw, board.keys, board.display)
    tasks = [asyncio.create_task(coro) for coro in board.background()]
    try:
        await term.run()
    finally:
        for task in tasks:
            task.cancel()


def main() -> None:
    """Construct the RP2040 board and run forever."""
    import board

    asyncio.run(run(board.Board()))


if __name__ == "__main__":
    main()
