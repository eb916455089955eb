"""Waiting on the daemon's own signals, not by polling."""

from __future__ import annotations

import asyncio

from bifente.edged.daemon import Daemon
from bifente.edged.readers.pcsc import CardKind

__all__ = ["cards_seen"]


async def cards_seen(daemon: Daemon, *kinds: CardKind, within: float) -> None:
    """Return once the daemon holds a card of each kind; TimeoutError after `within` s."""
    slots = daemon.slots
    async with asyncio.timeout(within):
        while not all(slots.find(kind) for kind in kinds):
            slots.changed.clear()  # set again by the next insertion, removal or reader change
            await slots.changed.wait()
