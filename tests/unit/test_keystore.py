"""Keystore files and certificates, and real TLS 1.3 handshakes on 127.0.0.1 (no mocks)."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import ipaddress
import queue
import re
import shutil
import socket
import ssl
import stat
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from bifente.client.tls import (
    PinMismatch,
    check_pinned,
    generate_client_key_and_csr,
    paired_ssl_context,
    pinned_ssl_context,
)
from bifente.edged.state.clients import ClientRegistry
from bifente.edged.state.keystore import (
    CA_CERT_FILE,
    CA_KEY_FILE,
    MAX_KEY_INPUT,
    SERVER_CERT_FILE,
    SERVER_KEY_FILE,
    Keystore,
    KeystoreError,
    fingerprint_of,
    load_client_public_key,
)

FILES = {CA_KEY_FILE, CA_CERT_FILE, SERVER_KEY_FILE, SERVER_CERT_FILE}


def der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.DER)


def pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def key_pem(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def csr_for(key, name: str = "Reception") -> bytes:  # type: ignore[no-untyped-def]
    edwards = ed25519.Ed25519PrivateKey | ed448.Ed448PrivateKey
    algorithm = None if isinstance(key, edwards) else hashes.SHA256()
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .sign(key, algorithm)
    )
    return csr.public_bytes(serialization.Encoding.PEM)


def spki(key, encoding: serialization.Encoding) -> bytes:  # type: ignore[no-untyped-def]
    return key.public_key().public_bytes(encoding, serialization.PublicFormat.SubjectPublicKeyInfo)


class Clock:
    """A wall clock the test moves."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture(scope="module")
def keystore(tmp_path_factory: pytest.TempPathFactory) -> Keystore:
    return Keystore(tmp_path_factory.mktemp("ks") / "keys", hostname="bifente-test")


@pytest.fixture(scope="module")
def other_ca(tmp_path_factory: pytest.TempPathFactory) -> Keystore:
    """Another terminal's keystore: a CA our daemon must not trust."""
    return Keystore(tmp_path_factory.mktemp("other") / "keys", hostname="elsewhere")


# -- files ---------------------------------------------------------------------------------


def test_first_use_creates_private_files_in_a_private_directory(tmp_path: Path) -> None:
    directory = tmp_path / "state" / "keys"
    ks = Keystore(directory, hostname="desk")
    assert not directory.exists()  # created on first use, not on construction
    _ = ks.fingerprint
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    assert {p.name for p in directory.iterdir()} == FILES  # no temporary files left behind
    for path in directory.iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path.name


def test_loose_permissions_are_tightened(tmp_path: Path) -> None:
    _ = Keystore(tmp_path / "k", hostname="desk").fingerprint
    (tmp_path / "k" / CA_KEY_FILE).chmod(0o644)
    (tmp_path / "k").chmod(0o755)
    _ = Keystore(tmp_path / "k", hostname="desk").fingerprint
    assert stat.S_IMODE((tmp_path / "k" / CA_KEY_FILE).stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "k").stat().st_mode) == 0o700


def test_reused_across_instances(tmp_path: Path) -> None:
    first = Keystore(tmp_path / "k", hostname="desk", addresses=["192.0.2.7"])
    fingerprint = first.fingerprint
    before = {p.name: p.read_bytes() for p in (tmp_path / "k").iterdir()}
    second = Keystore(tmp_path / "k", hostname="desk", addresses=["192.0.2.7"])
    assert second.fingerprint == fingerprint
    assert second.ca_certificate == first.ca_certificate
    assert {p.name: p.read_bytes() for p in (tmp_path / "k").iterdir()} == before


def test_reissued_when_names_are_not_covered(tmp_path: Path) -> None:
    first = Keystore(tmp_path / "k", hostname="desk", addresses=["192.0.2.7"])
    fingerprint, ca = first.fingerprint, first.ca_certificate
    # Asking for fewer names than the certificate holds keeps it.
    assert Keystore(tmp_path / "k", hostname="desk").fingerprint == fingerprint
    renamed = Keystore(tmp_path / "k", hostname="front-desk", addresses=["192.0.2.7"])
    assert renamed.fingerprint != fingerprint
    assert renamed.ca_certificate == ca  # a new server certificate, never a new CA
    moved = Keystore(tmp_path / "k", hostname="front-desk", addresses=["2001:db8::5"])
    assert moved.fingerprint != renamed.fingerprint
    san = moved.server_certificate.extensions.get_extension_for_class(
        x509.SubjectAlternativeName
    ).value
    assert ipaddress.ip_address("2001:db8::5") in san.get_values_for_type(x509.IPAddress)
    assert moved.server_certificate.verify_directly_issued_by(ca) is None


def test_reissued_when_expired(tmp_path: Path) -> None:
    clock = Clock(datetime.now(UTC))
    first = Keystore(tmp_path / "k", hostname="desk", clock=clock)
    fingerprint = first.fingerprint
    clock.now += timedelta(days=365)
    assert Keystore(tmp_path / "k", hostname="desk", clock=clock).fingerprint == fingerprint
    clock.now += timedelta(days=365)
    later = Keystore(tmp_path / "k", hostname="desk", clock=clock)
    assert later.fingerprint != fingerprint
    assert later.server_certificate.not_valid_after_utc > clock.now + timedelta(days=700)
    assert later.ca_certificate == first.ca_certificate
    # A long-running daemon notices too, without a restart.
    clock.now += timedelta(days=2 * 365)
    assert later.fingerprint != fingerprint


def test_a_lost_ca_key_is_an_error_not_a_new_ca(tmp_path: Path) -> None:
    _ = Keystore(tmp_path / "k", hostname="desk").fingerprint
    (tmp_path / "k" / CA_KEY_FILE).unlink()
    with pytest.raises(KeystoreError, match="every client must then pair again"):
        _ = Keystore(tmp_path / "k", hostname="desk").fingerprint


def test_a_creation_cut_short_is_completed(tmp_path: Path) -> None:
    first = Keystore(tmp_path / "k", hostname="desk")
    _ = first.fingerprint
    (tmp_path / "k" / SERVER_CERT_FILE).unlink()  # crash between the key and the certificate
    again = Keystore(tmp_path / "k", hostname="desk")
    assert again.ca_certificate == first.ca_certificate
    assert again.fingerprint != first.fingerprint
    (tmp_path / "k" / CA_CERT_FILE).unlink()
    (tmp_path / "k" / SERVER_CERT_FILE).unlink()
    fresh = Keystore(tmp_path / "k", hostname="desk")
    assert fresh.ca_certificate != first.ca_certificate


def test_a_server_certificate_from_another_ca_is_replaced(
    tmp_path: Path, other_ca: Keystore
) -> None:
    ks = Keystore(tmp_path / "k", hostname="elsewhere")
    _ = ks.fingerprint, other_ca.fingerprint  # both created
    shutil.copy(other_ca.directory / SERVER_CERT_FILE, tmp_path / "k" / SERVER_CERT_FILE)
    shutil.copy(other_ca.directory / SERVER_KEY_FILE, tmp_path / "k" / SERVER_KEY_FILE)
    again = Keystore(tmp_path / "k", hostname="elsewhere")
    assert again.fingerprint != other_ca.fingerprint
    again.server_certificate.verify_directly_issued_by(again.ca_certificate)


def test_bad_hostname_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="host name"):
        Keystore(tmp_path, hostname="bad_name!")
    with pytest.raises(ValueError):
        Keystore(tmp_path, hostname="desk", addresses=["not-an-ip"])


# -- certificates --------------------------------------------------------------------------


def test_ca_certificate(keystore: Keystore) -> None:
    ca = keystore.ca_certificate
    (cn,) = ca.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    assert re.fullmatch(r"bifente device CA [0-9a-f]{8}", str(cn.value))
    assert ca.issuer == ca.subject
    ca.verify_directly_issued_by(ca)
    assert isinstance(ca.public_key(), ec.EllipticCurvePublicKey)
    assert ca.public_key().curve.name == "secp256r1"  # type: ignore[union-attr]
    constraints = ca.extensions.get_extension_for_class(x509.BasicConstraints)
    assert constraints.critical and constraints.value.ca and constraints.value.path_length == 0
    usage = ca.extensions.get_extension_for_class(x509.KeyUsage)
    assert usage.critical and usage.value.key_cert_sign and usage.value.crl_sign
    assert not usage.value.digital_signature
    lifetime = ca.not_valid_after_utc - ca.not_valid_before_utc
    assert timedelta(days=20 * 365) <= lifetime <= timedelta(days=20 * 365 + 2)


def test_server_certificate(tmp_path: Path) -> None:
    ks = Keystore(tmp_path / "k", hostname="Desk-3", addresses=["192.0.2.7", "fe80::1"])
    cert = ks.server_certificate
    cert.verify_directly_issued_by(ks.ca_certificate)
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert set(san.get_values_for_type(x509.DNSName)) == {"desk-3", "desk-3.local", "localhost"}
    assert set(san.get_values_for_type(x509.IPAddress)) == {
        ipaddress.ip_address(a) for a in ("127.0.0.1", "::1", "192.0.2.7", "fe80::1")
    }
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.SERVER_AUTH]
    assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    lifetime = cert.not_valid_after_utc - cert.not_valid_before_utc
    assert timedelta(days=2 * 365) <= lifetime <= timedelta(days=2 * 365 + 2)
    assert cert.public_key().curve.name == "secp256r1"  # type: ignore[union-attr]
    assert ks.fingerprint == hashlib.sha256(der(cert)).hexdigest()
    assert re.fullmatch(r"[0-9a-f]{64}", ks.fingerprint)
    assert fingerprint_of(der(cert)) == ks.fingerprint


def test_client_certificate(keystore: Keystore) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    cert = keystore.issue_client_certificate(
        "Reception 2", csr_for(key, "ignored"), ["cps:sign", "identity:read", "cps:sign"]
    )
    cert.verify_directly_issued_by(keystore.ca_certificate)
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "Reception 2"
    ous = [a.value for a in cert.subject.get_attributes_for_oid(NameOID.ORGANIZATIONAL_UNIT_NAME)]
    assert ous == ["identity:read", "cps:sign"]  # deduplicated, in SCOPES order
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert cert.public_key() == key.public_key()
    lifetime = cert.not_valid_after_utc - cert.not_valid_before_utc
    assert timedelta(days=825) <= lifetime <= timedelta(days=827)
    again = keystore.issue_client_certificate("Reception 2", csr_for(key), ["identity:read"])
    assert again.serial_number != cert.serial_number
    assert cert.serial_number.bit_length() > 100  # random, not a counter


@pytest.mark.parametrize(
    "make_key",
    [
        lambda: ec.generate_private_key(ec.SECP256R1()),
        lambda: ec.generate_private_key(ec.SECP384R1()),
        lambda: ed25519.Ed25519PrivateKey.generate(),
        lambda: rsa.generate_private_key(65537, 2048),
    ],
    ids=["p256", "p384", "ed25519", "rsa2048"],
)
def test_accepted_keys_in_every_form(keystore: Keystore, make_key) -> None:  # type: ignore[no-untyped-def]
    key = make_key()
    csr_der = x509.load_pem_x509_csr(csr_for(key)).public_bytes(serialization.Encoding.DER)
    for form in (
        csr_for(key),
        csr_der,
        spki(key, serialization.Encoding.PEM),
        spki(key, serialization.Encoding.DER),
    ):
        cert = keystore.issue_client_certificate("Tablet", form, ["dmp:read"])
        assert cert.public_key() == key.public_key()


@pytest.mark.parametrize(
    ("make_key", "message"),
    [
        (lambda: rsa.generate_private_key(65537, 1024), "1024 bits is too weak"),
        (lambda: ec.generate_private_key(ec.SECP521R1()), "secp521r1 is not accepted"),
        (lambda: ec.generate_private_key(ec.SECP256K1()), "secp256k1 is not accepted"),
        (lambda: ed448.Ed448PrivateKey.generate(), "Ed448 keys are not accepted"),
        (lambda: dsa.generate_private_key(2048), "DSA keys are not accepted"),
    ],
    ids=["rsa1024", "p521", "secp256k1", "ed448", "dsa"],
)
def test_refused_keys(keystore: Keystore, make_key, message: str) -> None:  # type: ignore[no-untyped-def]
    key = make_key()
    forms = [spki(key, serialization.Encoding.PEM), spki(key, serialization.Encoding.DER)]
    if not isinstance(key, dsa.DSAPrivateKey):
        forms.append(csr_for(key))
    for form in forms:
        with pytest.raises(ValueError, match=message):
            keystore.issue_client_certificate("Tablet", form, ["dmp:read"])


def test_refused_inputs(keystore: Keystore) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    good = csr_for(key)
    csr_der = bytearray(x509.load_pem_x509_csr(good).public_bytes(serialization.Encoding.DER))
    csr_der[-5] ^= 0x01  # inside the signature
    with pytest.raises(ValueError, match="signature does not verify"):
        load_client_public_key(bytes(csr_der))
    for junk in (b"", b"hello", b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n"):
        with pytest.raises(ValueError, match="CSR or public key"):
            load_client_public_key(junk)
    with pytest.raises(ValueError, match="larger than"):
        load_client_public_key(good + b"\n" * MAX_KEY_INPUT)
    with pytest.raises(ValueError, match="as bytes"):
        load_client_public_key(good.decode())  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unknown scope 'root'"):
        keystore.issue_client_certificate("Tablet", good, ["root"])
    with pytest.raises(ValueError, match="client name"):
        keystore.issue_client_certificate("Tablet\n", good, ["admin"])
    with pytest.raises(ValueError, match="days"):
        keystore.issue_client_certificate("Tablet", good, ["admin"], days=0)


def test_generated_client_key_and_csr() -> None:
    key_bytes, csr_bytes = generate_client_key_and_csr("Cabinet 1")
    key = serialization.load_pem_private_key(key_bytes, password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.name == "secp256r1"
    csr = x509.load_pem_x509_csr(csr_bytes)
    assert csr.is_signature_valid
    assert csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "Cabinet 1"
    assert csr.public_key() == key.public_key()
    with pytest.raises(ValueError):
        generate_client_key_and_csr("x" * 65)


# -- real TLS on 127.0.0.1 ----------------------------------------------------------------


@dataclass
class Handshake:
    """What the server saw of one connection."""

    ok: bool
    version: str | None = None
    peer_der: bytes | None = None
    error: str | None = None


class TlsServer:
    """A blocking TLS server in a thread: handshakes, answers b"hello", records each peer."""

    def __init__(self, context: ssl.SSLContext) -> None:
        self.context = context
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.2)
        self.port = self.listener.getsockname()[1]
        self.seen: queue.Queue[Handshake] = queue.Queue()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                raw, _ = self.listener.accept()
            except TimeoutError:
                continue
            raw.settimeout(5)
            try:
                with self.context.wrap_socket(raw, server_side=True) as tls:
                    self.seen.put(Handshake(True, tls.version(), tls.getpeercert(True)))
                    tls.sendall(b"hello")
                    with contextlib.suppress(OSError):
                        tls.recv(1)  # until the client closes
            except (ssl.SSLError, OSError) as exc:
                self.seen.put(Handshake(False, error=str(exc)))
            finally:
                raw.close()

    def next(self) -> Handshake:
        return self.seen.get(timeout=10)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.listener.close()


@pytest.fixture
def server(keystore: Keystore) -> Iterator[TlsServer]:
    srv = TlsServer(keystore.server_ssl_context())
    yield srv
    srv.close()


def connect(port: int, context: ssl.SSLContext) -> ssl.SSLSocket:
    raw = socket.create_connection(("127.0.0.1", port), timeout=5)
    try:
        return context.wrap_socket(raw, server_hostname="127.0.0.1")
    except BaseException:
        raw.close()
        raise


def unverified_client(**versions: ssl.TLSVersion) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    for attribute, version in versions.items():
        setattr(ctx, attribute, version)
    return ctx


def write_client(tmp_path: Path, keystore: Keystore, scopes: list[str]) -> tuple[Path, Path]:
    key_bytes, csr_bytes = generate_client_key_and_csr("Reception")
    cert = keystore.issue_client_certificate("Reception", csr_bytes, scopes)
    (tmp_path / "client.pem").write_bytes(pem(cert))
    (tmp_path / "client.key").write_bytes(key_bytes)
    return tmp_path / "client.pem", tmp_path / "client.key"


def test_server_context_is_tls13_only_with_optional_client_certificates(
    keystore: Keystore,
) -> None:
    ctx = keystore.server_ssl_context()
    assert ctx.minimum_version == ssl.TLSVersion.TLSv1_3
    assert ctx.maximum_version == ssl.TLSVersion.TLSv1_3
    assert ctx.verify_mode == ssl.CERT_OPTIONAL
    (anchor,) = ctx.get_ca_certs()  # the device CA and nothing else
    assert int(anchor["serialNumber"], 16) == keystore.ca_certificate.serial_number


def test_tls12_client_refused(server: TlsServer) -> None:
    with pytest.raises(ssl.SSLError):
        connect(server.port, unverified_client(maximum_version=ssl.TLSVersion.TLSv1_2))
    assert not server.next().ok


@pytest.mark.interop
@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")
def test_openssl_s_client_tls12_fails_and_tls13_succeeds(server: TlsServer) -> None:
    def s_client(flag: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["openssl", "s_client", "-connect", f"127.0.0.1:{server.port}", flag, "-brief"],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=30,
        )

    old = s_client("-tls1_2")
    assert old.returncode != 0, old.stdout + old.stderr
    assert not server.next().ok
    new = s_client("-tls1_3")
    assert new.returncode == 0, new.stdout + new.stderr
    assert "Protocol version: TLSv1.3" in new.stderr
    seen = server.next()
    assert seen.ok and seen.version == "TLSv1.3" and seen.peer_der is None


def test_no_client_certificate_is_allowed_and_seen_as_none(
    server: TlsServer, keystore: Keystore
) -> None:
    with connect(server.port, pinned_ssl_context(keystore.fingerprint)) as tls:
        assert tls.version() == "TLSv1.3"
        assert tls.recv(5) == b"hello"
    seen = server.next()
    assert seen.ok and seen.peer_der is None


def test_client_certificate_from_the_keystore_is_accepted_and_visible(
    server: TlsServer, keystore: Keystore, tmp_path: Path
) -> None:
    cert_path, key_path = write_client(tmp_path, keystore, ["identity:read", "cps:sign"])
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    with ClientRegistry(tmp_path / "clients.sqlite") as registry:
        registry.add("Reception", fingerprint_of(der(cert)), ["identity:read", "cps:sign"])
        context = pinned_ssl_context(
            keystore.fingerprint, client_cert=cert_path, client_key=key_path
        )
        with connect(server.port, context) as tls:
            assert tls.recv(5) == b"hello"
        seen = server.next()
        assert seen.ok and seen.peer_der == der(cert)
        client = registry.lookup(fingerprint_of(seen.peer_der))
        assert client is not None and client.name == "Reception"
        assert client.scopes == ("identity:read", "cps:sign") and client.active


def _refused_in_handshake(server: TlsServer, context: ssl.SSLContext) -> Handshake:
    # TLS 1.3: the client may finish its side before the server has checked its certificate;
    # the server's alert then arrives on the first read. Either way no data flows.
    with pytest.raises(ssl.SSLError), connect(server.port, context) as tls:
        tls.recv(5)
    seen = server.next()
    assert not seen.ok
    return seen


def test_client_certificate_from_another_ca_is_refused(
    server: TlsServer, keystore: Keystore, other_ca: Keystore, tmp_path: Path
) -> None:
    cert_path, key_path = write_client(tmp_path, other_ca, ["admin"])
    context = pinned_ssl_context(keystore.fingerprint, client_cert=cert_path, client_key=key_path)
    seen = _refused_in_handshake(server, context)
    assert "certificate verify failed" in (seen.error or "")


def test_server_certificate_cannot_serve_as_a_client_certificate(
    server: TlsServer, keystore: Keystore
) -> None:
    # Signed by the right CA, but its EKU is serverAuth only.
    context = pinned_ssl_context(
        keystore.fingerprint,
        client_cert=keystore.directory / SERVER_CERT_FILE,
        client_key=keystore.directory / SERVER_KEY_FILE,
    )
    seen = _refused_in_handshake(server, context)
    assert "unsuitable certificate purpose" in (seen.error or "")


def test_expired_client_certificate_is_refused(
    server: TlsServer, keystore: Keystore, tmp_path: Path
) -> None:
    past = Keystore(
        keystore.directory,
        hostname="bifente-test",
        clock=Clock(datetime.now(UTC) - timedelta(days=30)),
    )
    key_bytes, csr_bytes = generate_client_key_and_csr("Old tablet")
    cert = past.issue_client_certificate("Old tablet", csr_bytes, ["dmp:read"], days=7)
    (tmp_path / "c.pem").write_bytes(pem(cert))
    (tmp_path / "c.key").write_bytes(key_bytes)
    context = pinned_ssl_context(
        keystore.fingerprint, client_cert=tmp_path / "c.pem", client_key=tmp_path / "c.key"
    )
    seen = _refused_in_handshake(server, context)
    assert "expired" in (seen.error or "")


# -- pinning -------------------------------------------------------------------------------


def test_pinned_context_shape(keystore: Keystore) -> None:
    ctx = pinned_ssl_context(keystore.fingerprint)
    assert ctx.minimum_version == ctx.maximum_version == ssl.TLSVersion.TLSv1_3
    with pytest.raises(ValueError, match="64 hex"):
        pinned_ssl_context("abcd")
    with pytest.raises(ValueError, match="both"):
        pinned_ssl_context(keystore.fingerprint, client_cert=Path("x.pem"))


def test_pinned_right_fingerprint_connects(server: TlsServer, keystore: Keystore) -> None:
    shouted = ":".join(re.findall("..", keystore.fingerprint.upper()))  # as some tools print it
    with connect(server.port, pinned_ssl_context(shouted)) as tls:
        check_pinned(tls, keystore.fingerprint)
        assert tls.recv(5) == b"hello"
    assert server.next().ok


def test_pinned_wrong_fingerprint_fails_in_the_handshake(
    server: TlsServer, keystore: Keystore
) -> None:
    wrong = "ab" * 32
    with pytest.raises(PinMismatch) as caught:
        connect(server.port, pinned_ssl_context(wrong))
    assert isinstance(caught.value, ssl.SSLCertVerificationError)
    assert wrong in str(caught.value) and keystore.fingerprint in str(caught.value)
    assert caught.value.expected == wrong and caught.value.actual == keystore.fingerprint
    server.next()


def test_check_pinned_after_an_ordinary_handshake(server: TlsServer, keystore: Keystore) -> None:
    with connect(server.port, unverified_client()) as tls:
        check_pinned(tls, keystore.fingerprint)
        with pytest.raises(PinMismatch, match=keystore.fingerprint):
            check_pinned(tls, "cd" * 32)
    server.next()


@pytest.mark.asyncio
async def test_pinned_context_under_asyncio(server: TlsServer, keystore: Keystore) -> None:
    reader, writer = await asyncio.open_connection(
        "127.0.0.1", server.port, ssl=pinned_ssl_context(keystore.fingerprint)
    )
    check_pinned(writer.get_extra_info("ssl_object"), keystore.fingerprint)
    assert await reader.readexactly(5) == b"hello"
    writer.close()
    await writer.wait_closed()
    with pytest.raises(PinMismatch):
        await asyncio.open_connection("127.0.0.1", server.port, ssl=pinned_ssl_context("ef" * 32))
    await asyncio.to_thread(server.next)
    await asyncio.to_thread(server.next)


def test_paired_context_trusts_the_device_ca(
    server: TlsServer, keystore: Keystore, other_ca: Keystore, tmp_path: Path
) -> None:
    cert_path, key_path = write_client(tmp_path, keystore, ["identity:read"])
    context = paired_ssl_context(
        keystore.ca_certificate_pem, client_cert=cert_path, client_key=key_path
    )
    with connect(server.port, context) as tls:
        assert tls.recv(5) == b"hello"
    assert server.next().peer_der is not None
    # Another terminal is not this one, whatever its certificate says.
    stranger = TlsServer(other_ca.server_ssl_context())
    try:
        with pytest.raises(ssl.SSLCertVerificationError):
            connect(stranger.port, context)
    finally:
        stranger.close()


def test_a_client_certificate_cannot_pose_as_the_daemon(keystore: Keystore, tmp_path: Path) -> None:
    cert_path, key_path = write_client(tmp_path, keystore, ["admin"])
    rogue_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    rogue_context.load_cert_chain(cert_path, key_path)
    rogue = TlsServer(rogue_context)
    try:
        context = paired_ssl_context(
            keystore.ca_certificate_pem, client_cert=cert_path, client_key=key_path
        )
        with pytest.raises(ssl.SSLCertVerificationError, match="unsuitable certificate purpose"):
            connect(rogue.port, context)
    finally:
        rogue.close()
