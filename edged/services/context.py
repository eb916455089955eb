"""What a service may use of the daemon: cards, terminal, audit, config, keys, clients.

The daemon satisfies this Protocol; services never import the daemon or the API, so the
layers point one way: api -> services -> readers / state (tests/test_layers.py).
"""

from __future__ import annotations

from typing import Any, Protocol

from edged.config import Config
from edged.readers.manager import SlotRegistry
from edged.readers.ui import TerminalUI
from edged.state.audit import AuditLog
from edged.state.clients import ClientRegistry
from edged.state.keystore import Keystore
from edged.state.keywrap import KeyWrapper
from edged.state.space import SpaceGuard

__all__ = ["ServiceContext"]


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
        """Append to the audit chain; `conn` (a caller, or None for edged itself) is the actor."""
        ...
