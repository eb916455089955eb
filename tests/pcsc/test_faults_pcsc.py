"""Cards pulled mid-read and other faults through the real PC/SC stack: typed errors, no hangs."""

from __future__ import annotations

import time

import pytest

from bifente.apdu.cps import CpsSession
from bifente.apdu.errors import CardRemoved, TransportError
from bifente.apdu.pcsc import PcscTransport
from bifente.apdu.protocol import CardProtocol
from bifente.apdu.vitale import VitaleSession

pytestmark = pytest.mark.pcsc


def test_card_vanishing_mid_read_is_card_removed(vitale, slots) -> None:
    _card, protocol = vitale("family")
    slots.bridges[1].vanish_at_apdu = slots.bridges[1].apdus + 6  # in the middle of the read
    started = time.monotonic()
    with pytest.raises(CardRemoved):
        VitaleSession(protocol).read()
    assert time.monotonic() - started < 5


def test_card_pulled_between_commands_is_card_removed(cps, slots) -> None:
    _card, protocol = cps("gp")
    session = CpsSession(protocol)
    session.identity()
    slots.remove(0)
    with pytest.raises(CardRemoved):
        session.identity()


def test_connecting_to_an_empty_reader_is_a_clear_error(slots) -> None:
    with pytest.raises(TransportError, match="connect to 'Virtual PCD 00 00'"):
        PcscTransport(slots.reader(0))


def test_reinserted_card_works_again(cps, slots) -> None:
    cps("gp")
    slots.remove(0)
    slots.insert(0)
    with PcscTransport(slots.reader(0)) as transport:
        assert CpsSession(CardProtocol(transport)).pin_status().tries_left == 3
