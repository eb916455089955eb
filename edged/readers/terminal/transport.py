"""One terminal slot as apdu's Transport and SecurePinEntry (the PIN is typed on the terminal)."""

from __future__ import annotations

import logging
import re

from bifente.apdu.errors import CardRemoved, PinCancelled, TransportError
from bifente.edged.readers.link import (
    TRIES_UNKNOWN,
    ErrorCode,
    PinEncoding,
    PinField,
    PromptKind,
    SecureChange,
    SecureUnblock,
    SecureVerify,
)
from bifente.edged.readers.pcsc import NoCard
from bifente.edged.readers.terminal.client import (
    CANCELLED_CODES,
    REMOVED_CODES,
    TerminalError,
    TerminalLink,
    u8_seconds,
)


def _card_error(exc: TerminalError, slot: int) -> Exception:
    if exc.code in REMOVED_CODES:
        return CardRemoved(f"terminal slot {slot}: the card was removed ({exc})")
    if exc.code in CANCELLED_CODES:
        return PinCancelled(CANCELLED_CODES[ErrorCode(exc.code)])
    return exc


# bifente.apdu.cps words the prompt "PIN CPS (3 left)"; the terminal writes its own prompt text and
# takes only the count from the host (SecurePinEntry passes it inside the prompt string).
_TRIES = re.compile(r"\((\d+) left\)")


def _tries(prompt: str) -> int:
    found = _TRIES.search(prompt)
    return min(int(found.group(1)), 15) if found else TRIES_UNKNOWN


log = logging.getLogger(__name__)


class TerminalTransport:
    """One card slot of the terminal as apdu's Transport and SecurePinEntry."""

    # The firmware verifies the PUK and resets the PIN itself (IAS-ECC, RESET RETRY COUNTER
    # P1 02), from one prompt: bifente.apdu.cps.CpsSession.unblock_pin asks for that.
    unblocks_in_one_prompt = True

    def __init__(self, link: TerminalLink, slot: int) -> None:
        self.link = link
        self.slot = slot
        self._closed = False
        try:
            answer = link.power_on(slot)
        except TerminalError as exc:
            if exc.code == ErrorCode.NO_CARD:
                raise NoCard(f"no card in terminal slot {slot} ({link.path})") from None
            raise _card_error(exc, slot) from None
        self._atr = answer.atr
        self.protocol = answer.protocol
        self.fidi = answer.fidi  # TA1-coded Fi/Di the terminal runs the card at

    @property
    def atr(self) -> bytes:
        """The ATR the terminal read at power on."""
        return self._atr

    def transmit(self, command: bytes) -> bytes:
        """Send one APDU; CardRemoved if the card left, TerminalError otherwise."""
        if self._closed:
            raise TransportError("transport is closed")
        try:
            return self.link.transmit(self.slot, command)
        except TerminalError as exc:
            raise _card_error(exc, self.slot) from None

    def close(self) -> None:
        """Power the card off (a verified PIN does not outlive the transport); idempotent."""
        if self._closed:
            return
        self._closed = True
        try:
            self.link.power_off(self.slot)
        except TerminalError as exc:
            log.debug("terminal slot %d: power off failed: %s", self.slot, exc)

    def __enter__(self) -> TerminalTransport:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _secure(self, msg: SecureVerify | SecureChange | SecureUnblock) -> int:
        if self._closed:
            raise TransportError("transport is closed")
        try:
            return self.link.secure(msg)
        except TerminalError as exc:
            raise _card_error(exc, self.slot) from None

    def secure_verify(self, template: bytes, *, min_length: int, max_length: int,
                      pad_to: int, pad_byte: int, prompt: str, timeout: float) -> int:
        """PIN typed on the terminal keypad into a VERIFY built there; the SW (or PinCancelled).

        The terminal shows its own "PIN carte CPS" prompt and refuses (TerminalError
        PIN_POLICY) a template, slot or card its PIN policy does not allow.
        """
        cla, ins, p1, p2 = template[:4]
        pin = PinField(min_length, max_length, pad_byte, pad_to, PinEncoding.ASCII)
        return self._secure(SecureVerify(self.slot, cla, ins, p1, p2, u8_seconds(timeout),
                                         PromptKind.PIN_CPS, _tries(prompt), pin))

    def secure_change(self, template: bytes, *, current_length: tuple[int, int],
                      new_length: tuple[int, int], pad_to: int, pad_byte: int, prompt: str,
                      timeout: float) -> int:
        """CHANGE REFERENCE DATA with old and new PIN typed (new one twice) on the terminal."""
        return self._two(SecureChange, template, current_length, new_length, pad_to, pad_byte,
                         prompt, timeout)

    def secure_unblock(self, template: bytes, *, current_length: tuple[int, int],
                       new_length: tuple[int, int], pad_to: int, pad_byte: int, prompt: str,
                       timeout: float) -> int:
        """RESET RETRY COUNTER with the PUK and a new PIN typed on the terminal."""
        return self._two(SecureUnblock, template, current_length, new_length, pad_to,
                         pad_byte, prompt, timeout)

    def _two(self, cls: type[SecureChange], template: bytes, current: tuple[int, int],
             new: tuple[int, int], pad_to: int, pad_byte: int, prompt: str,
             timeout: float) -> int:
        cla, ins, p1, p2 = template[:4]
        fields = [PinField(lo, hi, pad_byte, pad_to, PinEncoding.ASCII) for lo, hi in (current,
                                                                                      new)]
        return self._secure(cls(self.slot, cla, ins, p1, p2, u8_seconds(timeout),
                                PromptKind.PIN_CPS, _tries(prompt), fields[0], fields[1]))
