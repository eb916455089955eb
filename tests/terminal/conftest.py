"""A virtual terminal per test module: the real firmware on MicroPython, a real pty, no mocks.

It runs in a SimulatedWorld (simulators/world.py), whose edged_overrides() point edged at it.
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from bifente.edged.readers.terminal import TerminalLink
from bifente.simulators.terminal import VirtualTerminal
from bifente.simulators.world import SimulatedWorld
from tests.needs import missing

BIN = Path(sys.executable).parent


def _have(name: str) -> bool:
    return (BIN / name).exists() or shutil.which(name) is not None


@pytest.fixture(scope="session")
def firmware_tools() -> None:
    """The MicroPython unix port and mpy-cross: skip without them, except under CI."""
    absent = [n for n in ("micropython", "mpy-cross") if not _have(n)]
    if absent:
        missing(f"{', '.join(absent)} not found (make setup installs the firmware toolchain)")


@pytest.fixture(scope="module")
def terminal_world(firmware_tools: None) -> Iterator[SimulatedWorld]:
    """The virtual terminal with a 'gp' CPS card and a 'family' Vitale card (192K heap)."""
    with SimulatedWorld("gp", "family", mail=False, dmp=False) as world:
        yield world


@pytest.fixture(scope="module")
def vt(terminal_world: SimulatedWorld) -> VirtualTerminal:
    """terminal_world's virtual terminal."""
    assert terminal_world.terminal is not None
    return terminal_world.terminal


@pytest.fixture
def link(vt: VirtualTerminal) -> Iterator[TerminalLink]:
    """edged's side: the pty opened with pyserial and handshaken."""
    with TerminalLink(vt.pty_path) as opened:
        yield opened
