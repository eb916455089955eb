"""Errors raised by the card stack: raised low, carrying data, mapped once at the edge."""

from __future__ import annotations

from bifente.apdu.sw import describe

__all__ = [
    "ApduError",
    "AuthMethodBlocked",
    "CardError",
    "CardRemoved",
    "ConditionsNotSatisfied",
    "FileNotFound",
    "MalformedData",
    "PinBlocked",
    "PinCancelled",
    "PinNotAvailable",
    "ProtocolError",
    "SecurityStatusNotSatisfied",
    "TransportError",
    "UnexpectedCard",
    "WrongPin",
    "error_for_sw",
]


class CardError(Exception):
    """Base of every error the card stack raises."""


class MalformedData(CardError, ValueError):
    """Bytes that do not parse (APDU, TLV, ATR, card data); says where and why."""


class TransportError(CardError):
    """The transport could not move bytes (reader gone, socket closed, timeout)."""


class CardRemoved(TransportError):
    """The card left the reader while we were talking to it."""


class ProtocolError(CardError):
    """The card broke the protocol (too many 61xx, inconsistent chaining, ...)."""


class UnexpectedCard(CardError):
    """The card in the reader is not the kind the session expects."""


class ApduError(CardError):
    """The card answered a status word other than 9000."""

    def __init__(self, sw: int, message: str | None = None) -> None:
        self.sw = sw
        super().__init__(message or describe(sw))


class SecurityStatusNotSatisfied(ApduError):
    """6982: the operation needs a verified PIN (or other security condition)."""


class ConditionsNotSatisfied(ApduError):
    """6985: conditions of use not satisfied (e.g. no MSE before PSO)."""


class FileNotFound(ApduError):
    """6A82: file or application not found."""


class AuthMethodBlocked(ApduError):
    """6983: the authentication method (key, PIN) is blocked."""


class PinBlocked(AuthMethodBlocked):
    """The PIN is blocked (no tries left); it needs the PUK."""

    def __init__(self, sw: int = 0x6983) -> None:
        super().__init__(sw, "PIN blocked: unblock it with the PUK")


class WrongPin(ApduError):
    """63Cx after VERIFY: the PIN was wrong; `tries_left` attempts remain."""

    def __init__(self, tries_left: int, sw: int | None = None) -> None:
        self.tries_left = tries_left
        super().__init__(
            sw if sw is not None else 0x63C0 | tries_left,
            f"wrong PIN, {tries_left} tr{'y' if tries_left == 1 else 'ies'} left",
        )


_BY_SW: dict[int, type[ApduError]] = {
    0x6982: SecurityStatusNotSatisfied,
    0x6983: AuthMethodBlocked,
    0x6985: ConditionsNotSatisfied,
    0x6A82: FileNotFound,
}


def error_for_sw(sw: int) -> ApduError:
    """Return the most specific ApduError for a status word (not raising it)."""
    return _BY_SW.get(sw, ApduError)(sw)


class PinCancelled(CardError):
    """The holder cancelled PIN entry (or it timed out); the card was not asked."""


class PinNotAvailable(CardError):
    """No safe way to get the PIN here (no PIN pad, no local source): the operation is refused."""
