"""The terminal as a reader: keeps the link up, reports cards and the connection state."""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable, Sequence

from bifente.edged.readers.link import (
    Event,
    EventKind,
    SlotState,
    SlotStatus,
    SlotStatusResponse,
)
from bifente.edged.readers.terminal.client import (
    REMOVED_CODES,
    REQUEST_TIMEOUT_S,
    TerminalClosed,
    TerminalError,
    TerminalLink,
    TerminalRestarted,
    TerminalTimeout,
)
from bifente.edged.readers.terminal.transport import TerminalTransport
from bifente.edged.readers.terminal.ui import TerminalUI, identity_text

log = logging.getLogger(__name__)

class TerminalReader:
    """Keeps a link to the terminal up and reports cards and connection state.

    on_card(slot, present, atr) when a card is seen (ATR read by a power on and off) or
    leaves; on_state(connected) when the link comes up or goes down (its cards are then
    reported gone). Reconnects with capped exponential backoff; a keepalive SLOT_STATUS
    notices a terminal that restarted (HANDSHAKE) or stopped answering.
    """

    def __init__(self, path: str, *, on_card: Callable[[int, bool, bytes], None] | None = None,
                 on_state: Callable[[bool], None] | None = None,
                 on_cancel: Callable[[], None] | None = None,
                 on_pair_request: Callable[[], None] | None = None,
                 timeout: float = REQUEST_TIMEOUT_S,
                 keepalive: float = 2.0, backoff: tuple[float, float] = (0.5, 10.0),
                 fingerprint: Callable[[], str] | None = None) -> None:
        self.path = path
        self.fingerprint = fingerprint  # the daemon's, shown by the terminal on F1
        self.on_card = on_card
        self.on_state = on_state
        self.on_cancel = on_cancel
        self.on_pair_request = on_pair_request  # F1 on the fingerprint screen (review L1)
        self.timeout = timeout
        self.keepalive = keepalive
        self.backoff = backoff
        self.link: TerminalLink | None = None
        self.present: dict[int, bytes] = {}  # slot -> ATR of the cards reported present
        self.connects = 0
        self._events: queue.Queue[Event | Exception] = queue.Queue()
        self._stop = threading.Event()
        self._connected = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"terminal {path}", daemon=True)

    @property
    def connected(self) -> bool:
        """True while the link is up."""
        return self._connected.is_set()

    def start(self) -> TerminalReader:
        """Start connecting in the background."""
        self._thread.start()
        return self

    def wait_connected(self, timeout: float) -> bool:
        """Block until connected (tests, CLI); False on timeout."""
        return self._connected.wait(timeout)

    def stop(self) -> None:
        """Stop reconnecting, close the link; idempotent."""
        self._stop.set()
        self._events.put(TerminalClosed("stopping"))
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)
        link, self.link = self.link, None
        if link is not None:
            link.close()

    def abort_prompt(self) -> None:
        """End the prompt the terminal shows, if any (a PIN entry or a confirmation then
        fails with ABORTED); nothing when the link is down."""
        link = self.link
        if link is None or not self.connected:
            return
        try:
            link.abort()
        except TerminalError as exc:
            log.debug("abort at stop: %s", exc)

    def transport(self, slot: int) -> TerminalTransport:
        """A transport on a slot (the arbiter's opener); TerminalClosed when disconnected."""
        link = self.link
        if link is None or not self.connected:
            raise TerminalClosed(f"terminal {self.path} is not connected")
        return TerminalTransport(link, slot)

    def pair_window(self, seconds: int) -> None:
        """Show a pairing window's countdown on the terminal (0: it closed); blocking."""
        link = self.link
        if link is None or not self.connected:
            raise TerminalClosed(f"terminal {self.path} is not connected")
        link.pair_window(seconds)

    def ui(self) -> TerminalUI:
        """The terminal's display and keys over the current link (TerminalClosed if none)."""
        return TerminalUI(_LiveLink(self))  # type: ignore[arg-type]

    def _run(self) -> None:
        delay = self.backoff[0]
        while not self._stop.is_set():
            try:
                self._session()
                delay = self.backoff[0]
            except TerminalError as exc:
                log.info("terminal %s: %s; retrying in %.1f s", self.path, exc, delay)
            except Exception:  # a bug here must not end reconnection for good
                log.exception("terminal %s: unexpected error; retrying in %.1f s", self.path,
                              delay)
            self._down()
            if self._stop.wait(delay):
                return
            delay = min(delay * 2, self.backoff[1])

    def _session(self) -> None:
        link = TerminalLink(self.path, timeout=self.timeout, on_event=self._events.put,
                            on_lost=self._events.put)
        link.open()
        self.link = link
        if self.fingerprint is not None:
            link.identity(identity_text(self.fingerprint()))
        self.connects += 1
        self._connected.set()
        if self.on_state is not None:
            self.on_state(True)
        self._sync(link.slot_status())
        while not self._stop.is_set():
            try:
                item = self._events.get(timeout=self.keepalive)
            except queue.Empty:
                answer = link.try_request(SlotStatus())  # None: the link is busy, so alive
                if isinstance(answer, SlotStatusResponse):
                    self._sync(answer.states)
                continue
            if isinstance(item, Exception):
                raise item if isinstance(item, TerminalError) else TerminalClosed(str(item))
            if item.kind == EventKind.CANCEL_PRESSED:
                if self.on_cancel is not None:
                    self.on_cancel()
            elif item.kind == EventKind.PAIR_REQUESTED:
                if self.on_pair_request is not None:
                    self.on_pair_request()
            elif item.kind == EventKind.CARD_INSERTED:
                self._card_in(link, item.slot)
            elif item.kind in (EventKind.CARD_REMOVED, EventKind.SLOT_FAULT):
                self._card_out(item.slot)
                if item.kind == EventKind.SLOT_FAULT:
                    log.warning("terminal slot %d: interface chip fault", item.slot)

    def _sync(self, states: Sequence[SlotState]) -> None:
        link = self.link
        for slot, state in enumerate(states):
            if state == SlotState.EMPTY:
                self._card_out(slot)
            elif slot not in self.present and link is not None:
                self._card_in(link, slot)

    def _card_in(self, link: TerminalLink, slot: int) -> None:
        if slot in self.present:
            self._card_out(slot)  # a new card without a removal seen in between
        try:
            atr = link.power_on(slot).atr
            link.power_off(slot)
        except TerminalRestarted:
            raise
        except TerminalTimeout as exc:
            # The slot is BUSY under a PIN prompt (a card swapped meanwhile), or the terminal
            # is slow: not seen yet; the next keepalive's SLOT_STATUS tries again.
            log.info("terminal slot %d: card not read yet: %s", slot, exc)
            return
        except TerminalError as exc:
            if exc.code in REMOVED_CODES:
                return
            log.warning("terminal slot %d: card does not answer: %s", slot, exc)
            atr = b""
        self.present[slot] = atr
        if self.on_card is not None:
            self.on_card(slot, True, atr)

    def _card_out(self, slot: int) -> None:
        if self.present.pop(slot, None) is not None and self.on_card is not None:
            self.on_card(slot, False, b"")

    def _down(self) -> None:
        link, self.link = self.link, None
        was = self._connected.is_set()
        self._connected.clear()
        if link is not None:
            link.close()
        for slot in list(self.present):
            self._card_out(slot)
        while not self._events.empty():
            self._events.get_nowait()
        if was and self.on_state is not None:
            self.on_state(False)


class _LiveLink:
    """Forwards to whichever link the reader has now (the UI outlives reconnections)."""

    def __init__(self, reader: TerminalReader) -> None:
        self._reader = reader

    def __getattr__(self, name: str) -> object:
        link = self._reader.link
        if link is None:
            raise TerminalClosed(f"terminal {self._reader.path} is not connected")
        return getattr(link, name)
