"""Two simulated cards in the two vpcd slots, with pcscd running: the PC/SC test bench."""

from __future__ import annotations

import logging
from types import TracebackType

from bifente.apdu.pcsc import wait_for_change
from bifente.simulators.cps3 import Cps3Card
from bifente.simulators.pcscd import VPCD_READERS, PcscdHandle, ensure_pcscd
from bifente.simulators.vitale import Vitale2Card
from bifente.simulators.vpcd import VpcdBridge

__all__ = ["CPS_SLOT", "VITALE_SLOT", "SimulatedSlots"]

log = logging.getLogger(__name__)
CPS_SLOT, VITALE_SLOT = 0, 1


class SimulatedSlots:
    """pcscd + a CPS card in slot 0 and a Vitale card in slot 1 (either may be None)."""

    def __init__(self, cps: str | None = "gp", vitale: str | None = "family") -> None:
        self.cards: dict[int, Cps3Card | Vitale2Card | None] = {
            CPS_SLOT: Cps3Card(cps) if cps else None,
            VITALE_SLOT: Vitale2Card(vitale) if vitale else None,
        }
        self.bridges: dict[int, VpcdBridge] = {}
        self.pcscd: PcscdHandle | None = None

    def reader(self, slot: int) -> str:
        """The PC/SC reader name of a slot."""
        return VPCD_READERS[slot]

    def start(self, *, pcscd: bool = True) -> SimulatedSlots:
        """Start pcscd if needed (pcscd=False: the caller runs it) and insert the cards;
        returns once PC/SC sees them."""
        if pcscd:
            self.pcscd = ensure_pcscd()
        for slot in (CPS_SLOT, VITALE_SLOT):
            if self.cards[slot] is not None:
                self.insert(slot)
        return self

    def insert(self, slot: int, card: Cps3Card | Vitale2Card | None = None,
               timeout: float = 5.0) -> None:
        """Insert the slot's card (or a new one) and wait until pcscd reports it."""
        if card is not None:
            self.remove(slot)
            self.cards[slot] = card
        current = self.cards[slot]
        if current is None:
            raise ValueError(f"no card for slot {slot}")
        bridge = self.bridges.get(slot)
        if bridge is None or bridge.card is not current:
            bridge = self.bridges[slot] = VpcdBridge(current, slot=slot)
        if not bridge.inserted and not wait_for_change(self.reader(slot), False, timeout):
            # pcscd still shows a card there (a previous one not yet seen leaving, or another
            # process's): inserting now would make us talk to a stale or foreign card.
            raise TimeoutError(f"slot {slot} is still occupied ({self.reader(slot)})")
        bridge.insert()
        if not wait_for_change(self.reader(slot), True, timeout):
            # Seen in CI after a card vanished mid-command: the new connection was accepted
            # but vpcd never reported the card. Re-seat it once, as a person would.
            log.warning("slot %d: pcscd did not see the card; re-seating it", slot)
            bridge.remove()
            wait_for_change(self.reader(slot), False, timeout)
            bridge.insert()
            if not wait_for_change(self.reader(slot), True, timeout):
                raise TimeoutError(f"pcscd did not see the card in slot {slot} "
                                   f"(connected to vpcd: {bridge.inserted})")

    def remove(self, slot: int, *, wait: bool = True, timeout: float = 5.0) -> None:
        """Pull the slot's card and (by default) wait until pcscd reports it gone."""
        bridge = self.bridges.get(slot)
        if bridge is None or not bridge.inserted:
            return
        bridge.remove()
        if wait and not wait_for_change(self.reader(slot), False, timeout):
            raise TimeoutError(f"pcscd still sees a card in slot {slot}")

    def stop(self) -> None:
        """Remove every card, then stop pcscd if we started it."""
        for slot in list(self.bridges):
            try:
                self.remove(slot)  # wait, so the next user of the slot finds it empty
            except TimeoutError:
                log.warning("slot %d: pcscd did not report the removal in time", slot)
        if self.pcscd is not None:
            self.pcscd.stop()
            self.pcscd = None

    def __enter__(self) -> SimulatedSlots:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
