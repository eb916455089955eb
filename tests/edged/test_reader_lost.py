"""A reader that fails or is unplugged is a reader error, told apart from a card removal.

The registry, the event bus and the arbiter are the daemon's own; the card is the simulated
CPS behind an in-process transport. pcscd lost with real processes: test_pcscd_restart.py.
"""

from __future__ import annotations

import asyncio
import threading

import pytest

from bifente.apdu.transport import InProcessTransport
from bifente.edged.api.errors import to_rpc_error
from bifente.edged.events import EventBus
from bifente.edged.readers.manager import ReaderLost, Slot, SlotRegistry, SlotSource
from bifente.edged.readers.pcsc import CardKind
from bifente.simulators.cps3 import Cps3Card

pytestmark = pytest.mark.asyncio
READER = "USB reader 0"


async def inserted() -> tuple[SlotRegistry, EventBus]:
    bus = EventBus()
    registry = SlotRegistry(bus)
    card = Cps3Card("gp")
    atr = card.power_on()
    registry.reader_added(Slot(READER, READER, SlotSource.PCSC))
    await registry.card_inserted(Slot(READER, READER, SlotSource.PCSC), atr,
                                 lambda: InProcessTransport(card))
    assert registry.find(CardKind.CPS) is not None
    return registry, bus


async def test_an_unplugged_reader_fails_its_work_as_a_reader_error_not_a_removal() -> None:
    registry, bus = await inserted()
    events = bus.subscribe()
    arbiter = registry.find(CardKind.CPS).arbiter  # type: ignore[union-attr]
    gate = threading.Event()
    running = asyncio.ensure_future(arbiter.run("a", lambda p: gate.wait(5)))
    await asyncio.sleep(0.05)
    queued = asyncio.ensure_future(arbiter.run("b", lambda p: None))
    await asyncio.sleep(0.01)
    gone = asyncio.ensure_future(registry.reader_gone(READER))
    with pytest.raises(ReaderLost, match="the reader was removed") as caught:
        await queued
    gate.set()
    await running
    await gone
    error = to_rpc_error(caught.value)
    assert error.data["reason"] == "reader_error"
    event = await asyncio.wait_for(events.get(), 1)
    assert (event.name, event.params["kind"], event.params["reason"]) == (
        "reader.lost", CardKind.CPS, "the reader was removed")
    assert registry.find(CardKind.CPS) is None
    assert registry.lost_reason(CardKind.CPS) == f"reader {READER}: the reader was removed"
    # Plugged back: reader.restored, and nothing else was said in between (no card.removed).
    registry.reader_added(Slot(READER, READER, SlotSource.PCSC))
    event = await asyncio.wait_for(events.get(), 1)
    assert (event.name, event.params["reader"]) == ("reader.restored", READER)
    assert registry.lost_reason(CardKind.CPS) is None


async def test_a_card_pulled_is_still_a_removal() -> None:
    registry, bus = await inserted()
    events = bus.subscribe()
    await registry.card_removed(READER)
    event = await asyncio.wait_for(events.get(), 1)
    assert event.name == "card.removed"
    assert registry.lost_reason(CardKind.CPS) is None


def _missing(registry: SlotRegistry, kind: CardKind) -> str:
    """The reason a client gets for a card of this kind that is not at hand."""
    from types import SimpleNamespace

    from bifente.edged.services.cards import missing

    return str(to_rpc_error(missing(SimpleNamespace(slots=registry), kind)).data["reason"])


async def test_an_unplugged_reader_makes_only_its_own_card_a_reader_error() -> None:
    # The CPS reader's cable is pulled: the CPS card is out of reach (reader_error), but a
    # Vitale card nobody inserted is still missing (no_card), not a reader problem.
    registry, _bus = await inserted()
    await registry.reader_gone(READER)
    assert _missing(registry, CardKind.CPS) == "reader_error"
    assert _missing(registry, CardKind.VITALE) == "no_card"
    # The user moves the CPS card to another reader and pulls it out later: it is missing,
    # not stuck in the lost reader, although that reader never came back.
    other = "USB reader 1"
    card = Cps3Card("gp")
    registry.reader_added(Slot(other, other, SlotSource.PCSC))
    await registry.card_inserted(Slot(other, other, SlotSource.PCSC), card.power_on(),
                                 lambda: InProcessTransport(card))
    await registry.card_removed(other)
    assert _missing(registry, CardKind.CPS) == "no_card"
    assert READER in registry.lost  # still lost: reader.restored comes when it is back


async def test_a_reader_lost_empty_holds_no_card() -> None:
    bus = EventBus()
    registry = SlotRegistry(bus)
    registry.reader_added(Slot(READER, READER, SlotSource.PCSC))
    await registry.reader_gone(READER)
    assert _missing(registry, CardKind.CPS) == "no_card"
    assert _missing(registry, CardKind.VITALE) == "no_card"
