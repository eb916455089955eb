"""A real edged in the test's event loop: TLS on 127.0.0.1, state in a temp dir, no mocks.

The reference DMP host edged talks to runs in a `SimulatedWorld` (tests/conftest.py's dmp_sim;
the cards come through the session's pcscd), which also gives edged the configuration that
points at it.
"""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import pytest
import pytest_asyncio

from bifente.client import Client, Credentials, pair
from bifente.edged.config import Config
from bifente.edged.daemon import Daemon
from bifente.simulators.dmp import DmpHost
from bifente.simulators.dmp.testing import DmpWorld, FakeClock
from bifente.simulators.pinpad import Keypad, PinPadTransport, SimulatedDisplay
from bifente.simulators.world import SimulatedWorld


class Bench:
    """A daemon, its simulated display and keypad, and helpers to pair clients."""

    def __init__(self, daemon: Daemon, keypad: Keypad, display: SimulatedDisplay) -> None:
        self.daemon = daemon
        self.keypad = keypad
        self.display = display

    @property
    def port(self) -> int:
        return self.daemon.server.port

    @property
    def fingerprint(self) -> str:
        return self.daemon.keystore.fingerprint

    def code_on_display(self) -> str:
        match = re.search(r"Code: (\d{6})", self.display.screen())
        assert match, f"no pairing code on the display: {self.display.screen()!r}"
        return match.group(1)

    async def unpaired(self) -> Client:
        return await Client.connect("127.0.0.1", self.port, self.fingerprint)

    async def pair(self, name: str, *scopes: str) -> Credentials:
        """Pair over the network; `admin` is then granted as the local CLI does (never by a
        pairing code)."""
        remote = [s for s in scopes if s != "admin"]
        credentials = await pair("127.0.0.1", self.port, self.fingerprint, name, remote,
                                 self.code_on_display)
        if "admin" in scopes:
            self.daemon.clients.grant(name, ["admin"])
        return credentials

    async def client(self, name: str, *scopes: str) -> Client:
        return await (await self.pair(name, *scopes)).connect()


BenchFactory = Callable[..., Awaitable[Bench]]


@pytest_asyncio.fixture
async def edged(tmp_path: Path) -> AsyncIterator[BenchFactory]:
    """Start daemons on demand (pcsc=False unless asked); all are stopped afterwards."""
    started: list[Daemon] = []

    async def start(*, pcsc: bool = False, pin_pad: bool = True, **overrides: object) -> Bench:
        keypad = Keypad()
        display = SimulatedDisplay(keypad)
        config = Config(host="127.0.0.1", port=0, state_dir=tmp_path / f"state{len(started)}",
                        mdns=False, pcsc=pcsc).with_overrides(**overrides)
        if not config.state_key_file:  # the fallback state key beside the state, not inside
            state = config.state_dir
            config = config.with_overrides(
                state_key_file=str(state.parent / f"{state.name}.key" / "state.key"))
        wrap = (lambda reader, t: PinPadTransport(t, keypad, display)) if pin_pad else None
        daemon = Daemon(config, ui=display, wrap_transport=wrap)
        await daemon.start()
        started.append(daemon)
        return Bench(daemon, keypad, display)

    yield start
    for daemon in started:
        await daemon.stop()


@pytest.fixture
def host(dmp_sim: SimulatedWorld) -> DmpHost:
    """The world's DMP host as it was started (a test that restarts it uses dmp_sim.dmp)."""
    assert dmp_sim.dmp is not None
    return dmp_sim.dmp


@pytest.fixture
def world(host: DmpHost) -> Iterator[DmpWorld]:
    """The host's own test helpers, to set the scene (records, oppositions) directly."""
    w = DmpWorld(host, FakeClock())
    w.clock = time.time  # type: ignore[assignment]  # the host runs on the real clock
    yield w
    w.close()
