"""Domain errors of the services: a stable `reason`, a `family` and data (api/ maps them).

The JSON-RPC layer turns a family into an error code by lookup (edged/api/errors.py); a
service never builds a JSON-RPC error itself.
"""

from __future__ import annotations

import enum
from typing import Any

__all__ = ["Family", "NoCard", "ServiceError", "TerminalUnavailable"]


class Family(enum.StrEnum):
    """Which kind of refusal: the API gives each family its own error code."""

    CARD = "card"
    PIN = "pin"
    CONSENT = "consent"
    MAIL = "mail"
    DMP = "dmp"
    PAIRING = "pairing"
    FORBIDDEN = "forbidden"
    RATE_LIMITED = "rate_limited"


class ServiceError(Exception):
    """A refusal with a machine reason (stable for clients), a message and data."""

    def __init__(self, family: Family, reason: str, message: str, **data: Any) -> None:
        super().__init__(message)
        self.family, self.reason, self.message, self.data = family, reason, message, data


class NoCard(ServiceError):
    """No card of the kind the operation needs is inserted."""

    def __init__(self, message: str) -> None:
        super().__init__(Family.CARD, "no_card", message)


class TerminalUnavailable(ServiceError):
    """The operation needs the terminal's display and keys, and there is no terminal."""

    def __init__(self, message: str) -> None:
        super().__init__(Family.CONSENT, "no_terminal", message)
