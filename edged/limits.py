"""Per-client limits: the [server] defaults, raised for named clients in [limits."NAME"].

A practice server that proxies many front desks through one pairing needs more calls and
connections than one desk; it gets them by name in the configuration, e.g.

    [limits."Practice server"]
    rate_per_second = 200.0
    rate_burst = 400
    max_connections = 64
    prompt_burst = 20          # prompts on the terminal back to back
    prompts_per_minute = 30    # then this many a minute

Everyone else keeps the defaults (docs/edged.md; the prompt limits: docs/security.md, "Prompts
on the terminal"). edged/config.py checks the table's shape.
"""

from __future__ import annotations

from dataclasses import dataclass

from bifente.edged.config import Config

__all__ = ["MAX_IN_FLIGHT", "PROMPTS_PER_MINUTE", "PROMPT_BURST", "ClientLimits", "limits_for"]

# Prompts a client may put on the shared terminal (PIN, signature, consent): a person answers
# one every few seconds at best, so 10 back to back, then one every 10 s, never hold anyone up
# while a client that loops on prompts gets `rate_limited` (docs/security.md).
PROMPT_BURST = 10
PROMPTS_PER_MINUTE = 6.0
# Calls running at once on one connection (edged/api/server.py): the next is read when one
# ends, so a client cannot queue unbounded work; system.info tells clients the number.
MAX_IN_FLIGHT = 8


@dataclass(frozen=True)
class ClientLimits:
    """What one client may do."""

    rate_per_second: float
    rate_burst: int
    max_connections: int
    prompt_burst: int = PROMPT_BURST
    prompts_per_minute: float = PROMPTS_PER_MINUTE


def limits_for(config: Config, client_name: str | None) -> ClientLimits:
    """The limits of a client (by its paired name; unpaired peers get the defaults)."""
    # Asked on every system.info and prompt: kept per configuration (frozen, never changed
    # while the daemon runs) and name. The key holds the configuration itself, so a new one
    # (a test's, a reload's) never finds an old entry.
    key = (id(config), client_name)
    hit = _MEMO.get(key)
    if hit is not None and hit[0] is config:
        return hit[1]
    base = ClientLimits(config.rate_per_second, config.rate_burst,
                        config.max_connections_per_client)
    extra = config.limits.get(client_name or "", {}) if client_name else {}
    limits = ClientLimits(float(extra.get("rate_per_second", base.rate_per_second)),
                          int(extra.get("rate_burst", base.rate_burst)),
                          int(extra.get("max_connections", base.max_connections)),
                          int(extra.get("prompt_burst", PROMPT_BURST)),
                          float(extra.get("prompts_per_minute", PROMPTS_PER_MINUTE)))
    if len(_MEMO) >= _MEMO_MAX:
        _MEMO.clear()
    _MEMO[key] = (config, limits)
    return limits


_MEMO: dict[tuple[int, str | None], tuple[Config, ClientLimits]] = {}
_MEMO_MAX = 1024
