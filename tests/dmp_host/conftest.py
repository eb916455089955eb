"""A real reference DMP host on 127.0.0.1 (HTTPS, SQLite in a temp dir), simulated CPS cards.

`DmpWorld` bundles the host, an HTTPS client, an enrolled terminal signing consent records,
and professionals' sessions opened with their simulated cards (INTERNAL AUTHENTICATE).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from bifente.simulators.dmp import DmpHost
from bifente.simulators.dmp.testing import DmpWorld, FakeClock


@pytest.fixture(scope="session")
def shared_clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(scope="session")
def world(tmp_path_factory: pytest.TempPathFactory, shared_clock: FakeClock) -> Iterator[DmpWorld]:
    """One host for the suite (each test uses new patients); its clock is never moved."""
    host = DmpHost(tmp_path_factory.mktemp("dmp"), test_mode=True, clock=shared_clock).start()
    w = DmpWorld(host, shared_clock)
    yield w
    w.close()
    host.stop()


@pytest.fixture
def own_world(tmp_path: Path) -> Iterator[DmpWorld]:
    """A host of its own, for tests that move the clock or restart the host."""
    clock = FakeClock()
    host = DmpHost(tmp_path / "dmp", test_mode=True, clock=clock).start()
    w = DmpWorld(host, clock)
    yield w
    w.close()
    host.stop()
