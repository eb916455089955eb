"""The key that encrypts edged's secrets at rest, kept away from the state directory.

Review M8: the CA, server and consent-signing keys and the queued health documents were in
clear on the SD card; copying `consent-signing.key.pem` off it was enough to forge consents.
They are now encrypted with keys derived (HKDF-SHA256, RFC 5869) from one 32-byte state key
that never sits in the state directory. Where it comes from, in order:

1. A systemd credential `bifente-state-key` (`LoadCredentialEncrypted=` in edged.service):
   systemd decrypts it with `systemd-creds` for the service alone, into
   `$CREDENTIALS_DIRECTORY` (a non-swappable ramfs). On disk it is sealed to the TPM2 when the
   Pi has one, else to the host key `/var/lib/systemd/credential.secret` (root only).
2. A key file named in the config (`[state] state_key_file`) or `$BIFENTE_STATE_KEY_FILE`.
3. The same credential for the tools run by root on the Pi (`bifente proxy user add`, `bifente
   audit verify`): they are not the service, so they decrypt
   `/etc/credstore.encrypted/bifente-state-key` themselves with `systemd-creds decrypt`, and
   get the key edged gets; a credential they cannot open is an error, never a new key.
4. Fallback, logged as a warning at every start: a key file outside the state directory
   (the file of 2., else `$XDG_CONFIG_HOME/bifente/state.key`), created 0600 in a 0700
   directory. It keeps the secrets out of a copied state directory or backup, nothing more:
   whoever reads both files has everything. Meant for development machines and tests.

docs/security.md ("Data at rest") says what each protects against.
"""

from __future__ import annotations

import logging
import os
import secrets
import shutil
import subprocess
from pathlib import Path

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

__all__ = ["CREDENTIAL_NAME", "CREDSTORE", "MAGIC", "KeyWrapper", "StateKeyError",
           "decrypt_credential", "load_key_wrapper"]

log = logging.getLogger(__name__)

CREDENTIAL_NAME = "bifente-state-key"
# Where bifente-state-key.service writes the sealed credential (hardware/pi/), and where
# systemd's LoadCredentialEncrypted= in edged.service reads it.
CREDSTORE = Path("/etc/credstore.encrypted") / CREDENTIAL_NAME
MAGIC = b"BFS1"  # sealed blob: MAGIC || 12-byte nonce || AES-256-GCM ciphertext and tag
_KEY_BYTES = 32
_INFO = b"bifente-state-v1/"  # HKDF info prefix: one key per purpose (RFC 5869 §3.2)


class StateKeyError(RuntimeError):
    """The state key is missing, unreadable, or does not open what it should."""


class KeyWrapper:
    """Derives per-purpose keys from the state key; seals and opens blobs with AES-256-GCM."""

    def __init__(self, master: bytes, source: str, *, hardware_bound: bool) -> None:
        if len(master) < _KEY_BYTES:
            raise StateKeyError(f"the state key from {source} is shorter than 32 bytes")
        self._master = bytes(master)
        self.source = source
        self.hardware_bound = hardware_bound

    def __repr__(self) -> str:
        return f"KeyWrapper({self.source!r})"  # never the key

    def derive(self, purpose: str) -> bytes:
        """A 32-byte key for one purpose (say, "keystore/ca.key")."""
        return HKDF(algorithm=hashes.SHA256(), length=_KEY_BYTES, salt=None,
                    info=_INFO + purpose.encode()).derive(self._master)

    def passphrase(self, purpose: str) -> bytes:
        """A passphrase for an encrypted PKCS#8 PEM (the TLS layer loads those itself)."""
        return self.derive(purpose).hex().encode()

    def seal(self, purpose: str, plaintext: bytes, context: bytes = b"") -> bytes:
        """Encrypt; `context` (say, a queue id) is authenticated so blobs cannot be swapped."""
        nonce = secrets.token_bytes(12)
        return MAGIC + nonce + AESGCM(self.derive(purpose)).encrypt(
            nonce, plaintext, MAGIC + purpose.encode() + b"\0" + context)

    def open(self, purpose: str, blob: bytes, context: bytes = b"") -> bytes:
        """Decrypt a sealed blob; StateKeyError when it was sealed with another key or edited."""
        if not is_sealed(blob):
            raise StateKeyError(f"{purpose}: not a sealed blob")
        try:
            return AESGCM(self.derive(purpose)).decrypt(
                blob[4:16], blob[16:], MAGIC + purpose.encode() + b"\0" + context)
        except Exception:  # cryptography's InvalidTag: say what it means
            raise StateKeyError(f"{purpose}: cannot be opened with the state key from "
                                f"{self.source} (another key, or the data was altered)") \
                from None


def is_sealed(blob: bytes) -> bool:
    """True for a blob made by `KeyWrapper.seal`."""
    return len(blob) > 16 + 16 and blob[:4] == MAGIC


def _default_key_file() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "bifente" / "state.key"


def _read_or_create(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    key = secrets.token_bytes(_KEY_BYTES)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process made it first
        return path.read_bytes()
    with os.fdopen(fd, "wb") as out:
        out.write(key)
        out.flush()
        os.fsync(out.fileno())
    return key


def decrypt_credential(path: Path) -> bytes:
    """The state key from a credential sealed by `systemd-creds encrypt` (TPM2 or host key):
    what systemd does for the service, done by a tool run as root on the same machine."""
    tool = shutil.which("systemd-creds")
    if tool is None:
        raise StateKeyError(f"{path} is a systemd credential but systemd-creds is not "
                            "installed")
    try:
        done = subprocess.run([tool, "decrypt", f"--name={CREDENTIAL_NAME}", str(path), "-"],
                              capture_output=True, timeout=60, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise StateKeyError(f"systemd-creds cannot decrypt {path}: {exc}") from None
    if done.returncode != 0:
        detail = done.stderr.decode("utf-8", "replace").strip().splitlines()
        raise StateKeyError(f"systemd-creds cannot decrypt {path} (run it as root on the "
                            f"machine that sealed it): {detail[-1] if detail else done.returncode}")
    return done.stdout


def load_key_wrapper(state_dir: Path, key_file: str = "", *, create: bool = True,
                     credstore: Path = CREDSTORE) -> KeyWrapper:
    """The state key: the service's systemd credential, a configured key file, the sealed
    credential (tools run as root), else the fallback file (logged as such); `create` False
    (tools) never makes a new fallback key."""
    credentials = os.environ.get("CREDENTIALS_DIRECTORY")
    if credentials and (Path(credentials) / CREDENTIAL_NAME).is_file():
        path = Path(credentials) / CREDENTIAL_NAME
        log.info("state key: systemd credential %s (systemd-creds: TPM2 if present, else "
                 "the host key)", CREDENTIAL_NAME)
        return KeyWrapper(path.read_bytes(), f"systemd credential {CREDENTIAL_NAME}",
                          hardware_bound=True)
    chosen = key_file or os.environ.get("BIFENTE_STATE_KEY_FILE", "")
    if not chosen and credstore.is_file():
        log.info("state key: systemd credential %s, decrypted with systemd-creds", credstore)
        return KeyWrapper(decrypt_credential(credstore), f"systemd credential {credstore}",
                          hardware_bound=True)
    path = Path(chosen) if chosen else _default_key_file()
    resolved, state = path.resolve(), state_dir.resolve()
    if resolved == state or state in resolved.parents:
        raise StateKeyError(f"the state key file {path} is inside the state directory "
                            f"{state_dir}: keep it elsewhere (it must not travel with the data)")
    try:
        master = _read_or_create(path) if create else path.read_bytes()
    except OSError as exc:
        raise StateKeyError(f"cannot read or create the state key file {path}: "
                            f"{exc.strerror or exc}") from None
    log.warning("state key: FALLBACK key file %s (no systemd credential %s): secrets at rest "
                "are out of the state directory but not bound to this machine; see "
                "docs/security.md", path, CREDENTIAL_NAME)
    return KeyWrapper(master, f"key file {path}", hardware_bound=False)
