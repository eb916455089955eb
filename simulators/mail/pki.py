"""Certificates of the operator simulator, issued by the test ORGANISATIONS CA and cached.

TEST ONLY: the keys written here protect test mailboxes; they are created on first use under
the simulator's data folder with mode 0600 and reused while they still fit.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from collections.abc import Sequence
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from bifente.simulators.pki import DATA, ca_certificate, load_key

__all__ = [
    "TEST_ORG",
    "mailbox_certificate",
    "root_ca_pem",
    "server_certificate",
    "write_private",
]

TEST_ORG = "BIFENTE TEST PKI - NOT FOR PRODUCTION"
_ISSUER = "organisations"  # IGC-Santé issues server and structure certificates from this CA
_SERVER_LIFETIME = dt.timedelta(days=825)
_MAILBOX_LIFETIME = dt.timedelta(days=3 * 365)
_RENEW_BEFORE = dt.timedelta(days=7)


def write_private(path: Path, data: bytes) -> None:
    """Write a secret file readable by its owner only (0600), replacing any older one."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(data)
    os.chmod(path, 0o600)  # an older file may have had looser rights


def root_ca_pem() -> bytes:
    """The test root certificate: the one CA that clients of the simulator trust."""
    return (DATA / "ca" / "test-root.crt.pem").read_bytes()


def _issuer() -> tuple[rsa.RSAPrivateKey, x509.Certificate]:
    return load_key(DATA / "ca" / f"test-{_ISSUER}.key.pem"), ca_certificate(_ISSUER)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _builder(subject: x509.Name, public_key: object, lifetime: dt.timedelta,
             issuer: x509.Certificate) -> x509.CertificateBuilder:
    start = _now() - dt.timedelta(hours=1)
    end = min(start + lifetime, issuer.not_valid_after_utc)
    ski = issuer.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    return (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer.subject)
            .public_key(public_key)  # type: ignore[arg-type]
            .serial_number(x509.random_serial_number())
            .not_valid_before(start).not_valid_after(end)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key),  # type: ignore[arg-type]
                           critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski),
                           critical=False))


def _name(unit: str, common_name: str) -> x509.Name:
    return x509.Name([
        x509.NameAttribute(NameOID.COUNTRY_NAME, "FR"),
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, TEST_ORG),
        x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, unit),
        x509.NameAttribute(NameOID.COMMON_NAME, common_name),
    ])


def _fits(cert_path: Path, key_path: Path, san: Sequence[x509.GeneralName]) -> bool:
    """True when a cached certificate still matches its key, its CA, its names and the clock."""
    if not (cert_path.is_file() and key_path.is_file()):
        return False
    try:
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
        names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (ValueError, x509.ExtensionNotFound):
        return False
    return (cert.issuer == ca_certificate(_ISSUER).subject
            and set(names) == set(san)
            and cert.public_key() == key.public_key()
            and cert.not_valid_after_utc - _RENEW_BEFORE > _now() > cert.not_valid_before_utc)


def _pem(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def server_certificate(folder: Path, name: str, dns_names: Sequence[str],
                       ip_addresses: Sequence[str]) -> tuple[Path, Path]:
    """(chain file, key file) for a TLS server that is also an operator-to-operator client."""
    chain_path, key_path = folder / f"{name}.crt.pem", folder / f"{name}.key.pem"
    san: list[x509.GeneralName] = [x509.DNSName(d) for d in dns_names]
    san += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ip_addresses]
    if _fits(chain_path, key_path, san):
        return chain_path, key_path
    ca_key, ca_cert = _issuer()
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (_builder(_name("OPERATEUR MSSANTE TEST", dns_names[0]), key.public_key(),
                     _SERVER_LIFETIME, ca_cert)
            .add_extension(x509.SubjectAlternativeName(san), critical=False)
            .add_extension(x509.KeyUsage(True, False, False, False, True, False, False, False,
                                         False), critical=True)
            # clientAuth too: operators authenticate each other when they relay (M6).
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH,
                                                  ExtendedKeyUsageOID.CLIENT_AUTH]),
                           critical=False)
            .sign(ca_key, hashes.SHA256()))
    write_private(key_path, _pem(key))
    chain = cert.public_bytes(serialization.Encoding.PEM) + ca_cert.public_bytes(
        serialization.Encoding.PEM)
    chain_path.write_bytes(chain)  # leaf + intermediate, so a client needs only the root
    return chain_path, key_path


def mailbox_certificate(cert_path: Path, key_path: Path, address: str, unit: str,
                        *, seal: bool = False) -> x509.Certificate:
    """The RSA encryption certificate of a mailbox (patient or structure), made once."""
    san: list[x509.GeneralName] = [x509.RFC822Name(address)]
    if _fits(cert_path, key_path, san):
        return x509.load_pem_x509_certificate(cert_path.read_bytes())
    ca_key, ca_cert = _issuer()
    # The RSA key mail is encrypted to (key transport, docs/messaging.md).
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    eku = [ExtendedKeyUsageOID.EMAIL_PROTECTION]
    if seal:  # a structure certificate: client-auth + seal (docs/messaging.md)
        eku.append(ExtendedKeyUsageOID.CLIENT_AUTH)
    # The common name never carries the INS: the address (SAN) is the only identifier.
    cert = (_builder(_name(unit, "TEST STRUCTURE SEAL" if seal else "TEST PATIENT MAILBOX"),
                     key.public_key(), _MAILBOX_LIFETIME, ca_cert)
            .add_extension(x509.SubjectAlternativeName(san), critical=False)
            .add_extension(x509.KeyUsage(True, seal, True, False, False, False, False, False,
                                         False), critical=True)
            .add_extension(x509.ExtendedKeyUsage(eku), critical=False)
            .sign(ca_key, hashes.SHA256()))
    write_private(key_path, _pem(key))
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return cert
