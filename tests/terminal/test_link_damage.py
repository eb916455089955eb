"""A damaged terminal link (bits flipped, chunks dropped, doubled, bytes inserted, both ways):
no wrong APDU ever reaches a card, every read returns the right data or a typed error."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from bifente.apdu.errors import CardError
from bifente.apdu.protocol import CardProtocol
from bifente.apdu.vitale import VitaleSession
from bifente.edged.readers.terminal import TerminalError, TerminalLink, TerminalTransport
from bifente.simulators.cps3 import Cps3Card
from bifente.simulators.terminal import VirtualTerminal
from bifente.simulators.vitale import Vitale2Card


class RecordingCard:
    """A simulated card that remembers every APDU it was given (what reached the chip)."""

    def __init__(self, card: Cps3Card | Vitale2Card) -> None:
        self.card = card
        self.atr = card.atr
        self.apdus: list[bytes] = []
        self._lock = threading.Lock()

    def power_on(self) -> bytes:
        return self.card.power_on()

    def power_off(self) -> None:
        self.card.power_off()

    def transmit(self, raw: bytes) -> bytes:
        with self._lock:
            self.apdus.append(bytes(raw))
        return self.card.transmit(raw)


@pytest.fixture(scope="module")
def damaged(firmware_tools: None) -> Iterator[tuple[VirtualTerminal, RecordingCard]]:
    vitale = RecordingCard(Vitale2Card("family"))
    with VirtualTerminal(RecordingCard(Cps3Card("gp")), vitale) as terminal:  # type: ignore[arg-type]
        yield terminal, vitale


def _read(link: TerminalLink) -> object:
    with TerminalTransport(link, 1) as transport:
        card = VitaleSession(CardProtocol(transport)).read()
    return [(b.nir, b.first_name, b.birth_date) for b in card.beneficiaries]


@pytest.mark.parametrize("rate, reads", [(0.05, 12), (0.15, 6)])
def test_damage_never_makes_a_wrong_apdu_or_wrong_data(damaged, rate: float,
                                                       reads: int) -> None:
    vt, vitale = damaged
    vt.damage_link(0)
    with TerminalLink(vt.pty_path) as link:
        baseline = _read(link)
    sent_by_host = set(vitale.apdus)  # what a clean read sends (retries send the same)
    vitale.apdus.clear()
    outcomes = {"same": 0, "typed_error": 0}
    vt.damaged.clear()
    vt.damage_link(rate, seed=int(rate * 1000))
    try:
        for _ in range(reads):
            try:
                with TerminalLink(vt.pty_path) as link:
                    result = _read(link)
            except (TerminalError, CardError, TimeoutError, OSError):
                outcomes["typed_error"] += 1
                continue
            assert result == baseline  # never wrong data
            outcomes["same"] += 1
    finally:
        vt.damage_link(0)
    wrong = [a.hex() for a in vitale.apdus if a not in sent_by_host]
    assert wrong == []  # no APDU the host did not send ever reached the card
    assert sum(vt.damaged.values()) > 0  # the damage really happened
    print(f"rate={rate} reads={reads} outcomes={outcomes} damage={dict(vt.damaged)} "
          f"apdus_at_card={len(vitale.apdus)}")
    with TerminalLink(vt.pty_path) as link:  # once the damage stops, all is well again
        assert _read(link) == baseline
