"""Prompts on the terminal are a shared resource: at most one pending per client (review M2).

A client that could queue prompts (consent.ask, cps.verify_pin, the DMP consent) back to back
would keep the terminal's screen and keypad for itself; with one pending prompt each and the
firmware's 60 s cap per prompt, every other client gets its turn within a bounded time. Card
operations do not wait for prompts at all: the terminal link has a prompt lane and a card lane
(docs/link-protocol.md).
"""

from __future__ import annotations

import contextlib
import weakref
from collections.abc import AsyncIterator
from typing import Any

from edged.services.errors import Family, ServiceError

__all__ = ["MAX_PROMPT_S", "one_prompt"]

MAX_PROMPT_S = 60  # the terminal's own cap per prompt (firmware/terminal.py, MAX_PROMPT_S)

_pending: weakref.WeakKeyDictionary[Any, set[str]] = weakref.WeakKeyDictionary()


@contextlib.asynccontextmanager
async def one_prompt(daemon: Any, conn: Any) -> AsyncIterator[None]:
    """Hold this client's one prompt slot; ServiceError prompt_pending if it is taken."""
    pending = _pending.setdefault(daemon, set())
    who = str(conn.client_id)
    if who in pending:
        raise ServiceError(Family.RATE_LIMITED, "prompt_pending", "a prompt for this client "
                           "is already waiting on the terminal")
    pending.add(who)
    try:
        yield
    finally:
        pending.discard(who)
