"""The private-key seams: Signer and Decryptor, on the CPS card or in memory."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding as rsa_padding
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey

from bifente.apdu.cps import CpsSession
from bifente.apdu.cps_spec import KeyRef
from bifente.apdu.errors import ApduError
from bifente.apdu.sw import SW
from bifente.edged.services.cms.errors import DecryptionFailed, UnsupportedAlgorithm

__all__ = ["CardDecryptor", "CardSigner", "Decryptor", "Signer", "SoftwareDecryptor",
           "SoftwareSigner"]


@runtime_checkable
class Signer(Protocol):
    """Signs with a private key it keeps: RSA PKCS#1 v1.5 over SHA-256(data)."""

    certificate: x509.Certificate
    chain: Sequence[x509.Certificate]  # intermediates, signer's issuer first

    def sign(self, data: bytes) -> bytes:
        """Return the RSA PKCS#1 v1.5 signature of SHA-256(data) (the signer hashes)."""
        ...


@runtime_checkable
class Decryptor(Protocol):
    """Unwraps content-encryption keys with a private key it keeps."""

    certificate: x509.Certificate

    def decrypt(self, encrypted_key: bytes, *, oaep: bool) -> bytes:
        """RSA-decrypt (OAEP SHA-256 or PKCS#1 v1.5); DecryptionFailed when it does not open."""
        ...


class CardSigner:
    """The CPS signature key (split hash on the card); the PIN must already be verified."""

    def __init__(self, session: CpsSession, chain: Sequence[x509.Certificate] = (), *,
                 key: KeyRef = KeyRef.SIGNATURE) -> None:
        self._session = session
        self._key = key
        self.certificate = session.certificate(key)
        self.chain: Sequence[x509.Certificate] = tuple(chain)
        # The card's encryption certificate, so protect() can always encrypt to the sender.
        self.encryption_certificate: x509.Certificate | None = session.certificate(
            KeyRef.AUTHENTICATION)

    def sign(self, data: bytes) -> bytes:
        """PSO HASH + PSO COMPUTE DIGITAL SIGNATURE over SHA-256(data)."""
        return self._session.sign(data, self._key)


class CardDecryptor:
    """The CPS authentication key, which is the encryption key (PSO DECIPHER on the card)."""

    def __init__(self, session: CpsSession) -> None:
        self._session = session
        self.certificate = session.certificate(KeyRef.AUTHENTICATION)

    def decrypt(self, encrypted_key: bytes, *, oaep: bool) -> bytes:
        """PSO DECIPHER; the card's 6A80 (padding check failed) becomes DecryptionFailed."""
        if oaep:
            # A CPS3 deciphers PKCS#1 v1.5 only (docs/cards.md): refused before any APDU.
            raise UnsupportedAlgorithm("RSA-OAEP key transport (the CPS card deciphers "
                                       "RSA PKCS#1 v1.5 only)")
        try:
            return self._session.decipher(encrypted_key)
        except ApduError as exc:
            if exc.sw in (SW.INCORRECT_DATA, SW.WRONG_LENGTH):
                raise DecryptionFailed() from None
            raise


class SoftwareSigner:
    """A key in memory (the structure's seal key in the proxy; tests)."""

    def __init__(self, key: RSAPrivateKey, certificate: x509.Certificate,
                 chain: Sequence[x509.Certificate] = (), *,
                 encryption_certificate: x509.Certificate | None = None) -> None:
        self._key = key
        self.certificate = certificate
        self.chain: Sequence[x509.Certificate] = tuple(chain)
        self.encryption_certificate = encryption_certificate

    def __repr__(self) -> str:
        return f"SoftwareSigner({self.certificate.subject.rfc4514_string()!r})"

    def sign(self, data: bytes) -> bytes:
        """RSA PKCS#1 v1.5 SHA-256."""
        return self._key.sign(data, rsa_padding.PKCS1v15(), hashes.SHA256())


class SoftwareDecryptor:
    """A decryption key in memory (tests, interop with keys held in files)."""

    def __init__(self, key: RSAPrivateKey, certificate: x509.Certificate) -> None:
        self._key = key
        self.certificate = certificate

    def __repr__(self) -> str:
        return f"SoftwareDecryptor({self.certificate.subject.rfc4514_string()!r})"

    def decrypt(self, encrypted_key: bytes, *, oaep: bool) -> bytes:
        """RSA decryption with OAEP (SHA-256, MGF1-SHA-256) or PKCS#1 v1.5."""
        pad = _oaep() if oaep else rsa_padding.PKCS1v15()
        try:
            return self._key.decrypt(encrypted_key, pad)
        except ValueError:
            raise DecryptionFailed() from None



def _oaep() -> rsa_padding.OAEP:
    return rsa_padding.OAEP(rsa_padding.MGF1(hashes.SHA256()), hashes.SHA256(), None)
