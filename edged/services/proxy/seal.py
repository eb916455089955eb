"""The structure's seal key: stored encrypted, its passphrase derived from the state key.

The key is PKCS#8 ENCRYPTED PRIVATE KEY (RFC 5958; PBES2, AES-256-CBC) in
`<state_dir>/proxy/seal.key.pem`, its certificate and chain in `seal.crt.pem`. The passphrase
is derived from the state key (edged/state/keywrap.py), which never sits in the state
directory, unless `[proxy] seal_secret_file` names a passphrase kept elsewhere (a removable
key). An older install kept a random passphrase beside the key (`proxy/seal.secret`, review
M8); it is re-encrypted under the state key and that file removed when the seal is loaded.
docs/security.md, "Data at rest".
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey

from bifente.edged.config import ConfigError
from bifente.edged.services import cms
from bifente.edged.state.keystore import _atomic_write
from bifente.edged.state.keywrap import KeyWrapper
from bifente.edged.state.proxy_users import proxy_dir

__all__ = ["LEGACY_FILE", "SEAL_PURPOSE", "SealError", "import_seal", "load_seal"]

log = logging.getLogger(__name__)

SEAL_PURPOSE = "proxy/seal.key"
LEGACY_FILE = "seal.secret"  # the passphrase older installs kept beside the key


class SealError(ConfigError):
    """The seal key or certificate is missing, does not match, or cannot be decrypted."""


def _read_secret(path: Path) -> bytes:
    try:
        secret = path.read_bytes().strip()
    except OSError as exc:
        raise SealError(f"cannot read the seal secret {path}: {exc.strerror}") from None
    if len(secret) < 16:
        raise SealError(f"the seal secret {path} is shorter than 16 bytes")
    return secret


def _passphrase(wrapper: KeyWrapper | None, secret_file: Path | None) -> bytes:
    if secret_file is not None:
        return _read_secret(secret_file)
    if wrapper is None:
        raise SealError("the seal key needs the state key or [proxy] seal_secret_file")
    return wrapper.passphrase(SEAL_PURPOSE)


def import_seal(state_dir: Path, certificate: Path, key: Path, chain: Sequence[Path] = (),
                *, wrapper: KeyWrapper | None = None, secret_file: Path | None = None,
                key_password: bytes | None = None) -> Path:
    """Store the structure's seal certificate and its key, the key encrypted under the state
    key (or `secret_file`'s passphrase); returns the key path."""
    folder = proxy_dir(state_dir)
    cert = x509.load_pem_x509_certificate(certificate.read_bytes())
    private = serialization.load_pem_private_key(key.read_bytes(), password=key_password)
    if not isinstance(private, RSAPrivateKey):
        raise SealError("the seal key must be an RSA key (the profile signs with RSA PKCS#1 v1.5)")
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    der = serialization.Encoding.DER
    if private.public_key().public_bytes(der, spki) != cert.public_key().public_bytes(der, spki):
        raise SealError(f"{key} does not match the certificate {certificate}")
    pems = [cert.public_bytes(serialization.Encoding.PEM)]
    pems += [x509.load_pem_x509_certificate(p.read_bytes()).public_bytes(
        serialization.Encoding.PEM) for p in chain]
    _store_key(folder, private, _passphrase(wrapper, secret_file),
               drop_legacy=secret_file is None)
    _atomic_write(folder / "seal.crt.pem", b"".join(pems))
    return folder / "seal.key.pem"


def _store_key(folder: Path, private: RSAPrivateKey, passphrase: bytes, *,
               drop_legacy: bool) -> None:
    encrypted = private.private_bytes(serialization.Encoding.PEM,
                                      serialization.PrivateFormat.PKCS8,
                                      serialization.BestAvailableEncryption(passphrase))
    _atomic_write(folder / "seal.key.pem", encrypted)
    legacy = folder / LEGACY_FILE
    if drop_legacy and legacy.exists():  # the key is under the state key now: never left
        os.unlink(legacy)


def load_seal(state_dir: Path, wrapper: KeyWrapper | None = None,
              secret_file: Path | None = None) -> cms.SoftwareSigner:
    """The seal key decrypted in memory, as a signer (its certificate also encrypts to itself)."""
    folder = Path(state_dir) / "proxy"
    key_path, cert_path = folder / "seal.key.pem", folder / "seal.crt.pem"
    if not key_path.exists() or not cert_path.exists():
        raise SealError(f"no seal key in {folder}: run `bifente proxy seal import`")
    legacy = folder / LEGACY_FILE
    migrate = secret_file is None and legacy.exists() and wrapper is not None
    passphrase = _read_secret(legacy) if migrate else _passphrase(wrapper, secret_file)
    try:
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=passphrase)
    except (ValueError, TypeError):
        raise SealError(f"{key_path} cannot be decrypted with the "
                        f"{'seal secret' if secret_file or migrate else 'state key'}") from None
    if not isinstance(key, RSAPrivateKey):
        raise SealError(f"{key_path} is not an RSA key")
    if migrate and wrapper is not None:
        _store_key(folder, key, wrapper.passphrase(SEAL_PURPOSE), drop_legacy=True)
        log.info("proxy: the seal key is now encrypted under the state key; %s removed",
                 LEGACY_FILE)
    certs = x509.load_pem_x509_certificates(cert_path.read_bytes())
    return cms.SoftwareSigner(key, certs[0], certs[1:], encryption_certificate=certs[0])
