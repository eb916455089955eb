"""One place that turns errors into a one-line message and an exit code (STYLE.md habit 4)."""

from __future__ import annotations

from bifente.apdu.errors import (
    ApduError,
    CardError,
    CardRemoved,
    MalformedData,
    PinBlocked,
    PinCancelled,
    PinNotAvailable,
    SecurityStatusNotSatisfied,
    TransportError,
    UnexpectedCard,
    WrongPin,
)

__all__ = ["EXIT", "describe_error"]

# Exit codes: 0 ok, 1 refused/failed operation, 2 usage, 3 no card / reader, 4 PIN, 5 card error.
EXIT = {"usage": 2, "no_card": 3, "pin": 4, "card": 5, "failed": 1}


def describe_error(exc: BaseException) -> tuple[str, int]:
    """(message, exit code) for an error; never includes a PIN or a full NIR."""
    from bifente.edged.readers.pcsc import NoCard  # local: readers import pyscard

    if isinstance(exc, NoCard):
        return str(exc), EXIT["no_card"]
    if isinstance(exc, CardRemoved):
        return f"the card was removed: {exc}", EXIT["no_card"]
    if isinstance(exc, WrongPin):
        return str(exc), EXIT["pin"]
    if isinstance(exc, PinBlocked | PinCancelled | PinNotAvailable):
        return str(exc), EXIT["pin"]
    if isinstance(exc, SecurityStatusNotSatisfied):
        return "the card needs the PIN for this (verify it on the terminal first)", EXIT["pin"]
    if isinstance(exc, UnexpectedCard | MalformedData | ApduError):
        return f"card error: {exc}", EXIT["card"]
    if isinstance(exc, TransportError):
        return f"reader error: {exc}", EXIT["no_card"]
    if isinstance(exc, CardError):
        return str(exc), EXIT["card"]
    from bifente.client.client import RemoteError, RequestTooLarge
    from bifente.edged.state.audit import AuditError

    if isinstance(exc, AuditError):
        return str(exc), EXIT["failed"]
    if isinstance(exc, RemoteError):
        return f"refused by the terminal: {exc.message} ({exc.reason})", EXIT["failed"]
    from bifente.edged.cli.demo import DemoError

    if isinstance(exc, DemoError):
        return str(exc), EXIT["failed"]
    if isinstance(exc, RequestTooLarge):
        return str(exc), EXIT["usage"]
    if isinstance(exc, LookupError):
        return str(exc).strip("'\""), EXIT["usage"]
    if isinstance(exc, BrokenPipeError):
        return "the output was closed before the end (broken pipe)", EXIT["failed"]
    if isinstance(exc, ConnectionRefusedError):
        return f"cannot reach edged: connection refused ({exc.strerror or exc}); is it " \
               "running?", EXIT["failed"]
    if isinstance(exc, ConnectionError | TimeoutError):
        return f"cannot reach the terminal: {exc or type(exc).__name__}", EXIT["failed"]
    if isinstance(exc, ValueError | OverflowError):
        return str(exc), EXIT["usage"]
    if isinstance(exc, OSError):
        where = f"{exc.filename}: " if exc.filename else ""
        return f"{where}{exc.strerror or exc}", EXIT["failed"]
    return f"internal error ({type(exc).__name__}): {exc}; run with -vv for details", \
        EXIT["failed"]
