"""A small card operating system: file system, security environment, INS dispatch."""

from simulators.cardos.card import Card, CardStatus, Handler
from simulators.cardos.fs import DF, EF, AccessRule, RecordEF
from simulators.cardos.security import Pin, SecurityEnvironment

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
