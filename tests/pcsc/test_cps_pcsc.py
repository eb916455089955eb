"""Every CPS operation through pyscard -> pcscd -> vpcd -> the simulated CPS3 card."""

from __future__ import annotations

import datetime as dt
import os

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding

from bifente.apdu.command import CommandApdu
from bifente.apdu.cps import CpsSession, PinRequest
from bifente.apdu.cps_spec import ATR_CONTACT, KeyRef
from bifente.apdu.errors import (
    AuthMethodBlocked,
    PinBlocked,
    PinCancelled,
    PinNotAvailable,
    SecurityStatusNotSatisfied,
    WrongPin,
)
from bifente.apdu.pcsc import PcscTransport
from bifente.apdu.protocol import CardProtocol
from bifente.simulators.pki import ca_certificate
from bifente.simulators.profiles import load_cps

pytestmark = pytest.mark.pcsc


def keypad(*codes: str):
    """A local PIN source that types the given codes in order and records the requests."""
    queue = list(codes)
    asked: list[PinRequest] = []

    def source(request: PinRequest) -> bytearray:
        asked.append(request)
        return bytearray(queue.pop(0).encode())

    source.asked = asked  # type: ignore[attr-defined]
    return source


def chain_verifies(cert: x509.Certificate) -> None:
    """Raise unless cert <- PERSONNES CA <- test root verify (signatures and names)."""
    personnes, root = ca_certificate("personnes"), ca_certificate("root")
    assert cert.issuer == personnes.subject and personnes.issuer == root.subject
    personnes.public_key().verify(cert.signature, cert.tbs_certificate_bytes, padding.PKCS1v15(),
                                  cert.signature_hash_algorithm)
    root.public_key().verify(personnes.signature, personnes.tbs_certificate_bytes,
                             padding.PKCS1v15(), personnes.signature_hash_algorithm)


@pytest.mark.parametrize("profile", ["gp", "nurse", "pharmacist", "occupational", "emergency",
                                     "insurer", "student"])
def test_identity_matches_profile(cps, profile: str) -> None:
    _card, protocol = cps(profile)
    assert protocol.atr == ATR_CONTACT
    identity = CpsSession(protocol).identity()
    expected = load_cps(profile)
    assert identity.holder == expected.holder
    assert identity.serial == expected.serial and identity.serial.startswith("8025000001")


def test_student_card_type_and_specialties(cps) -> None:
    _card, protocol = cps("student")
    holder = CpsSession(protocol).identity().holder
    assert holder.card_type == 1 and holder.card_type_name == "CPF (student)"


def test_pin_status_and_situations_need_the_pin(cps) -> None:
    _card, protocol = cps("gp")
    session = CpsSession(protocol)
    status = session.pin_status()
    assert (status.tries_left, status.max_tries, status.blocked) == (3, 3, False)
    with pytest.raises(SecurityStatusNotSatisfied):
        session.situations()
    source = keypad("1234")
    session.verify_pin(source)
    assert source.asked[0].tries_left == 3 and source.asked[0].purpose == "verify"
    situations = session.situations()
    assert [s.structure_name for s in situations] == [
        s.structure_name for s in load_cps("gp").situations]
    assert situations[1].mode_name == "replacement"


def test_wrong_pin_counts_down_then_blocks(cps) -> None:
    _card, protocol = cps("gp")
    session = CpsSession(protocol)
    with pytest.raises(WrongPin) as first:
        session.verify_pin(keypad("0000"))
    assert first.value.tries_left == 2
    with pytest.raises(WrongPin) as second:
        session.verify_pin(keypad("9999"))
    assert second.value.tries_left == 1
    with pytest.raises(PinBlocked):
        session.verify_pin(keypad("1111"))
    assert session.pin_status().blocked
    # A blocked card is refused before the holder is even asked.
    untouched = keypad("1234")
    with pytest.raises(PinBlocked):
        session.verify_pin(untouched)
    assert untouched.asked == []


def test_correct_pin_resets_the_counter(cps) -> None:
    _card, protocol = cps("gp")
    session = CpsSession(protocol)
    with pytest.raises(WrongPin):
        session.verify_pin(keypad("0000"))
    session.verify_pin(keypad("1234"))
    assert session.pin_status().tries_left == 3


def test_blocked_profile_unblocks_with_the_puk(cps) -> None:
    _card, protocol = cps("blocked")
    session = CpsSession(protocol)
    assert session.pin_status().blocked
    with pytest.raises(PinBlocked):
        session.verify_pin(keypad("1234"))
    with pytest.raises(WrongPin) as wrong_puk:
        session.unblock_pin(keypad("00000000", "4321"))
    assert wrong_puk.value.tries_left == 9  # the PUK's own counter
    session.unblock_pin(keypad("12345678", "4321"))
    assert session.pin_status().tries_left == 3
    session.verify_pin(keypad("4321"))
    assert session.situations()


def test_puk_blocks_after_ten_wrong_codes(cps) -> None:
    _card, protocol = cps("blocked")
    session = CpsSession(protocol)
    for left in range(9, 0, -1):
        with pytest.raises(WrongPin) as exc:
            session.unblock_pin(keypad("00000000", "4321"))
        assert exc.value.tries_left == left
    with pytest.raises(AuthMethodBlocked, match="PUK blocked"):
        session.unblock_pin(keypad("00000000", "4321"))


def test_change_pin(cps) -> None:
    _card, protocol = cps("gp")
    session = CpsSession(protocol)
    session.change_pin(keypad("1234", "8642"))
    with pytest.raises(WrongPin):
        session.verify_pin(keypad("1234"))
    session.verify_pin(keypad("8642"))
    with pytest.raises(WrongPin):
        session.change_pin(keypad("0000", "1111"))


def test_pin_cancelled_and_no_source(cps) -> None:
    _card, protocol = cps("gp")
    session = CpsSession(protocol)
    with pytest.raises(PinCancelled):
        session.verify_pin(lambda request: None)
    with pytest.raises(PinNotAvailable):
        session.verify_pin(None)
    assert session.pin_status().tries_left == 3  # neither reached the card


def test_pin_of_wrong_length_never_reaches_the_card(cps) -> None:
    _card, protocol = cps("gp")
    session = CpsSession(protocol)
    with pytest.raises(ValueError, match="4 to 4 digits"):
        session.verify_pin(keypad("12345"))
    assert session.pin_status().tries_left == 3


@pytest.mark.parametrize("profile", ["gp", "emergency", "nurse"])
def test_signature_verifies_and_chains_to_the_test_root(cps, profile: str) -> None:
    _card, protocol = cps(profile)
    session = CpsSession(protocol)
    session.verify_pin(keypad("1234"))
    for size in (0, 1, 55, 64, 65, 1000):
        message = os.urandom(size)
        signature = session.sign(message)
        cert = session.certificate(KeyRef.SIGNATURE)
        cert.public_key().verify(signature, message, padding.PKCS1v15(), hashes.SHA256())
    chain_verifies(cert)
    usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    assert usage.content_commitment and not usage.digital_signature


def test_signing_needs_the_pin(cps) -> None:
    _card, protocol = cps("gp")
    with pytest.raises(SecurityStatusNotSatisfied):
        CpsSession(protocol).sign(b"unsigned")


def test_authenticate_and_decipher(cps) -> None:
    _card, protocol = cps("gp")
    session = CpsSession(protocol)
    session.verify_pin(keypad("1234"))
    cert = session.certificate(KeyRef.AUTHENTICATION)
    chain_verifies(cert)
    challenge = os.urandom(32)
    cert.public_key().verify(session.authenticate(challenge), challenge, padding.PKCS1v15(),
                             hashes.SHA256())
    secret = os.urandom(32)
    assert session.decipher(cert.public_key().encrypt(secret, padding.PKCS1v15())) == secret


def test_expired_profile_has_expired_certificates(cps) -> None:
    _card, protocol = cps("expired")
    session = CpsSession(protocol)
    now = dt.datetime.now(dt.UTC)
    for key in (KeyRef.SIGNATURE, KeyRef.AUTHENTICATION):
        cert = session.certificate(key)
        assert cert.not_valid_after_utc < now
        chain_verifies(cert)  # still chains: expiry is a separate check


def test_unknown_aid_answers_6a82(cps) -> None:
    _card, protocol = cps("gp")
    response = protocol.send(CommandApdu(0x00, 0xA4, 0x04, 0x0C,
                                         bytes.fromhex("A000000063504B43532D3135")))
    assert response.sw == 0x6A82


def test_security_state_does_not_survive_reconnect(cps, slots) -> None:
    _card, protocol = cps("gp")
    CpsSession(protocol).verify_pin(keypad("1234"))
    protocol.close()  # disconnect with reset, as the transport does by default
    with PcscTransport(slots.reader(0)) as transport, \
            pytest.raises(SecurityStatusNotSatisfied):
        CpsSession(CardProtocol(transport)).situations()
