"""The virtual terminal: the real firmware on the MicroPython unix port, simulated cards, a pty."""

from bifente.simulators.terminal.card_io import CardEngine, WireStats
from bifente.simulators.terminal.control import ControlError, TerminalControl
from bifente.simulators.terminal.supervisor import FirmwareError, VirtualTerminal

__all__ = ["CardEngine", "ControlError", "FirmwareError", "TerminalControl", "VirtualTerminal",
           "WireStats"]
