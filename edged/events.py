"""Event fan-out: every subscriber gets its own bounded queue; a slow one loses old events."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Event", "EventBus", "Subscription"]


@dataclass(frozen=True)
class Event:
    """Something that happened: a name (card.inserted, pin.state, ...) and its fields."""

    name: str
    params: dict[str, Any]
    time: float = field(default_factory=time.time)
    seq: int = 0  # the bus's counter: consecutive for consecutive events


class Subscription:
    """One subscriber's queue; `dropped` counts events lost because it was too slow."""

    def __init__(self, bus: EventBus, names: frozenset[str] | None, size: int) -> None:
        self._bus = bus
        self.names = names
        self.queue: asyncio.Queue[Event] = asyncio.Queue(size)
        self.dropped = 0

    def offer(self, event: Event) -> None:
        """Queue an event, dropping the oldest when full."""
        if self.names is not None and event.name not in self.names:
            return
        if self.queue.full():
            self.queue.get_nowait()
            self.dropped += 1
        self.queue.put_nowait(event)

    async def get(self) -> Event:
        """The next event."""
        return await self.queue.get()

    def close(self) -> None:
        """Stop receiving."""
        self._bus.unsubscribe(self)


class EventBus:
    """Publish events to every subscription (called from the event loop thread)."""

    def __init__(self, queue_size: int = 256) -> None:
        self._subs: set[Subscription] = set()
        self.queue_size = queue_size
        self._seq = 0

    def subscribe(self, names: frozenset[str] | None = None) -> Subscription:
        """A new subscription to these event names (None: all)."""
        sub = Subscription(self, names, self.queue_size)
        self._subs.add(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        """Remove a subscription (idempotent)."""
        self._subs.discard(sub)

    def publish(self, name: str, **params: Any) -> Event:
        """Deliver an event to every matching subscription."""
        self._seq += 1
        event = Event(name, params, seq=self._seq)
        for sub in list(self._subs):
            sub.offer(event)
        return event

    @property
    def subscribers(self) -> int:
        """How many subscriptions are open."""
        return len(self._subs)
