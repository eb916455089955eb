"""What the API layer uses of the daemon and of a connection (Protocols the daemon satisfies).

Handlers take these, not `Daemon` and `Connection`, so the API never imports the daemon that
wires it: the daemon sits above the API, the API above the services (tests/test_layers.py).
"""

from __future__ import annotations

from typing import Any, Protocol

from bifente.edged.api.pairing import PairingManager
from bifente.edged.events import EventBus
from bifente.edged.services.container import Services
from bifente.edged.services.context import ServiceContext
from bifente.edged.services.signing import SignatureGate

__all__ = ["ApiContext", "Caller"]


class Caller(Protocol):
    """The connection a call came on: who calls, with which rights."""

    @property
    def client_id(self) -> str:
        """The client context: its certificate's fingerprint (or the peer, unpaired)."""
        ...

    @property
    def client_name(self) -> str | None:
        """The paired client's name."""
        ...

    @property
    def scopes(self) -> frozenset[str]:
        """The scopes granted at pairing (re-read on every call)."""
        ...

    @property
    def paired(self) -> bool:
        """True once the client presented an active certificate."""
        ...

    peer: str

    def subscribe(self, names: frozenset[str] | None) -> None:
        """Start sending these events on this connection."""
        ...


class ApiContext(ServiceContext, Protocol):
    """The daemon as the API layer sees it."""

    bus: EventBus
    pairing: PairingManager
    services: Services
    signatures: SignatureGate
    server: Any  # the RpcServer: disconnect_fingerprint() for clients.revoke

    def info(self) -> dict[str, Any]:
        """system.info."""
        ...

    async def audit_intent(self, event: str, conn: Any, **fields: Any) -> None:
        """Record what is about to happen, durably, before it happens (review L3)."""
        ...
