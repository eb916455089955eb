"""The test PKI, shaped like IGC-Santé (root -> PERSONNES / ORGANISATIONS CAs -> end entities).

TEST ONLY: every key here is public test data committed to the repository. The files were
generated once by `python -m bifente.simulators.pki.generate` and are kept, so certificates and card
keys are the same on every machine.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey

__all__ = ["DATA", "CardKeys", "ca_certificate", "card_keys", "load_key"]

DATA = Path(__file__).parent / "data"


def load_key(path: Path) -> RSAPrivateKey:
    """Load an unencrypted PEM RSA private key."""
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key, RSAPrivateKey):
        raise TypeError(f"{path.name} is not an RSA key")
    return key


def ca_certificate(name: str) -> x509.Certificate:
    """A test CA certificate: 'root', 'personnes' or 'organisations'."""
    return x509.load_pem_x509_certificate((DATA / "ca" / f"test-{name}.crt.pem").read_bytes())


@dataclass(frozen=True)
class CardKeys:
    """The two key pairs and certificates of one simulated CPS card."""

    signature_key: RSAPrivateKey
    signature_cert: x509.Certificate
    authentication_key: RSAPrivateKey
    authentication_cert: x509.Certificate


def card_keys(profile: str) -> CardKeys:
    """Load the test keys of a CPS profile (FileNotFoundError names the generate command)."""
    folder = DATA / "cps" / profile
    if not folder.is_dir():
        raise FileNotFoundError(
            f"no test keys for CPS profile {profile!r}: "
            "run `python -m bifente.simulators.pki.generate`")

    def cert(name: str) -> x509.Certificate:
        return x509.load_pem_x509_certificate((folder / f"{name}.crt.pem").read_bytes())

    return CardKeys(load_key(folder / "sig.key.pem"), cert("sig"),
                    load_key(folder / "aut.key.pem"), cert("aut"))
