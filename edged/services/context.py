"""What a service may use of the daemon: cards, terminal, audit, config, keys, clients.

The daemon satisfies this Protocol; services never import the daemon or the API, so the
layers point one way: api -> services -> readers / state (tests/test_layers.py).
"""

from __future__ import annotations

from typing import Any, Protocol

from bifente.edged.config import Config
from bifente.edged.readers.manager import SlotRegistry
from bifente.edged.readers.ui import TerminalUI
from bifente.edged.state.audit import AuditLog
from bifente.edged.state.clients import ClientRegistry
from bifente.edged.state.keystore import Keystore
from bifente.edged.state.keywrap import KeyWrapper
from bifente.edged.state.space import SpaceGuard

__all__ = ["EDGED", "ServiceContext", "audit_actor"]

EDGED = "edged"  # the actor of what the daemon does on its own (no caller)


def audit_actor(name: str | None, origin: str | None = None) -> str:
    """Who an audit record names: the authenticated name, else `unpaired@<origin>`.

    `name` is who proved it: a paired client's name, a proxy user's login. Anyone else is
    `unpaired@` and where the call came from (`origin`: the peer address, or the client
    context when only that is known), or plain `unpaired` when even that is unknown. One form
    for every caller that has not proved who it is, the form the aggregated records of
    unpaired peers already use (edged/state/audit_budget.py), so that one search of the log
    finds them all; never an empty actor, and never a name the caller could choose.
    """
    if name:
        return name
    return f"unpaired@{origin}" if origin else "unpaired"


class ServiceContext(Protocol):
    """The narrow view of the daemon a service gets."""

    config: Config
    slots: SlotRegistry
    ui: TerminalUI | None
    keystore: Keystore
    key_wrapper: KeyWrapper
    audit: AuditLog
    clients: ClientRegistry  # who a client context is, for the audit's actor
    space: SpaceGuard  # refuses new durable work when the state's disk is nearly full

    def audit_event(self, event: str, conn: Any, **fields: Any) -> None:
        """Append to the audit chain; `conn` (a caller, or None for edged itself) is the actor
        (`audit_actor`)."""
        ...
