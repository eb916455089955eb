"""Certificates of the reference DMP host from the test ORGANISATIONS CA (TEST ONLY).

The host's TLS certificate ("dmp.test", localhost, 127.0.0.1) is made at start under the data
directory; the test structure's server certificate (indirect mode) is committed test data.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import ssl
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from bifente.simulators.pki import DATA as PKI_DATA
from bifente.simulators.pki import ca_certificate, load_key

__all__ = ["HOST_NAMES", "ROOT_CAFILE", "ensure_host_certificate", "issue", "server_context"]

ROOT_CAFILE = PKI_DATA / "ca" / "test-root.crt.pem"
HOST_NAMES = ("dmp.test", "localhost")
HOST_VALIDITY = dt.timedelta(days=825)
RENEW_BEFORE = dt.timedelta(days=30)


def _organisations() -> tuple[RSAPrivateKey, x509.Certificate]:
    return (load_key(PKI_DATA / "ca" / "test-organisations.key.pem"),
            ca_certificate("organisations"))


def issue(subject: x509.Name, key: ec.EllipticCurvePrivateKey | RSAPrivateKey, *,
          sans: list[x509.GeneralName], eku: list[x509.ObjectIdentifier],
          not_before: dt.datetime, not_after: dt.datetime) -> x509.Certificate:
    """An end-entity certificate signed by the test ORGANISATIONS CA."""
    ca_key, ca_cert = _organisations()
    ski = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    return (x509.CertificateBuilder().subject_name(subject).issuer_name(ca_cert.subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(not_before).not_valid_after(not_after)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(True, False, isinstance(key, RSAPrivateKey), False,
                                         not isinstance(key, RSAPrivateKey), False, False,
                                         False, False), critical=True)
            .add_extension(x509.ExtendedKeyUsage(eku), critical=False)
            .add_extension(x509.SubjectAlternativeName(sans), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                           critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski),
                           critical=False)
            .sign(ca_key, hashes.SHA256()))


def ensure_host_certificate(folder: Path) -> tuple[Path, Path]:
    """(chain, key) paths of the host's TLS certificate, made or renewed when needed."""
    folder.mkdir(parents=True, exist_ok=True)
    chain_path, key_path = folder / "host.chain.pem", folder / "host.key.pem"
    now = dt.datetime.now(dt.UTC)
    if chain_path.exists() and key_path.exists():
        cert = x509.load_pem_x509_certificate(chain_path.read_bytes())
        if cert.not_valid_after_utc - RENEW_BEFORE > now:
            return chain_path, key_path
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([
        x509.NameAttribute(NameOID.COUNTRY_NAME, "FR"),
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "BIFENTE TEST - reference DMP host"),
        x509.NameAttribute(NameOID.COMMON_NAME, HOST_NAMES[0]),
    ])
    sans: list[x509.GeneralName] = [x509.DNSName(n) for n in HOST_NAMES]
    sans.append(x509.IPAddress(ipaddress.ip_address("127.0.0.1")))
    cert = issue(subject, key, sans=sans, eku=[ExtendedKeyUsageOID.SERVER_AUTH],
                 not_before=now - dt.timedelta(hours=1), not_after=now + HOST_VALIDITY)
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    key_path.chmod(0o600)
    # The chain carries the intermediate: clients trust only the test root (ROOT_CAFILE).
    chain_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM)
                           + ca_certificate("organisations").public_bytes(
                               serialization.Encoding.PEM))
    return chain_path, key_path


def server_context(chain: Path, key: Path) -> ssl.SSLContext:
    """A TLS 1.2+ server context for the host."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(chain, key)
    return ctx
