"""A small card operating system: file system, security environment, INS dispatch."""

from bifente.simulators.cardos.card import Card, CardStatus, Handler
from bifente.simulators.cardos.fs import DF, EF, AccessRule, RecordEF
from bifente.simulators.cardos.security import Pin, SecurityEnvironment

__all__ = [
    "DF",
    "EF",
    "AccessRule",
    "Card",
    "CardStatus",
    "Handler",
    "Pin",
    "RecordEF",
    "SecurityEnvironment",
]
