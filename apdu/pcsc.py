"""PC/SC transport through pyscard's `scard` module (PC/SC Workgroup spec part 5 API)."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from smartcard import scard

from bifente.apdu.errors import CardRemoved, TransportError

__all__ = ["PcscTransport", "ReaderState", "list_readers", "reader_states", "wait_for_change"]

log = logging.getLogger(__name__)

_PROTOCOLS = {
    "T0": scard.SCARD_PROTOCOL_T0,
    "T1": scard.SCARD_PROTOCOL_T1,
    "any": scard.SCARD_PROTOCOL_T0 | scard.SCARD_PROTOCOL_T1,
}
_DISPOSITIONS = {
    "leave": scard.SCARD_LEAVE_CARD,
    "reset": scard.SCARD_RESET_CARD,  # drops the card's security state (verified PIN)
    "unpower": scard.SCARD_UNPOWER_CARD,
}
# Errors that mean the card is gone or was reset under us: callers see CardRemoved.
_REMOVED = {
    scard.SCARD_W_REMOVED_CARD,
    scard.SCARD_E_NO_SMARTCARD,
    scard.SCARD_W_UNPOWERED_CARD,
    scard.SCARD_W_UNRESPONSIVE_CARD,
    scard.SCARD_W_RESET_CARD,
    scard.SCARD_E_READER_UNAVAILABLE,
}


def _check(hresult: int, what: str) -> None:
    if hresult == scard.SCARD_S_SUCCESS:
        return
    message = f"{what}: {scard.SCardGetErrorMessage(hresult)} (0x{hresult & 0xFFFFFFFF:08X})"
    if hresult in _REMOVED:
        raise CardRemoved(message)
    raise TransportError(message)


class _Context:
    """A PC/SC resource manager context; released on close."""

    def __init__(self) -> None:
        hresult, self.handle = scard.SCardEstablishContext(scard.SCARD_SCOPE_USER)
        _check(hresult, "cannot reach pcscd (is it running?)")

    def close(self) -> None:
        if self.handle is not None:
            scard.SCardReleaseContext(self.handle)
            self.handle = None

    def __enter__(self) -> _Context:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def list_readers() -> list[str]:
    """Names of the PC/SC readers pcscd knows, in its order."""
    with _Context() as ctx:
        hresult, readers = scard.SCardListReaders(ctx.handle, [])
        if hresult == scard.SCARD_E_NO_READERS_AVAILABLE:
            return []
        _check(hresult, "list readers")
        return list(readers)


@dataclass(frozen=True)
class ReaderState:
    """A reader and what is in it."""

    reader: str
    present: bool
    atr: bytes
    exclusive: bool = False


def _states(ctx: _Context, readers: list[str], timeout_ms: int,
            known: dict[str, int] | None = None) -> list[tuple[str, int, bytes]]:
    query = [(r, (known or {}).get(r, scard.SCARD_STATE_UNAWARE)) for r in readers]
    hresult, states = scard.SCardGetStatusChange(ctx.handle, timeout_ms, query)
    if hresult == scard.SCARD_E_TIMEOUT:
        return []
    _check(hresult, "reader status")
    return [(name, event, bytes(atr)) for name, event, atr in states]


def reader_states() -> list[ReaderState]:
    """Every reader with card presence and ATR, read now."""
    readers = list_readers()
    if not readers:
        return []
    with _Context() as ctx:
        return [
            ReaderState(name, bool(ev & scard.SCARD_STATE_PRESENT), atr,
                        bool(ev & scard.SCARD_STATE_EXCLUSIVE))
            for name, ev, atr in _states(ctx, readers, 0)
        ]


def wait_for_change(reader: str, present: bool, timeout: float) -> bool:
    """Block until the card in `reader` is present (or absent); False on timeout."""
    with _Context() as ctx:
        known: dict[str, int] = {}
        remaining_ms = int(timeout * 1000)
        step = 100
        while remaining_ms >= 0:
            states = _states(ctx, [reader], 0, known)
            for _name, event, _atr in states:
                if bool(event & scard.SCARD_STATE_PRESENT) == present:
                    return True
                known[reader] = event & ~scard.SCARD_STATE_CHANGED
            states = _states(ctx, [reader], min(step, max(remaining_ms, 0)), known)
            remaining_ms -= step
        return False


class PcscTransport:
    """One card in one PC/SC reader, connected shared, T=0 or T=1."""

    def __init__(self, reader: str, *, protocol: str = "any", disposition: str = "reset") -> None:
        if protocol not in _PROTOCOLS:
            raise ValueError(f"protocol must be one of {sorted(_PROTOCOLS)}")
        if disposition not in _DISPOSITIONS:
            raise ValueError(f"disposition must be one of {sorted(_DISPOSITIONS)}")
        self.reader = reader
        self._disposition = _DISPOSITIONS[disposition]
        self._ctx = _Context()
        self._card: int | None = None
        try:
            hresult, self._card, self._protocol = scard.SCardConnect(
                self._ctx.handle, reader, scard.SCARD_SHARE_SHARED, _PROTOCOLS[protocol])
            _check(hresult, f"connect to {reader!r}")
            hresult, _name, _state, _proto, atr = scard.SCardStatus(self._card)
            _check(hresult, "card status")
        except Exception:
            self._card = None
            self._ctx.close()
            raise
        self._atr = bytes(atr)

    @property
    def atr(self) -> bytes:
        """The ATR pcscd read at power on."""
        return self._atr

    @property
    def protocol(self) -> str:
        """The active protocol, 'T0' or 'T1'."""
        return "T1" if self._protocol == scard.SCARD_PROTOCOL_T1 else "T0"

    def transmit(self, command: bytes) -> bytes:
        """Send one APDU through pcscd."""
        if self._card is None:
            raise TransportError("transport is closed")
        hresult, response = scard.SCardTransmit(self._card, self._protocol, list(command))
        _check(hresult, "transmit")
        if len(response) < 2:
            # A reader that loses the card mid-command (vpcd when the card's socket closes,
            # some CCID readers on a contact bounce) returns no status word at all.
            raise CardRemoved("the card stopped answering mid-command (removed or mute)")
        return bytes(response)

    def close(self) -> None:
        """Disconnect (resetting the card by default, so a verified PIN does not linger)."""
        if self._card is not None:
            scard.SCardDisconnect(self._card, self._disposition)
            self._card = None
        self._ctx.close()

    def __enter__(self) -> PcscTransport:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
