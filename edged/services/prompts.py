"""Prompts on the terminal are a shared resource: one pending per client, and a rate (M2).

A client that could queue prompts (consent.ask, cps.verify_pin, a signature confirmation,
the DMP consent) back to back would keep the terminal's screen and keypad for itself; with
one pending prompt each and the firmware's 60 s cap per prompt, every other client gets its
turn within a bounded time. A client that puts prompts up one after the other (each cancelled
at once, or answered by a colluding user) would still flood the display and the people at the
desk, so each client also has a prompt budget: `PROMPT_BURST` back to back, then
`PROMPTS_PER_MINUTE` (edged/limits.py; raised per client in [limits."NAME"]). Beyond it
the call fails with `rate_limited` and `data.retry_after` before anything is shown.
Card operations do not wait for prompts at all: the terminal link has a prompt lane and a
card lane (docs/link-protocol.md). docs/security.md, "Prompts on the terminal".
"""

from __future__ import annotations

import contextlib
import logging
import time
import weakref
from collections.abc import AsyncIterator, Callable
from typing import Any

from bifente.edged.limits import limits_for
from bifente.edged.services.errors import Family, ServiceError

__all__ = ["MAX_PROMPT_S", "PromptGate", "charge_prompt", "one_prompt"]

log = logging.getLogger(__name__)

MAX_PROMPT_S = 60  # the terminal's own cap per prompt (firmware/terminal.py, MAX_PROMPT_S)


class PromptGate:
    """One daemon's prompt bookkeeping: who has a prompt pending, and each client's budget."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.pending: set[str] = set()
        self.over: set[str] = set()  # clients refused since their last accepted prompt
        self._budgets: dict[str, tuple[float, float]] = {}  # client: (tokens, updated)
        self._clock = clock

    def take(self, client: str, burst: int, per_minute: float) -> float:
        """0 when this client may put up a prompt now (one is counted), else seconds to wait."""
        now = self._clock()
        tokens, updated = self._budgets.get(client, (float(burst), now))
        tokens = min(float(burst), tokens + (now - updated) * per_minute / 60)
        if tokens >= 1:
            self._budgets[client] = (tokens - 1, now)
            return 0.0
        self._budgets[client] = (tokens, now)
        return (1 - tokens) * 60 / per_minute


_gates: weakref.WeakKeyDictionary[Any, PromptGate] = weakref.WeakKeyDictionary()


def gate_of(daemon: Any) -> PromptGate:
    """The daemon's prompt gate (made on first use)."""
    gate = _gates.get(daemon)
    if gate is None:
        gate = _gates[daemon] = PromptGate()
    return gate


def charge_prompt(daemon: Any, client_id: str, client_name: str | None) -> None:
    """Count one prompt against the client's budget; ServiceError rate_limited when spent."""
    limits = limits_for(daemon.config, client_name)
    gate = gate_of(daemon)
    wait = gate.take(client_id, limits.prompt_burst, limits.prompts_per_minute)
    if not wait:
        gate.over.discard(client_id)
        return
    if client_id not in gate.over:  # one line per episode, not one per refusal
        gate.over.add(client_id)
        log.warning("prompts refused: %s is over its budget of %d prompts, %g a minute",
                    client_name or client_id[:16], limits.prompt_burst,
                    limits.prompts_per_minute)
    raise ServiceError(Family.RATE_LIMITED, "rate_limited",
                       "too many prompts on the terminal for this client",
                       retry_after=round(wait, 1))


@contextlib.asynccontextmanager
async def one_prompt(daemon: Any, conn: Any) -> AsyncIterator[None]:
    """Hold this client's one prompt slot, after charging its budget; ServiceError
    rate_limited (budget spent) or prompt_pending (a prompt of this client is up)."""
    gate = gate_of(daemon)
    who = str(conn.client_id)
    if who in gate.pending:
        raise ServiceError(Family.RATE_LIMITED, "prompt_pending", "a prompt for this client "
                           "is already waiting on the terminal")
    charge_prompt(daemon, who, getattr(conn, "client_name", None))
    gate.pending.add(who)
    try:
        yield
    finally:
        gate.pending.discard(who)
