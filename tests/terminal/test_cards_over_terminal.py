"""End to end over the pty: both cards read, the PIN typed on the keypad, a signature, PIN
change and unblock, three wrong PINs. The firmware runs on MicroPython (192K heap)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
from cryptography.hazmat.primitives.asymmetric.padding import PKCS1v15
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey
from cryptography.hazmat.primitives.hashes import SHA256

from bifente.apdu.cps import CpsSession
from bifente.apdu.cps_spec import KeyRef
from bifente.apdu.errors import PinBlocked, PinCancelled, WrongPin
from bifente.apdu.protocol import CardProtocol
from bifente.apdu.transport import InProcessTransport, SecurePinChange, SecurePinEntry
from bifente.apdu.vitale import VitaleSession
from bifente.edged.readers.link import (
    Frame,
    FrameParser,
    MessageType,
    PinResult,
    SecureVerify,
    decode_message,
)
from bifente.edged.readers.terminal import TerminalLink, TerminalTransport
from bifente.simulators.cps3 import Cps3Card
from bifente.simulators.terminal import VirtualTerminal
from bifente.simulators.vitale import Vitale2Card

PIN = "1234"
PUK = "12345678"


@contextlib.contextmanager
def typing(vt: VirtualTerminal, *keys: str) -> Iterator[None]:
    """Someone at the desk types these keys, each once a prompt is waiting for it."""
    with ThreadPoolExecutor(1) as pool:
        done = pool.submit(vt.press, *keys, wait=15)
        yield
        done.result(timeout=30)


def frames(chunks: list[bytes]) -> list[Frame]:
    parser = FrameParser()
    out = [item for chunk in chunks for item in parser.feed(chunk)]
    return [f for f in out if isinstance(f, Frame)]


def test_both_cards_read_over_the_terminal(vt: VirtualTerminal, link: TerminalLink) -> None:
    vt.wire_stats(1, reset=True)
    with TerminalTransport(link, 0) as cps:
        session = CpsSession(CardProtocol(cps))
        identity, status = session.identity(), session.pin_status()
    assert identity.serial == "80250000010000000101"
    assert (identity.holder.name, identity.holder.first_name) == ("MARTIN", "Claire")
    assert (status.tries_left, status.max_tries) == (3, 3)
    with TerminalTransport(link, 1) as vitale:
        assert vitale.fidi == 0x13  # PPS reached the card's TA1: Fi 372, Di 4
        card = VitaleSession(CardProtocol(vitale)).read()
    # The same card read in process gives the same answer: the T=0 path changes nothing.
    assert card == VitaleSession(CardProtocol(InProcessTransport(Vitale2Card("family")))).read()
    assert len(card.beneficiaries) == 4
    stats = vt.wire_stats(1)
    assert stats.framing_errors == 0 and stats.chars.get((372, 4), 0) > 500
    assert stats.pps_chars == 8  # request + echo


def test_pin_typed_on_the_keypad_never_crosses_the_link(vt: VirtualTerminal,
                                                        link: TerminalLink) -> None:
    seen_by_host: list[tuple[str, bytes]] = []
    with TerminalTransport(link, 0) as cps:
        session = CpsSession(CardProtocol(cps))
        assert isinstance(cps, SecurePinEntry)
        screens_before = len(vt.screens)
        link.tap = lambda direction, data: seen_by_host.append((direction, data))
        with vt.capture() as wire, typing(vt, PIN, "OK"):
            session.verify_pin(None, timeout=20)
        assert vt.screen_lines() == ["Code correct"]
        session.situations()  # the card is verified: protected files read
    sent = [data for d, data in wire if d == "host"]
    received = [data for d, data in wire if d == "term"]
    # The capture is not vacuous: it holds the SECURE_VERIFY and its PIN_RESULT.
    kinds = [f.type for f in frames(sent)]
    assert MessageType.SECURE_VERIFY in kinds
    answers = [decode_message(f) for f in frames(received)]
    assert PinResult(0x9000) in answers
    verify = next(decode_message(f) for f in frames(sent) if f.type == MessageType.SECURE_VERIFY)
    assert isinstance(verify, SecureVerify) and (verify.ins, verify.p2) == (0x20, 0x01)
    every_byte = b"".join(sent) + b"||" + b"".join(received)
    for secret in (PIN.encode(), PIN.encode() + b"\xff" * 4, bytes.fromhex(PIN),
                   PIN.encode()[:3], PIN.encode()[1:]):
        assert secret not in every_byte, secret
    # edged's own view of the wire holds the same bytes.
    assert b"".join(sent) in b"".join(d for k, d in seen_by_host if k == "host")
    # The screen masked every digit.
    shown = [line for screen in list(vt.screens)[screens_before:] for line in screen]
    assert "****" in shown and not any(PIN[:2] in line for line in shown)


def test_sign_with_the_cps_and_check_with_its_certificate(vt: VirtualTerminal,
                                                          link: TerminalLink) -> None:
    with TerminalTransport(link, 0) as cps:
        session = CpsSession(CardProtocol(cps))
        with typing(vt, PIN, "OK"):
            session.verify_pin(None, timeout=20)
        vt.wire_stats(0, reset=True)
        data = b"ordonnance du 12 mars: amoxicilline 1 g x 3 / jour"
        signature = session.sign(data)
        stats = vt.wire_stats(0)
        key = session.certificate(KeyRef.SIGNATURE).public_key()
    assert isinstance(key, RSAPublicKey) and len(signature) == 256
    key.verify(signature, data, PKCS1v15(), SHA256())
    assert stats.nulls >= 2  # the card sent NULL bytes while it worked
    assert stats.framing_errors == 0


def test_change_the_pin_on_the_keypad(vt: VirtualTerminal, link: TerminalLink) -> None:
    with TerminalTransport(link, 0) as cps:
        session = CpsSession(CardProtocol(cps))
        assert isinstance(cps, SecurePinChange)
        with typing(vt, PIN, "OK", "8642", "OK", "8642", "OK"):
            session.change_pin(timeout=20)
        assert vt.screen_lines() == ["Code correct"]
        # A confirmation that differs: nothing reaches the card.
        before = vt.engines[0].stats.headers
        with typing(vt, "8642", "OK", "1111", "OK", "2222", "OK"), \
                pytest.raises(PinCancelled, match="differ"):
            session.change_pin(timeout=20)
        assert vt.engines[0].stats.headers == before + 1  # the SELECT only
        assert vt.screen_lines() == ["Codes differents"]
    with TerminalTransport(link, 0) as cps:  # powered again: the new PIN is the one
        session = CpsSession(CardProtocol(cps))
        with typing(vt, "8642", "OK"):
            session.verify_pin(None, timeout=20)
        with typing(vt, "8642", "OK", PIN, "OK", PIN, "OK"):
            session.change_pin(timeout=20)
        assert session.pin_status().tries_left == 3


def test_three_wrong_pins_block_the_card_and_the_puk_unblocks_it(vt: VirtualTerminal,
                                                                link: TerminalLink) -> None:
    vt.insert(0, Cps3Card("gp"))  # a card of our own: this one gets blocked
    with TerminalTransport(link, 0) as cps:
        session = CpsSession(CardProtocol(cps))
        for left, screen in ((2, ["Code incorrect", "Reste 2 essais"]),
                             (1, ["Code incorrect", "Reste 1 essai"])):
            with typing(vt, "9999", "OK"), pytest.raises(WrongPin) as wrong:
                session.verify_pin(None, timeout=20)
            assert wrong.value.tries_left == left
            assert vt.screen_lines() == screen
        with typing(vt, "9999", "OK"), pytest.raises(PinBlocked):
            session.verify_pin(None, timeout=20)
        assert vt.screen_lines() == ["Code bloque"]
        prompts = vt.status()
        with pytest.raises(PinBlocked):
            session.verify_pin(None, timeout=20)  # no prompt for a blocked PIN
        assert vt.status()["screen"] == prompts["screen"]
        # IAS-ECC: the PUK is verified on its own, then RESET RETRY COUNTER P1 02 carries the
        # new PIN; the terminal runs both from one prompt (PUK, new PIN, confirmation).
        with typing(vt, PUK, "OK", PIN, "OK", PIN, "OK"):
            session.unblock_pin(timeout=20)
        assert session.pin_status().tries_left == 3
        with typing(vt, PIN, "OK"):
            session.verify_pin(None, timeout=20)


def test_firmware_heap_stays_under_the_pico_budget(vt: VirtualTerminal,
                                                   link: TerminalLink) -> None:
    vt.heap(probe=True, reset=True)
    try:
        with TerminalTransport(link, 1) as vitale:
            VitaleSession(CardProtocol(vitale)).read()
        heap = vt.heap()
    finally:
        vt.heap(probe=False)
    total = int(heap["alloc"]) + int(heap["free"])  # type: ignore[call-overload]
    assert total <= 192 * 1024
    assert int(heap["samples"]) > 50  # type: ignore[call-overload]
    assert int(heap["boot"]) < int(heap["peak"]) < total - 16 * 1024  # type: ignore[call-overload]
