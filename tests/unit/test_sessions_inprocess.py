"""CpsSession and VitaleSession against the simulated cards in process (no pcscd, fast).

Fakes only sit at the transport seam (a Vitale 1 card); every other card is a real simulator,
edited after construction where a test needs a card that misbehaves.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding

from bifente.apdu import tlv
from bifente.apdu.cps import CpsSession, PinRequest
from bifente.apdu.cps_spec import KeyRef
from bifente.apdu.errors import (
    MalformedData,
    PinBlocked,
    PinCancelled,
    PinNotAvailable,
    SecurityStatusNotSatisfied,
    UnexpectedCard,
    WrongPin,
)
from bifente.apdu.identity import InsAuthority
from bifente.apdu.protocol import CardProtocol
from bifente.apdu.transport import InProcessTransport
from bifente.apdu.vitale import VitaleSession
from bifente.simulators.cps3 import Cps3Card
from bifente.simulators.profiles import load_cps, load_vitale
from bifente.simulators.vitale import Vitale2Card


def over(card) -> CardProtocol:
    return CardProtocol(InProcessTransport(card))


class Keypad:
    """A local PIN source that hands out the given codes and keeps the buffers it gave."""

    def __init__(self, *codes: str | None) -> None:
        self.codes = list(codes)
        self.given: list[bytearray] = []
        self.requests: list[PinRequest] = []

    def __call__(self, request: PinRequest) -> bytearray | None:
        self.requests.append(request)
        code = self.codes.pop(0)
        if code is None:
            return None
        buf = bytearray(code.encode())
        self.given.append(buf)
        return buf


def wiped(buf: bytearray) -> bool:
    return len(buf) > 0 and not any(buf)


# -- the right card for the right session ------------------------------------------------------
def test_cps_session_refuses_a_vitale_card() -> None:
    with pytest.raises(UnexpectedCard, match="CPS"):
        CpsSession(over(Vitale2Card("family")))


def test_vitale_session_refuses_a_cps_card() -> None:
    with pytest.raises(UnexpectedCard, match="not a Vitale card"):
        VitaleSession(over(Cps3Card("gp")))


class Vitale1Card:
    """A Vitale 1 card at the seam: inverse-convention ATR, no Vitale 2 applications."""

    atr = bytes.fromhex("3F 65 25 08 22 04 68 90 00")

    def __init__(self) -> None:
        self.commands: list[bytes] = []

    def transmit(self, command: bytes) -> bytes:
        self.commands.append(command)
        return bytes.fromhex("6A82")


def test_vitale_1_is_refused_by_name() -> None:
    card = Vitale1Card()
    with pytest.raises(UnexpectedCard, match="Vitale 1"):
        VitaleSession(over(card))
    with pytest.raises(UnexpectedCard):
        CpsSession(over(card))
    assert card.commands == []  # refused on the ATR alone, before any APDU


# -- Vitale ------------------------------------------------------------------------------------
def test_vitale_read_matches_the_profile() -> None:
    profile = load_vitale("family")
    card = VitaleSession(over(Vitale2Card(profile))).read()
    assert card.test_card and card.insured.nir.value == profile.insured_nir
    assert [b.nir.value for b in card.beneficiaries] == [b.nir for b in profile.beneficiaries]
    assert [b.first_name for b in card.beneficiaries] == ["Pierre", "Anne-Sophie", "Lucas",
                                                          "Émma"]
    assert all(b.ins.oid is InsAuthority.NIR_TEST for b in card.beneficiaries)
    assert all(len(b.ins_c) == 22 for b in card.beneficiaries)


def test_vitale_beneficiary_with_a_wrong_key_is_named() -> None:
    profile = load_vitale("family")
    people = list(profile.beneficiaries)
    good = people[1].nir
    bad = good[:13] + f"{int(good[13:]) % 97 + 1:02d}"
    people[1] = dataclasses.replace(people[1], nir=bad)
    # Built directly: load_vitale would refuse the profile, and we want the card to carry it.
    broken = dataclasses.replace(profile, beneficiaries=tuple(people))
    session = VitaleSession(over(Vitale2Card(broken)))
    with pytest.raises(MalformedData, match="beneficiary 2") as info:
        session.read()
    assert "key" in str(info.value)
    assert bad not in str(info.value) and good not in str(info.value)
    assert bad[3:13] not in str(info.value)


def test_vitale_temporary_number_has_no_ins_c() -> None:
    (person,) = VitaleSession(over(Vitale2Card("temporary"))).read().beneficiaries
    assert person.nir.temporary and person.ins_c is None
    assert person.ins.oid is InsAuthority.NIA


# -- CPS ---------------------------------------------------------------------------------------
def test_cps_identity_matches_the_profile() -> None:
    identity = CpsSession(over(Cps3Card("gp"))).identity()
    assert identity.holder == load_cps("gp").holder
    assert identity.serial == load_cps("gp").serial


@pytest.mark.parametrize("pan", ["80250000020000000101", "00250000010000000101",
                                 "12345678901234567890"])
def test_cps_without_the_ans_prefix_is_refused(pan: str) -> None:
    card = Cps3Card("gp")
    card.mf.children[0xD003].data = tlv.encode(0x5A, bytes.fromhex(pan))
    session = CpsSession(over(card))
    with pytest.raises(UnexpectedCard, match="80 25 00 00 01"):
        session.serial()
    with pytest.raises(UnexpectedCard):
        session.identity()


def test_cps_serial_file_without_tag_5a_is_refused() -> None:
    card = Cps3Card("gp")
    card.mf.children[0xD003].data = tlv.encode(0x5B, bytes.fromhex("80250000010000000101"))
    with pytest.raises(UnexpectedCard):
        CpsSession(over(card)).serial()


def test_verify_pin_wipes_the_buffer_and_logs_no_pin(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(1)  # everything, raw APDU traffic included
    card = Cps3Card("gp")
    session = CpsSession(over(card))
    keypad = Keypad("1234")
    session.verify_pin(keypad)
    (buf,) = keypad.given
    assert wiped(buf) and len(buf) == 4
    assert keypad.requests[0].purpose == "verify" and keypad.requests[0].tries_left == 3
    assert len(session.situations()) == len(load_cps("gp").situations)  # really verified
    assert caplog.records, "TRACE logging should have recorded the APDU traffic"
    for record in caplog.records:
        message = record.getMessage()
        assert "1234" not in message
        assert b"1234".hex() not in message.lower()  # nor in a hex APDU dump


def test_wrong_pin_is_wiped_and_not_logged(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(1)
    session = CpsSession(over(Cps3Card("gp")))
    keypad = Keypad("9876")
    with pytest.raises(WrongPin) as info:
        session.verify_pin(keypad)
    assert info.value.tries_left == 2
    assert wiped(keypad.given[0])
    assert all("9876" not in r.getMessage() and "39383736" not in r.getMessage().lower()
               for r in caplog.records)
    assert session.pin_status().tries_left == 2


def test_malformed_pin_is_wiped_and_never_sent() -> None:
    card = Cps3Card("gp")
    session = CpsSession(over(card))
    keypad = Keypad("12345")
    with pytest.raises(ValueError, match="4 to 4 digits"):
        session.verify_pin(keypad)
    assert wiped(keypad.given[0])
    assert session.pin_status().tries_left == 3


def test_pin_sources_that_give_nothing() -> None:
    session = CpsSession(over(Cps3Card("gp")))
    with pytest.raises(PinNotAvailable):
        session.verify_pin(None)
    with pytest.raises(PinCancelled):
        session.verify_pin(Keypad(None))
    with pytest.raises(SecurityStatusNotSatisfied):
        session.situations()


def test_blocked_card_is_not_asked_for_a_pin() -> None:
    keypad = Keypad("1234")
    with pytest.raises(PinBlocked):
        CpsSession(over(Cps3Card("blocked"))).verify_pin(keypad)
    assert keypad.requests == []


def no_secret_logged(caplog: pytest.LogCaptureFixture, *codes: str) -> None:
    assert caplog.records
    for record in caplog.records:
        message = record.getMessage().lower()
        for code in codes:
            assert code not in message and code.encode().hex() not in message


def test_change_pin_wipes_both_codes_and_logs_neither(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(1)
    card = Cps3Card("gp")
    session = CpsSession(over(card))
    keypad = Keypad("1234", "4321")
    session.change_pin(keypad)
    assert len(keypad.given) == 2 and all(wiped(b) for b in keypad.given)
    card.power_off()
    card.power_on()
    session.verify_pin(Keypad("4321"))
    assert session.pin_status().tries_left == 3
    no_secret_logged(caplog, "1234", "4321")


def test_unblock_wipes_the_puk_and_logs_it_not(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(1)
    card = Cps3Card("blocked")
    session = CpsSession(over(card))
    keypad = Keypad("12345678", "2468")
    session.unblock_pin(keypad)
    assert [len(b) for b in keypad.given] == [8, 4] and all(wiped(b) for b in keypad.given)
    session.verify_pin(Keypad("2468"))
    no_secret_logged(caplog, "12345678", "2468")


def test_sign_after_verify_verifies_with_the_certificate() -> None:
    card = Cps3Card("gp")
    session = CpsSession(over(card))
    session.verify_pin(Keypad("1234"))
    message = b"compte rendu " * 40
    sig = session.sign(message)
    cert = session.certificate(KeyRef.SIGNATURE)
    cert.public_key().verify(sig, message, padding.PKCS1v15(), hashes.SHA256())
    challenge = hashlib.sha256(b"nonce").digest()
    auth = session.authenticate(challenge)
    session.certificate(KeyRef.AUTHENTICATION).public_key().verify(
        auth, challenge, padding.PKCS1v15(), hashes.SHA256())


def test_log_capture_sees_trace_records(caplog: pytest.LogCaptureFixture) -> None:
    # Guards the PIN-in-logs tests above: at level 1 the protocol's APDU trace is captured.
    caplog.set_level(1)
    CpsSession(over(Cps3Card("gp"))).pin_status()
    assert any(r.levelno < logging.DEBUG and "00cb3fff" in r.getMessage().lower()
               for r in caplog.records)



# -- our host sends only what OpenSC sends to a real CPS3 (docs/cards.md) ----------------------
class Recording(InProcessTransport):
    """The in-process transport, keeping every command APDU (hex) for the test to compare."""

    def __init__(self, card: Cps3Card) -> None:
        super().__init__(card)
        self.sent: list[str] = []

    def transmit(self, command: bytes) -> bytes:
        """Record, then hand the bytes to the card."""
        self.sent.append(bytes(command).hex().upper())
        return super().transmit(command)


def recorded(card: Cps3Card) -> tuple[CpsSession, Recording]:
    transport = Recording(card)
    return CpsSession(CardProtocol(transport)), transport


def crypto_apdus(sent: list[str]) -> list[str]:
    """The commands after the last SELECT, without GET RESPONSE."""
    last = max(i for i, apdu in enumerate(sent) if apdu.startswith("00A4"))
    return [a for a in sent[last + 1:] if not a.startswith("00C0")]


@pytest.mark.parametrize("size", [0, 25, 63, 64, 100, 128])
def test_sign_sends_opensc_s_apdus(size: int) -> None:
    # iasecc_set_security_env + iasecc_compute_signature_dst: MSE HT 40, MSE DST 81/42,
    # PSO HASH with an empty 90 under one block (else state || bit count), PSO CDS.
    card = Cps3Card("gp")
    session, transport = recorded(card)
    session.verify_pin(Keypad("1234"))
    message = bytes(range(size))
    signature = session.sign(message)
    apdus = crypto_apdus(transport.sent)
    assert apdus[:2] == ["002241AA03800140", "002241B606840181800142"]
    hash_field = bytes.fromhex(apdus[2])[5:]
    if size < 64:
        assert hash_field == b"\x90\x00\x80" + bytes([size]) + message
    else:
        assert hash_field[:2] == b"\x90\x28" and hash_field[42:44] == bytes(
            [0x80, size % 64])
    assert apdus[3:] == ["002A9E9A00"]
    card.keys[KeyRef.SIGNATURE].public_key().verify(signature, message, padding.PKCS1v15(),
                                                    hashes.SHA256())


def test_authentication_key_signs_by_internal_authenticate() -> None:
    # A real CPS3's authentication key has no PSO CDS right (PrKDF access rules, OpenSC
    # #2267): the host signs the SHA-256 DigestInfo with INTERNAL AUTHENTICATE instead.
    card = Cps3Card("gp")
    session, transport = recorded(card)
    session.verify_pin(Keypad("1234"))
    message = b"DMP: consultation du 12 mars"
    signature = session.sign(message, KeyRef.AUTHENTICATION)
    apdus = crypto_apdus(transport.sent)
    assert apdus[0] == "002241A406840182800102"
    assert apdus[1].startswith("0088000033" + "3031300D060960864801650304020105000420")
    assert not any(a.startswith("002241B6") for a in transport.sent)
    card.keys[KeyRef.AUTHENTICATION].public_key().verify(signature, message,
                                                         padding.PKCS1v15(), hashes.SHA256())


def test_pin_codes_go_unpadded_as_opensc_sends_them() -> None:
    card = Cps3Card("gp")
    session, transport = recorded(card)
    session.verify_pin(Keypad("1234"))
    assert "002000010431323334" in transport.sent
    session.change_pin(Keypad("1234", "8642"))
    assert transport.sent[-1] == "00240001083132333438363432"


def test_unblock_verifies_the_puk_then_resets_with_p1_02() -> None:
    card = Cps3Card("blocked")
    session, transport = recorded(card)
    session.unblock_pin(Keypad("12345678", "2468"))
    assert transport.sent[-2:] == ["00200002083132333435363738", "002C02010432343638"]
    with pytest.raises(WrongPin) as wrong:
        session.unblock_pin(Keypad("00000000", "2468"))
    assert wrong.value.tries_left == 9  # the PUK's counter; no reset was sent
    assert not transport.sent[-1].startswith("002C")
