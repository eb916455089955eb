"""Which cards are where: PC/SC readers watched for insertions, removals and hot-plug.

A slot is a reader position holding a card. Each present card gets a CardArbiter, which opens
the card's session (edged/readers/session.py) once for the insertion; its kind comes from its
ATR. Insertions and removals become events on the bus.
"""

from __future__ import annotations

import asyncio
import enum
import functools
import logging
import threading
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

from smartcard import scard

from bifente.apdu.errors import CardRemoved, TransportError
from bifente.apdu.pcsc import PcscTransport
from bifente.apdu.transport import Transport
from bifente.edged.events import EventBus
from bifente.edged.readers.arbiter import CLOSE_GRACE_S, CardArbiter
from bifente.edged.readers.pcsc import CardKind, card_kind
from bifente.edged.readers.session import open_session

__all__ = ["PcscWatcher", "Slot", "SlotRegistry", "SlotSource", "SlotState"]

log = logging.getLogger(__name__)
PNP = "\\\\?PnP?\\Notification"  # pcsc-lite's pseudo reader for reader hot-plug


class SlotSource(enum.StrEnum):
    """Where a slot is: a PC/SC reader or the bifente terminal."""

    PCSC = "pcsc"
    TERMINAL = "terminal"


class SlotState(enum.Enum):
    """EMPTY -> PRESENT (a card, its arbiter and its session) -> EMPTY on removal."""

    EMPTY = "empty"
    PRESENT = "present"


@dataclass
class Slot:
    """A reader position and the card in it."""

    slot_id: str
    reader: str
    source: SlotSource
    kind: CardKind = CardKind.EMPTY
    atr: bytes = b""
    arbiter: CardArbiter | None = field(default=None, repr=False)
    pin_pad: bool = False

    @property
    def state(self) -> SlotState:
        """EMPTY or PRESENT."""
        return SlotState.EMPTY if self.kind is CardKind.EMPTY else SlotState.PRESENT

    @property
    def present(self) -> bool:
        """True when a card is in the slot."""
        return self.state is SlotState.PRESENT

    def describe(self) -> dict[str, object]:
        """The slot for the API (readers.list)."""
        return {"slot": self.slot_id, "reader": self.reader, "source": self.source,
                "present": self.present, "kind": self.kind, "atr": self.atr.hex(),
                "pin_pad": self.pin_pad}


class ReaderLost(TransportError):
    """A reader failed or went away (pcscd lost, reader unplugged): not a card removal,
    so clients get `reader_error` and a `reader.lost` event, never `card_removed`."""


class SlotRegistry:
    """Every slot the daemon knows; publishes card.inserted / card.removed and
    reader.lost / reader.restored."""

    def __init__(self, bus: EventBus) -> None:
        self.bus = bus
        self.slots: dict[str, Slot] = {}
        # Readers lost and not back yet (slot id -> why): reader.restored when they return.
        self.lost: dict[str, str] = {}
        # The kind of card each lost reader held when it went (slot id -> kind): that card is
        # still in it, out of reach, until the reader returns or such a card turns up elsewhere.
        self._held: dict[str, CardKind] = {}
        self.changed = asyncio.Event()

    def lost_reason(self, kind: CardKind) -> str | None:
        """Why no card of this kind is at hand when a lost reader held one, or None.

        A front-desk user who pulls the CPS reader's cable still gets `no_card` for a missing
        Vitale card: only the kind of card the lost reader held is reported as out of reach
        (`reader_error`), until the reader is back or a card of that kind is inserted in
        another reader (the user moved it).
        """
        slot_id = next((s for s, held in self._held.items() if held == kind), None)
        return None if slot_id is None else f"reader {slot_id}: {self.lost[slot_id]}"

    def find(self, kind: CardKind) -> Slot | None:
        """The first slot holding a card of this kind (terminal slots first)."""
        ordered = sorted(self.slots.values(),
                         key=lambda s: (s.source is not SlotSource.TERMINAL, s.slot_id))
        return next((s for s in ordered if s.kind == kind), None)

    async def card_inserted(self, slot: Slot, atr: bytes,
                            opener: Callable[[], Transport]) -> None:
        """A card arrived: record it, give it an arbiter, tell subscribers."""
        old = self.slots.get(slot.slot_id)
        if old is not None and old.present:  # a new ATR without a removal seen in between
            await self.card_removed(slot.slot_id)
        self.slots[slot.slot_id] = slot
        slot.atr, slot.kind = atr, card_kind(atr)
        kind = slot.kind
        for lost_id in [s for s, held in self._held.items() if held == kind]:
            del self._held[lost_id]  # the card the lost reader held is here (or another is)
        slot.arbiter = CardArbiter(slot.slot_id, opener,
                                   session=lambda protocol: open_session(kind, protocol))
        log.info("card inserted: %s in %s", slot.kind, slot.reader)
        self.bus.publish("card.inserted", slot=slot.slot_id, reader=slot.reader, kind=slot.kind)
        self.changed.set()

    async def card_removed(self, slot_id: str) -> None:
        """A card left: fail its pending work, tell subscribers."""
        slot = self.slots.get(slot_id)
        if slot is None or not slot.present:
            return
        kind, arbiter = slot.kind, slot.arbiter
        slot.kind, slot.atr, slot.arbiter = CardKind.EMPTY, b"", None
        if arbiter is not None:
            await arbiter.close(CardRemoved(f"the {kind} card was removed from {slot.reader}"))
        log.info("card removed: %s from %s", kind, slot.reader)
        self.bus.publish("card.removed", slot=slot_id, reader=slot.reader, kind=kind)
        self.changed.set()

    def reader_added(self, slot: Slot) -> None:
        """A reader appeared (empty); reader.restored when it is one that was lost."""
        self.slots.setdefault(slot.slot_id, slot)
        self._held.pop(slot.slot_id, None)
        if self.lost.pop(slot.slot_id, None) is not None:
            log.info("reader restored: %s", slot.reader)
            self.bus.publish("reader.restored", slot=slot.slot_id, reader=slot.reader)
        self.changed.set()

    async def reader_lost(self, slot_id: str, reason: str) -> None:
        """A reader failed or was unplugged: its pending work fails with ReaderLost and
        subscribers get reader.lost (with the card it held), not card.removed."""
        slot = self.slots.pop(slot_id, None)
        if slot is None:
            return
        kind, arbiter = slot.kind, slot.arbiter
        slot.kind, slot.atr, slot.arbiter = CardKind.EMPTY, b"", None
        self.lost[slot_id] = reason
        if kind is not CardKind.EMPTY:
            self._held[slot_id] = kind
        if arbiter is not None:
            await arbiter.close(ReaderLost(f"reader {slot.reader}: {reason}"))
        log.warning("reader lost: %s (%s)", slot.reader, reason)
        self.bus.publish("reader.lost", slot=slot_id, reader=slot.reader, kind=kind,
                         reason=reason)
        self.changed.set()

    async def reader_gone(self, slot_id: str) -> None:
        """A reader disappeared (unplugged)."""
        await self.reader_lost(slot_id, "the reader was removed")

    async def close(self, grace: float = CLOSE_GRACE_S) -> None:
        """Close every card's arbiter, all at once (cards are reset on close); a running job
        gets at most `grace` seconds (CardArbiter.close)."""
        closing = [slot for slot in self.slots.values() if slot.arbiter is not None]
        await asyncio.gather(*(slot.arbiter.close(CardRemoved("the daemon is stopping"),
                                                  grace=grace)
                               for slot in closing if slot.arbiter is not None))
        for slot in closing:
            slot.arbiter = None


class PcscWatcher:
    """A thread that follows PC/SC reader states and reports changes to the registry."""

    def __init__(self, registry: SlotRegistry, loop: asyncio.AbstractEventLoop, *,
                 poll_ms: int = 500,
                 wrap: Callable[[str, Transport], Transport] | None = None) -> None:
        self.registry = registry
        # A reader feature the PC/SC layer cannot see (a PIN pad) wraps the transport here.
        self.wrap = wrap
        self.loop = loop
        self.poll_ms = poll_ms
        self._stop = threading.Event()
        self._tasks: set[asyncio.Task[object]] = set()
        self._thread = threading.Thread(target=self._run, name="pcsc-watch", daemon=True)
        self._context: int | None = None
        self.ready = threading.Event()

    def start(self) -> None:
        """Start watching."""
        self._thread.start()

    def stop(self) -> None:
        """Stop watching (cancels a blocking status wait) and join the thread."""
        self._stop.set()
        if self._context is not None:
            scard.SCardCancel(self._context)
        self._thread.join(timeout=5)

    def _open(self, reader: str) -> Transport:
        # Unpower on close: a daemon stop or card removal leaves no verified PIN behind.
        transport: Transport = PcscTransport(reader, disposition="unpower")
        return self.wrap(reader, transport) if self.wrap else transport

    def _post(self, fn: Callable[[], object]) -> None:
        self.loop.call_soon_threadsafe(fn)

    def _spawn(self, fn: Callable[..., Coroutine[Any, Any, object]], *args: Any) -> None:
        # On the loop (posted from the watcher thread): the registry's coroutine as a task,
        # kept until done so that a stopping daemon can wait for it (settle()).
        task = self.loop.create_task(fn(*args))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def settle(self) -> None:
        """Wait for the registry updates already posted (after stop(): no new ones come)."""
        await asyncio.sleep(0)  # run what the thread posted with call_soon_threadsafe
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    def _run(self) -> None:
        backoff = 0.5
        while not self._stop.is_set():
            try:
                self._watch()
                backoff = 0.5
            except Exception as exc:  # pcscd restarted or gone: retry with capped backoff
                if self._stop.is_set():
                    return  # stopping: a cancelled or closed context is expected
                log.warning("PC/SC watcher: %s; retrying in %.1f s", exc, backoff)
                self._stop.wait(backoff)
                backoff = min(backoff * 2, 10.0)

    def _watch(self) -> None:
        hresult, ctx = scard.SCardEstablishContext(scard.SCARD_SCOPE_USER)
        if hresult != scard.SCARD_S_SUCCESS:
            raise TransportError("cannot reach pcscd")
        self._context = ctx
        known: dict[str, int] = {}
        try:
            while not self._stop.is_set():
                hresult, readers = scard.SCardListReaders(ctx, [])
                if hresult == scard.SCARD_E_NO_READERS_AVAILABLE:
                    readers = []
                elif hresult != scard.SCARD_S_SUCCESS:
                    raise TransportError(scard.SCardGetErrorMessage(hresult))
                for gone in set(known) - set(readers):
                    known.pop(gone)
                    self._post(functools.partial(self._spawn, self.registry.reader_gone, gone))
                for new in set(readers) - set(known):
                    known[new] = scard.SCARD_STATE_UNAWARE
                    self._post(functools.partial(self.registry.reader_added,
                                                 Slot(new, new, SlotSource.PCSC)))
                query = [(r, known[r]) for r in readers] + [(PNP, 0)]
                hresult, states = scard.SCardGetStatusChange(ctx, self.poll_ms, query)
                self.ready.set()
                if hresult in (scard.SCARD_E_TIMEOUT, scard.SCARD_E_CANCELLED):
                    continue
                if hresult != scard.SCARD_S_SUCCESS:
                    raise TransportError(scard.SCardGetErrorMessage(hresult))
                for name, event, atr in states:
                    if name == PNP or name not in known:
                        continue
                    before = known[name]
                    known[name] = event & ~scard.SCARD_STATE_CHANGED
                    was = bool(before & scard.SCARD_STATE_PRESENT)
                    now = bool(event & scard.SCARD_STATE_PRESENT)
                    if now and not was:
                        slot = Slot(name, name, SlotSource.PCSC, pin_pad=self.wrap is not None)
                        self._post(functools.partial(self._spawn, self.registry.card_inserted,
                                                     slot, bytes(atr),
                                                     functools.partial(self._open, name)))
                    elif was and not now:
                        self._post(functools.partial(self._spawn, self.registry.card_removed,
                                                     name))
        except Exception:
            if not self._stop.is_set():
                # The context is lost (pcscd died): what it reported cannot be trusted any
                # more. Every reader is lost (reader.lost, D8: a reader failure, not a card
                # removal); they come back, cards and all, when a new context lists them.
                for gone in known:
                    self._post(functools.partial(self._spawn, self.registry.reader_lost, gone,
                                                 "the PC/SC service (pcscd) was lost"))
            raise
        finally:
            self._context = None
            scard.SCardReleaseContext(ctx)
