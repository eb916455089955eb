"""The one seam below the protocol layer: something that moves APDU bytes to a card and back."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

__all__ = ["InProcessTransport", "SecurePinChange", "SecurePinEntry", "SimulatedCard", "Transport"]


@runtime_checkable
class Transport(Protocol):
    """Moves one command APDU to the card and returns its raw response (data || SW1 SW2)."""

    @property
    def atr(self) -> bytes:
        """The card's answer to reset."""
        ...

    def transmit(self, command: bytes) -> bytes:
        """Send one command APDU, return the raw response; raises TransportError/CardRemoved."""
        ...

    def close(self) -> None:
        """Release the card; idempotent."""
        ...


class SimulatedCard(Protocol):
    """What an in-process card offers (our simulators implement it)."""

    atr: bytes

    def transmit(self, command: bytes) -> bytes:
        """Process one command APDU."""
        ...


class InProcessTransport:
    """Talks to a simulated card object in the same process (codec unit tests only)."""

    def __init__(self, card: SimulatedCard) -> None:
        self._card = card
        self.count = 0

    @property
    def atr(self) -> bytes:
        """The card's ATR."""
        return self._card.atr

    def transmit(self, command: bytes) -> bytes:
        """Hand the bytes to the card."""
        self.count += 1
        return self._card.transmit(bytes(command))

    def close(self) -> None:
        """Nothing to release."""


@runtime_checkable
class SecurePinEntry(Protocol):
    """A transport whose reader collects the PIN itself (terminal keypad, PC/SC PIN pad).

    The host gives a VERIFY template; the reader prompts, builds the APDU with the digits
    and returns only the card's status word, so the PIN never reaches the host.
    """

    def secure_verify(self, template: bytes, *, min_length: int, max_length: int,
                      pad_to: int, pad_byte: int, prompt: str, timeout: float) -> int:
        """Collect a PIN on the reader and present it; returns SW1SW2 (or raises PinCancelled)."""
        ...


@runtime_checkable
class SecurePinChange(Protocol):
    """A reader that also changes and unblocks PINs itself (the terminal keypad).

    The host gives the command template and both codes' lengths; the reader asks for the
    current code (or the PUK) and the new one twice, builds the APDU (each code padded with
    pad_byte to pad_to bytes) and returns only the status word.
    """

    def secure_change(self, template: bytes, *, current_length: tuple[int, int],
                      new_length: tuple[int, int], pad_to: int, pad_byte: int, prompt: str,
                      timeout: float) -> int:
        """CHANGE REFERENCE DATA; returns SW1SW2 (or raises PinCancelled)."""
        ...

    def secure_unblock(self, template: bytes, *, current_length: tuple[int, int],
                       new_length: tuple[int, int], pad_to: int, pad_byte: int, prompt: str,
                       timeout: float) -> int:
        """RESET RETRY COUNTER with the PUK; returns SW1SW2 (or raises PinCancelled)."""
        ...
