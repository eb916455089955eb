"""Shared fixtures: the real PC/SC stack (pyscard -> pcscd -> vpcd -> our simulated cards),
and the simulated parts edged talks to, in a SimulatedWorld (simulators/world.py)."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from bifente.apdu.pcsc import PcscTransport
from bifente.apdu.protocol import CardProtocol
from bifente.client import contract
from bifente.edged.api import openrpc
from bifente.simulators.cps3 import Cps3Card
from bifente.simulators.pcscd import PcscdHandle, ensure_pcscd
from bifente.simulators.slots import CPS_SLOT, VITALE_SLOT, SimulatedSlots
from bifente.simulators.vitale import Vitale2Card
from bifente.simulators.world import CardsOn, DmpOptions, SimulatedWorld
from tests import leaks

# Every answer the suite receives through the SDK (in this process, and in the CLI run as a
# subprocess, which inherits the variable) is validated against docs/openrpc.json: results
# against their method's result schema, errors against the error table, events against their
# params schema (sdk/python/bifente/client/contract.py). A mismatch fails the call, so the test
# fails. The document is the daemon's own, built from its method table (edged/api/openrpc.py).
os.environ.setdefault("BIFENTE_CHECK_ANSWERS", "1")
contract.use_document(openrpc.document)

DMP_ADMIN_TOKEN = "admin-secret"  # the reference DMP host's admin token in tests (TEST DATA)


@pytest.fixture(scope="session", autouse=True)
def _note_leaked_tasks() -> Iterator[None]:
    """Note asyncio tasks left pending when a test's loop closes (tests/leaks.py)."""
    undo = leaks.watch_tasks()
    yield
    undo()


@pytest.fixture(autouse=True)
def _no_leaks(request: pytest.FixtureRequest) -> Iterator[None]:
    """Fail a test that leaves a thread running or an asyncio task pending (tests/leaks.py).

    Autouse, so set up before and torn down after the test's other fixtures, its event loop
    included: what is left then was leaked by the test or by the code under test.
    """
    before = threading.enumerate()
    leaks.leaked_tasks.clear()
    yield
    threads = leaks.new_threads(before)
    tasks = list(leaks.leaked_tasks)
    leaks.leaked_tasks.clear()
    problems = [f"thread {t.name!r} still running" for t in threads]
    problems += [f"task {t} still pending when its loop closed" for t in tasks]
    known = request.node.get_closest_marker("leaks")
    if problems and known is None:
        pytest.fail("leaked past the end of the test: " + "; ".join(problems), pytrace=False)


@pytest.fixture(scope="session")
def pcscd() -> Iterator[PcscdHandle]:
    """pcscd with the vpcd readers, started for the session when it is not running."""
    handle = ensure_pcscd()
    yield handle
    handle.stop()


@pytest.fixture
def slots(pcscd: PcscdHandle) -> Iterator[SimulatedSlots]:
    """Empty slots; tests insert what they need. Everything is pulled afterwards."""
    with SimulatedWorld(None, None, cards=CardsOn.PCSC, mail=False, dmp=False,
                        pcscd=False) as world:  # the session fixture owns pcscd
        bench = world.slots
        assert bench is not None
        yield bench
        for slot in (CPS_SLOT, VITALE_SLOT):
            bench.remove(slot)  # and wait: a slot pcscd still sees full fails this test


def _inserter(slots: SimulatedSlots, slot: int, make: Callable[[str], Cps3Card | Vitale2Card],
              default: str):
    """A function that inserts a card made from a profile and connects to it through PC/SC."""
    opened: list[PcscTransport] = []

    def insert(profile: str = default):
        card = make(profile)
        slots.insert(slot, card)
        transport = PcscTransport(slots.reader(slot))
        opened.append(transport)
        return card, CardProtocol(transport)

    return insert, opened


@pytest.fixture
def cps(slots: SimulatedSlots) -> Iterator[Callable[[str], tuple[Cps3Card, CardProtocol]]]:
    """Insert a CPS card of the given profile in slot 0 and connect to it through PC/SC."""
    insert, opened = _inserter(slots, CPS_SLOT, Cps3Card, "gp")
    yield insert
    for t in opened:
        t.close()


@pytest.fixture
def vitale(slots: SimulatedSlots) -> Iterator[Callable[[str], tuple[Vitale2Card, CardProtocol]]]:
    """Insert a Vitale card of the given profile in slot 1 and connect to it through PC/SC."""
    insert, opened = _inserter(slots, VITALE_SLOT, Vitale2Card, "family")
    yield insert
    for t in opened:
        t.close()


@pytest.fixture
def dmp_sim(tmp_path: Path) -> Iterator[SimulatedWorld]:
    """The reference DMP host on 127.0.0.1 (its folder: tmp_path / "dmp"), for edged to talk
    to; edged's [dmp] table is dmp_sim.edged_overrides()["dmp"]."""
    with SimulatedWorld(None, None, cards=CardsOn.NONE, mail=False,
                        dmp=DmpOptions(tmp_path / "dmp", admin_token=DMP_ADMIN_TOKEN)) as world:
        yield world
