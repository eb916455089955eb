"""The device CA, the daemon's TLS certificate and client certificates, kept as 0600 files."""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import os
import re
import secrets
import socket
import ssl
import tempfile
import threading
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.types import (
    CertificatePublicKeyTypes,
    PublicKeyTypes,
)
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from bifente.client.identity import fingerprint_of, validate_client_name
from bifente.edged.state.clients import normalise_scopes
from bifente.edged.state.keywrap import KeyWrapper

__all__ = [
    "CA_CERT_FILE",
    "CA_KEY_FILE",
    "MAX_KEY_INPUT",
    "SERVER_CERT_FILE",
    "SERVER_KEY_FILE",
    "Keystore",
    "KeystoreError",
    "load_client_public_key",
]

log = logging.getLogger(__name__)

CA_KEY_FILE = "ca.key"
CA_CERT_FILE = "ca.pem"
SERVER_KEY_FILE = "server.key"
SERVER_CERT_FILE = "server.pem"

MAX_KEY_INPUT = 16 * 1024  # a CSR or public key from a peer, capped before parsing
CA_VALIDITY = timedelta(days=20 * 365)
SERVER_VALIDITY = timedelta(days=2 * 365)
RENEW_BEFORE = timedelta(days=30)  # re-issue the server certificate this close to expiry
_RECHECK = timedelta(minutes=1)  # the fingerprint re-checks expiry and names this often
# Certificates start a day early: a Pi has no RTC and may boot with yesterday's time.
BACKDATE = timedelta(days=1)
_MIN_RSA_BITS = 2048
_MAX_RSA_BITS = 8192  # verifying a huge RSA CSR costs the Pi; nobody needs more
_MAX_CLIENT_DAYS = 20 * 365
_ALWAYS_ADDRESSES = ("127.0.0.1", "::1")
_HOSTNAME_RE = re.compile(
    r"(?=.{1,253}$)[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)*"
)


class KeystoreError(RuntimeError):
    """The keystore directory is in a state we must not repair silently (say, a lost CA key)."""


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _describe_key(key: object) -> str:
    name = type(key).__name__.lstrip("_")
    for prefix in ("DSA", "DH", "Ed448", "X25519", "X448"):
        if name.startswith(prefix):
            return prefix
    return name


def _check_key_policy(key: PublicKeyTypes) -> None:
    if isinstance(key, rsa.RSAPublicKey):
        if key.key_size < _MIN_RSA_BITS:
            raise ValueError(
                f"an RSA key of {key.key_size} bits is too weak: use at least "
                f"{_MIN_RSA_BITS} bits, or EC P-256"
            )
        if key.key_size > _MAX_RSA_BITS:
            raise ValueError(f"RSA keys above {_MAX_RSA_BITS} bits are not accepted")
    elif isinstance(key, ec.EllipticCurvePublicKey):
        if not isinstance(key.curve, ec.SECP256R1 | ec.SECP384R1):
            raise ValueError(
                f"EC curve {key.curve.name} is not accepted: use P-256 (secp256r1) or P-384"
            )
    elif not isinstance(key, ed25519.Ed25519PublicKey):
        raise ValueError(
            f"{_describe_key(key)} keys are not accepted: use EC P-256, P-384, Ed25519 "
            f"or RSA of at least {_MIN_RSA_BITS} bits"
        )


def load_client_public_key(data: bytes) -> CertificatePublicKeyTypes:
    """The public key of a PEM/DER CSR (signature checked) or SubjectPublicKeyInfo, if allowed."""
    if not isinstance(data, bytes | bytearray):
        raise ValueError("the key is a PEM or DER CSR or public key, as bytes")
    data = bytes(data)
    if not data:
        raise ValueError("the CSR or public key is empty")
    if len(data) > MAX_KEY_INPUT:
        raise ValueError(f"the CSR or public key is larger than {MAX_KEY_INPUT} bytes")
    csr: x509.CertificateSigningRequest | None = None
    key: PublicKeyTypes
    try:
        if data.lstrip().startswith(b"-----BEGIN"):
            if b"CERTIFICATE REQUEST-----" in data:
                csr = x509.load_pem_x509_csr(data)
                key = csr.public_key()
            else:
                key = serialization.load_pem_public_key(data)
        else:
            try:
                key = serialization.load_der_public_key(data)
            except (ValueError, UnsupportedAlgorithm):
                csr = x509.load_der_x509_csr(data)
                key = csr.public_key()
    except UnsupportedAlgorithm as exc:
        raise ValueError(f"unsupported key algorithm: {exc}") from None
    except ValueError:
        raise ValueError(
            "not a valid CSR or public key (expected a PEM or DER CSR, or a PEM or DER "
            "SubjectPublicKeyInfo)"
        ) from None
    _check_key_policy(key)  # before the signature: a clearer message for a weak key
    if csr is not None:
        try:
            valid = csr.is_signature_valid
        except (ValueError, UnsupportedAlgorithm):
            valid = False
        if not valid:
            raise ValueError("the CSR signature does not verify (the request was altered)")
    assert isinstance(key, rsa.RSAPublicKey | ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey)
    return key


def _atomic_write(path: Path, data: bytes) -> None:
    """Write `data` to `path` as a 0600 file that is either the old or the new one, never half."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:  # mkstemp creates the file 0600
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def _key_pem(key: ec.EllipticCurvePrivateKey, passphrase: bytes | None) -> bytes:
    # Encrypted PKCS#8 (RFC 5958 EncryptedPrivateKeyInfo) when a state key is given: the TLS
    # layer can load it itself with the passphrase, and a copied file is useless alone.
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(passphrase) if passphrase
        else serialization.NoEncryption())
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             encryption)


def _cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _spki(key: PublicKeyTypes) -> bytes:
    return key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


class Keystore:
    """The device CA and server certificate in `directory`, created on first use and reused."""

    def __init__(
        self,
        directory: Path,
        *,
        hostname: str | None = None,
        addresses: Sequence[str] = (),
        clock: Callable[[], datetime] = _utcnow,
        wrapper: KeyWrapper | None = None,
    ) -> None:
        self._directory = Path(directory)
        self._clock = clock
        self._wrapper = wrapper  # None: keys in clear (unit tests, tools on a copy)
        if hostname:
            self._hostname = self._check_hostname(hostname)
        else:
            try:
                self._hostname = self._check_hostname(socket.gethostname())
            except ValueError:
                log.warning("the host name is not a DNS name; the certificate names localhost")
                self._hostname = "localhost"
        wanted_ips = [ipaddress.ip_address(a) for a in (*_ALWAYS_ADDRESSES, *addresses)]
        self._ips = tuple(dict.fromkeys(wanted_ips))
        dns = [self._hostname, "localhost"]
        if "." not in self._hostname:
            dns.append(f"{self._hostname}.local")  # the mDNS name (RFC 6762)
        self._dns = tuple(dict.fromkeys(dns))
        self._lock = threading.RLock()
        self._ca_key: ec.EllipticCurvePrivateKey | None = None
        self._ca_cert: x509.Certificate | None = None
        self._server_cert: x509.Certificate | None = None
        # The certificate last found current, when, and its fingerprint: system.info asks on
        # every call, and re-parsing the names each time was 15% of the request loop.
        self._checked: tuple[x509.Certificate, datetime, str] | None = None

    def __repr__(self) -> str:
        return f"Keystore({str(self._directory)!r})"

    @staticmethod
    def _check_hostname(hostname: str) -> str:
        name = hostname.strip().rstrip(".").lower()
        if not _HOSTNAME_RE.fullmatch(name):
            raise ValueError(f"not a valid DNS host name: {hostname[:80]!r}")
        return name

    @property
    def directory(self) -> Path:
        """Where the key and certificate files live."""
        return self._directory

    @property
    def ca_certificate(self) -> x509.Certificate:
        """The device CA certificate (the only trust anchor for client certificates)."""
        self._ensure()
        assert self._ca_cert is not None
        return self._ca_cert

    @property
    def ca_certificate_pem(self) -> bytes:
        """The device CA certificate, PEM."""
        return _cert_pem(self.ca_certificate)

    @property
    def server_certificate(self) -> x509.Certificate:
        """The daemon's TLS certificate (re-issued first if expired or missing a name)."""
        self._ensure()
        assert self._server_cert is not None
        return self._server_cert

    @property
    def fingerprint(self) -> str:
        """SHA-256 of the server certificate's DER, lower-case hex: what clients pin."""
        checked = self._checked
        # Re-checked (expiry, names) at most once a minute of the keystore's clock.
        if checked is not None and checked[0] is self._server_cert \
                and timedelta(0) <= self._clock() - checked[1] < _RECHECK:
            return checked[2]
        cert = self.server_certificate
        fingerprint = fingerprint_of(cert.public_bytes(serialization.Encoding.DER))
        self._checked = (cert, self._clock(), fingerprint)
        return fingerprint

    def server_ssl_context(self) -> ssl.SSLContext:
        """TLS 1.3 only; client certificates optional but, if sent, must chain to the device CA."""
        with self._lock:
            self._ensure()
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.minimum_version = ssl.TLSVersion.TLSv1_3
            ctx.maximum_version = ssl.TLSVersion.TLSv1_3
            self.load_server_chain(ctx)
            # Optional so that an unpaired client can still connect and call pair.begin; the
            # API decides what an unauthenticated connection may do.
            ctx.verify_mode = ssl.CERT_OPTIONAL
            ctx.load_verify_locations(cadata=self.ca_certificate_pem.decode("ascii"))
            return ctx

    def load_server_chain(self, ctx: ssl.SSLContext) -> None:
        """Load the server certificate and its key (decrypted with the state key) into ctx."""
        with self._lock:
            self._ensure()
            ctx.load_cert_chain(
                self._directory / SERVER_CERT_FILE, self._directory / SERVER_KEY_FILE,
                password=self._passphrase(SERVER_KEY_FILE),
            )

    def sign_with_device_key(self, data: bytes) -> bytes:
        """ECDSA P-256/SHA-256 by the device CA key over domain-separated bytes (audit
        checkpoints: edged/state/checkpoint.py); DER signature."""
        if data[:1] == b"\x30":  # a DER SEQUENCE could be a certificate's TBS: never
            raise ValueError("refusing to sign DER with the device CA key")
        with self._lock:
            self._ensure()
            assert self._ca_key is not None
            return self._ca_key.sign(data, ec.ECDSA(hashes.SHA256()))

    def issue_client_certificate(
        self,
        name: str,
        public_key_or_csr: bytes,
        scopes: Sequence[str],
        days: int = 825,
    ) -> x509.Certificate:
        """A clientAuth certificate for `name` on the key; ValueError for a bad key or name."""
        name = validate_client_name(name)
        granted = normalise_scopes(scopes)
        if not isinstance(days, int) or not 1 <= days <= _MAX_CLIENT_DAYS:
            raise ValueError(f"days must be between 1 and {_MAX_CLIENT_DAYS}")
        public_key = load_client_public_key(public_key_or_csr)
        with self._lock:
            self._ensure()
            assert self._ca_key is not None and self._ca_cert is not None
            now = self._clock()
            not_after = min(now + timedelta(days=days), self._ca_cert.not_valid_after_utc)
            # Scopes ride along as OU attributes for people reading the certificate; the daemon
            # authorises from the client registry, so a revocation or scope change wins.
            subject = x509.Name(
                [
                    x509.NameAttribute(NameOID.ORGANIZATION_NAME, "bifente client"),
                    *(x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, s) for s in granted),
                    x509.NameAttribute(NameOID.COMMON_NAME, name),
                ]
            )
            cert = (
                x509.CertificateBuilder()
                .subject_name(subject)
                .issuer_name(self._ca_cert.subject)
                .public_key(public_key)
                .serial_number(x509.random_serial_number())
                .not_valid_before(now - BACKDATE)
                .not_valid_after(not_after)
                .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                .add_extension(_key_usage(digital_signature=True), critical=True)
                .add_extension(
                    x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False
                )
                .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), False)
                .add_extension(self._aki(), critical=False)
                .sign(self._ca_key, hashes.SHA256())
            )
        log.info("issued a client certificate for %r (scopes %s)", name, ",".join(granted))
        return cert

    # -- creation and loading -------------------------------------------------------------

    def _ensure(self) -> None:
        with self._lock:
            if self._ca_cert is None:
                self._prepare_directory()
                self._load_or_create_ca()
            if self._server_cert is None or self._server_needs_reissue(self._server_cert):
                self._load_or_issue_server()

    def _prepare_directory(self) -> None:
        self._directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        if self._directory.stat().st_mode & 0o077:
            log.warning("tightening the keystore directory %s to 0700", self._directory)
            os.chmod(self._directory, 0o700)
        for name in (CA_KEY_FILE, CA_CERT_FILE, SERVER_KEY_FILE, SERVER_CERT_FILE):
            path = self._directory / name
            if path.exists() and path.stat().st_mode & 0o077:
                log.warning("tightening %s to 0600", path)
                os.chmod(path, 0o600)

    def _load_or_create_ca(self) -> None:
        key_path, cert_path = self._directory / CA_KEY_FILE, self._directory / CA_CERT_FILE
        if cert_path.exists():
            if not key_path.exists():
                raise KeystoreError(
                    f"{cert_path} exists without {key_path}: restore the key, or remove the "
                    "directory to start a new device CA (every client must then pair again)"
                )
            key = self._load_ec_key(key_path)
            cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
            if _spki(cert.public_key()) != _spki(key.public_key()):
                raise KeystoreError(f"{key_path} does not match {cert_path}")
            self._ca_key, self._ca_cert = key, cert
            return
        # A key without a certificate is a creation cut short: nothing was signed with it yet.
        key = ec.generate_private_key(ec.SECP256R1())
        now = self._clock()
        name = x509.Name(
            [
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, "bifente"),
                x509.NameAttribute(
                    NameOID.COMMON_NAME, f"bifente device CA {secrets.token_hex(4)}"
                ),
            ]
        )
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - BACKDATE)
            .not_valid_after(now + CA_VALIDITY)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(_key_usage(key_cert_sign=True, crl_sign=True), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
            .sign(key, hashes.SHA256())
        )
        _atomic_write(key_path, _key_pem(key, self._passphrase(CA_KEY_FILE)))
        _atomic_write(cert_path, _cert_pem(cert))
        self._ca_key, self._ca_cert = key, cert
        log.info("created a new device CA in %s", self._directory)

    def _passphrase(self, name: str) -> bytes | None:
        return self._wrapper.passphrase(f"keystore/{name}") if self._wrapper else None

    def _load_ec_key(self, path: Path) -> ec.EllipticCurvePrivateKey:
        data = path.read_bytes()
        encrypted = b"ENCRYPTED PRIVATE KEY" in data
        if encrypted and self._wrapper is None:
            raise KeystoreError(f"{path} is encrypted at rest: it needs the state key "
                                "(docs/security.md, Data at rest)")
        try:
            key = serialization.load_pem_private_key(
                data, password=self._passphrase(path.name) if encrypted else None)
        except ValueError:
            if encrypted:
                raise KeystoreError(f"{path} does not open with the state key from "
                                    f"{self._wrapper.source if self._wrapper else '-'}") \
                    from None
            raise
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise KeystoreError(f"{path} is not an EC private key")
        if not encrypted and self._wrapper is not None:
            log.info("encrypting %s at rest with the state key", path)
            _atomic_write(path, _key_pem(key, self._passphrase(path.name)))
        return key

    def _aki(self) -> x509.AuthorityKeyIdentifier:
        assert self._ca_cert is not None
        ski = self._ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
        return x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski.value)

    def _server_needs_reissue(self, cert: x509.Certificate) -> bool:
        if cert.not_valid_after_utc - RENEW_BEFORE <= self._clock():
            return True
        try:
            san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        except x509.ExtensionNotFound:
            return True
        dns = {n.lower() for n in san.get_values_for_type(x509.DNSName)}
        ips = set(san.get_values_for_type(x509.IPAddress))
        return not (set(self._dns) <= dns and set(self._ips) <= ips)

    def _load_or_issue_server(self) -> None:
        assert self._ca_cert is not None
        key_path = self._directory / SERVER_KEY_FILE
        cert_path = self._directory / SERVER_CERT_FILE
        if key_path.exists() and cert_path.exists():
            try:
                key = self._load_ec_key(key_path)
                cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
                cert.verify_directly_issued_by(self._ca_cert)
                usable = _spki(cert.public_key()) == _spki(key.public_key())
            except (ValueError, TypeError, KeystoreError, UnsupportedAlgorithm):
                usable = False
            if usable and not self._server_needs_reissue(cert):
                self._server_cert = cert
                return
            log.info("re-issuing the server certificate (expired, or names changed)")
        self._issue_server()

    def _issue_server(self) -> None:
        assert self._ca_key is not None and self._ca_cert is not None
        key = ec.generate_private_key(ec.SECP256R1())
        now = self._clock()
        not_after = min(now + SERVER_VALIDITY, self._ca_cert.not_valid_after_utc)
        common_name = self._hostname if len(self._hostname) <= 64 else "bifente edged"
        names: list[x509.GeneralName] = [x509.DNSName(n) for n in self._dns]
        names += [x509.IPAddress(ip) for ip in self._ips]
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
            .issuer_name(self._ca_cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - BACKDATE)
            .not_valid_after(not_after)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(_key_usage(digital_signature=True), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), False)
            .add_extension(x509.SubjectAlternativeName(names), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
            .add_extension(self._aki(), critical=False)
            .sign(self._ca_key, hashes.SHA256())
        )
        # Key first: a crash in between leaves a mismatch, which the next start re-issues.
        _atomic_write(self._directory / SERVER_KEY_FILE,
                      _key_pem(key, self._passphrase(SERVER_KEY_FILE)))
        _atomic_write(self._directory / SERVER_CERT_FILE, _cert_pem(cert))
        self._server_cert = cert
        log.info(
            "issued the server certificate for %s (fingerprint %s)",
            ", ".join([*self._dns, *map(str, self._ips)]),
            fingerprint_of(cert.public_bytes(serialization.Encoding.DER)),
        )


def _key_usage(
    *, digital_signature: bool = False, key_cert_sign: bool = False, crl_sign: bool = False
) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=digital_signature,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=key_cert_sign,
        crl_sign=crl_sign,
        encipher_only=False,
        decipher_only=False,
    )
