"""Simulated CPS cards in process (PIN verified), the test IGC-Santé PKI, and CRL helpers."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from email.message import EmailMessage

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes

from bifente.apdu.cps import CpsSession, PinRequest
from bifente.apdu.protocol import CardProtocol
from bifente.apdu.transport import InProcessTransport
from bifente.edged.services import cms
from bifente.simulators.cps3 import Cps3Card
from bifente.simulators.pki import DATA, ca_certificate, load_key


class Card:
    """One simulated CPS card with its session (PIN verified), signer and decryptor."""

    def __init__(self, profile: str) -> None:
        self.profile = profile
        self.transport = InProcessTransport(Cps3Card(profile))
        self.session = CpsSession(CardProtocol(self.transport))
        self.session.verify_pin(self._pin)
        self.signer = cms.CardSigner(self.session, [ca_certificate("personnes")])
        self.decryptor = RecordingDecryptor(self.session)

    @staticmethod
    def _pin(_request: PinRequest) -> bytearray:
        return bytearray(b"1234")

    @property
    def encryption_certificate(self) -> x509.Certificate:
        return self.decryptor.certificate


class RecordingDecryptor(cms.CardDecryptor):
    """The card decryptor, noting which padding each PSO DECIPHER asked the card for."""

    def __init__(self, session: CpsSession) -> None:
        super().__init__(session)
        self.calls: list[bool] = []

    def decrypt(self, encrypted_key: bytes, *, oaep: bool) -> bytes:
        self.calls.append(oaep)
        return super().decrypt(encrypted_key, oaep=oaep)


@pytest.fixture(scope="session")
def card() -> Callable[[str], Card]:
    """A card per profile, made once for the session (cards are stateless between tests)."""
    made: dict[str, Card] = {}

    def get(profile: str) -> Card:
        if profile not in made:
            made[profile] = Card(profile)
        made[profile].decryptor.calls.clear()
        return made[profile]

    return get


@pytest.fixture(scope="session")
def trust() -> cms.TrustStore:
    """The test IGC-Santé root alone: intermediates come with the signatures."""
    return cms.TrustStore([ca_certificate("root")])


def _make_crl(revoked: Sequence[x509.Certificate], *, issuer: str = "personnes",
             signing_key: str | None = None, next_update: dt.datetime | None = None,
             ) -> x509.CertificateRevocationList:
    """A CRL from a test CA (signed with its key, or another CA's key to forge one)."""
    now = dt.datetime.now(dt.UTC)
    key = load_key(DATA / "ca" / f"test-{signing_key or issuer}.key.pem")
    builder = (x509.CertificateRevocationListBuilder()
               .issuer_name(ca_certificate(issuer).subject)
               .last_update(now - dt.timedelta(days=1))
               .next_update(next_update or now + dt.timedelta(days=7)))
    for cert in revoked:
        builder = builder.add_revoked_certificate(
            x509.RevokedCertificateBuilder().serial_number(cert.serial_number)
            .revocation_date(now - dt.timedelta(hours=1)).build())
    return builder.sign(key, hashes.SHA256())


def _assert_no_defects(msg: EmailMessage) -> None:
    for part in msg.walk():
        assert not part.defects, (part.get_content_type(), part.defects)


@pytest.fixture(scope="session")
def make_crl() -> Callable[..., x509.CertificateRevocationList]:
    """Build a CRL: make_crl(revoked_certs, issuer=, signing_key=, next_update=)."""
    return _make_crl


@pytest.fixture(scope="session")
def no_defects() -> Callable[[EmailMessage], None]:
    """Assert that Python's parser found nothing wrong in any part of a message."""
    return _assert_no_defects
