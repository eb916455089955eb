"""Client-side TLS to an edged: a pinned server fingerprint, then the client certificate."""

from __future__ import annotations

import hmac
import ssl
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from bifente.client.identity import fingerprint_of, validate_client_name, validate_fingerprint

__all__ = [
    "PinMismatch",
    "check_pinned",
    "generate_client_key_and_csr",
    "paired_ssl_context",
    "pinned_ssl_context",
]


class PinMismatch(ssl.SSLCertVerificationError):
    """The server's certificate is not the pinned one; both fingerprints are in the message."""

    def __init__(self, expected: str, actual: str | None) -> None:
        self.expected = expected
        self.actual = actual
        got = actual if actual is not None else "no certificate"
        self.message = (
            f"the server certificate does not match the pinned fingerprint: "
            f"expected {expected}, got {got}"
        )
        super().__init__(self.message)
        self.verify_code = 0
        self.verify_message = self.message

    def __str__(self) -> str:
        return self.message


def check_pinned(ssl_object: ssl.SSLObject | ssl.SSLSocket, fingerprint: str) -> None:
    """Raise PinMismatch unless the peer certificate's SHA-256 fingerprint is `fingerprint`."""
    expected = validate_fingerprint(fingerprint)
    der = ssl_object.getpeercert(binary_form=True)
    actual = fingerprint_of(der) if der else None
    if actual is None or not hmac.compare_digest(actual, expected):
        raise PinMismatch(expected, actual)


class _PinnedSSLObject(ssl.SSLObject):
    """An SSLObject (asyncio, websockets) that checks the pin as the handshake finishes."""

    def do_handshake(self) -> None:
        super().do_handshake()
        context = self.context
        assert isinstance(context, _PinnedContext)
        check_pinned(self, context.pinned_fingerprint)


class _PinnedSSLSocket(ssl.SSLSocket):
    """An SSLSocket (blocking code) that checks the pin as the handshake finishes."""

    def do_handshake(self, block: bool = False) -> None:
        super().do_handshake(block)
        context = self.context
        assert isinstance(context, _PinnedContext)
        check_pinned(self, context.pinned_fingerprint)


class _PinnedContext(ssl.SSLContext):
    """A client context whose handshakes fail with PinMismatch before any application data."""

    pinned_fingerprint: str
    sslobject_class = _PinnedSSLObject
    sslsocket_class = _PinnedSSLSocket


def _tls13_client(context: ssl.SSLContext) -> None:
    context.minimum_version = ssl.TLSVersion.TLSv1_3
    context.maximum_version = ssl.TLSVersion.TLSv1_3


def _load_client_credentials(
    context: ssl.SSLContext, client_cert: Path | None, client_key: Path | None
) -> None:
    if (client_cert is None) != (client_key is None):
        raise ValueError("give both client_cert and client_key, or neither")
    if client_cert is not None:
        context.load_cert_chain(client_cert, client_key)


def pinned_ssl_context(
    fingerprint: str,
    *,
    client_cert: Path | None = None,
    client_key: Path | None = None,
) -> ssl.SSLContext:
    """TLS 1.3 client context trusting only the server certificate with this fingerprint."""
    pinned = validate_fingerprint(fingerprint)
    context = _PinnedContext(ssl.PROTOCOL_TLS_CLIENT)
    context.pinned_fingerprint = pinned
    _tls13_client(context)
    # No CA is known before pairing, and a terminal's address changes: the pin replaces both
    # chain and host name checks. The handshake itself runs check_pinned (see the classes
    # above); calling check_pinned again after connecting is harmless.
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    _load_client_credentials(context, client_cert, client_key)
    return context


def paired_ssl_context(
    ca_certificate: bytes | str,
    *,
    client_cert: Path,
    client_key: Path,
) -> ssl.SSLContext:
    """TLS 1.3 mutual-TLS context trusting the device CA got at pairing (no host name check)."""
    pem = ca_certificate.decode("ascii") if isinstance(ca_certificate, bytes) else ca_certificate
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    _tls13_client(context)
    # The device CA signs only this terminal's certificates, and the terminal's address may
    # change with DHCP: the chain is the check. OpenSSL still requires serverAuth, so another
    # client's certificate from the same CA cannot pose as the daemon.
    context.check_hostname = False
    context.verify_mode = ssl.CERT_REQUIRED
    context.load_verify_locations(cadata=pem)
    _load_client_credentials(context, client_cert, client_key)
    return context


def generate_client_key_and_csr(name: str) -> tuple[bytes, bytes]:
    """A new ECDSA P-256 key (PKCS#8 PEM, unencrypted) and a CSR for `name` (PEM)."""
    validate_client_name(name)
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return key_pem, csr.public_bytes(serialization.Encoding.PEM)
