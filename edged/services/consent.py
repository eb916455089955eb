"""Patient consent records: the terminal's signed statement that the patient said yes.

The patient answers OK on the terminal (with the Vitale card present); edged then signs a
record bound to the patient's INS, the professional, the action and an expiry with its device
key, and the DMP host checks it (docs/dmp-api.md, "Consent records"). The format:

    {"v": 1, "ins": ..., "professional": <national id>, "action": "read"|"feed"|"create",
     "express": bool, "issued": <unix>, "expires": <unix>, "nonce": <base64 16 bytes>,
     "device": <device id>}

canonicalised as JSON with sorted keys, compact separators, UTF-8; signed with ECDSA P-256 /
SHA-256 (DER), sent as {"record": {...}, "signature": <base64>}.
"""

from __future__ import annotations

import base64
import hashlib
import os
import secrets
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from bifente.contracts.consent import ACTIONS, VERSION, canonical_json
from bifente.edged.state.keywrap import KeyWrapper

__all__ = ["ACTIONS", "ConsentSigner", "verify_record"]

KEY_FILE = "consent-signing.key.pem"


class ConsentSigner:
    """The device key that signs consent records (ECDSA P-256, a 0600 file in the keystore,
    encrypted with the state key when one is given: review M8)."""

    def __init__(self, directory: Path, *, clock: Callable[[], float] = time.time,
                 wrapper: KeyWrapper | None = None) -> None:
        self.clock = clock
        path = directory / KEY_FILE
        passphrase = wrapper.passphrase(f"keystore/{KEY_FILE}") if wrapper else None
        if path.exists():
            data = path.read_bytes()
            encrypted = b"ENCRYPTED PRIVATE KEY" in data
            if encrypted and passphrase is None:
                raise ValueError(f"{path.name} is encrypted at rest: it needs the state key")
            key = serialization.load_pem_private_key(data,
                                                     password=passphrase if encrypted else None)
            if not isinstance(key, ec.EllipticCurvePrivateKey):
                raise ValueError(f"{path.name} is not an EC key")
            if passphrase is not None and not encrypted:  # written by an older edged
                _write_key(path, key, passphrase)
        else:
            directory.mkdir(parents=True, exist_ok=True, mode=0o700)
            key = ec.generate_private_key(ec.SECP256R1())
            _write_key(path, key, passphrase)
        self._key = key

    @property
    def public_key_pem(self) -> str:
        """What the DMP host enrolls for this terminal."""
        return self._key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()

    @property
    def device_id(self) -> str:
        """A stable id: the first 16 hex digits of SHA-256(SubjectPublicKeyInfo DER)."""
        der = self._key.public_key().public_bytes(serialization.Encoding.DER,
                                                  serialization.PublicFormat.SubjectPublicKeyInfo)
        return "bifente-" + hashlib.sha256(der).hexdigest()[:16]

    def sign(self, *, ins: str, professional: str, action: str, express: bool = False,
             ttl: float = 900.0) -> dict[str, Any]:
        """A signed consent record valid for `ttl` seconds."""
        if action not in ACTIONS:
            raise ValueError(f"action must be one of {', '.join(ACTIONS)}")
        if not 0 < ttl <= 24 * 3600:
            raise ValueError("a consent record lives between 1 s and 24 h")
        now = int(self.clock())
        record = {"v": VERSION, "ins": ins, "professional": professional, "action": action,
                  "express": express, "issued": now, "expires": now + int(ttl),
                  "nonce": base64.b64encode(secrets.token_bytes(16)).decode(),
                  "device": self.device_id}
        signature = self._key.sign(canonical_json(record), ec.ECDSA(hashes.SHA256()))
        return {"record": record, "signature": base64.b64encode(signature).decode()}


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey, passphrase: bytes | None) -> None:
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(passphrase) if passphrase
        else serialization.NoEncryption())
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            encryption)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(pem)
        out.flush()
        os.fsync(out.fileno())
    os.replace(tmp, path)


def verify_record(signed: dict[str, Any], public_key_pem: str) -> dict[str, Any]:
    """Check a record's signature with a device public key; returns the record (tests, tools)."""
    key = serialization.load_pem_public_key(public_key_pem.encode())
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise ValueError("not an EC public key")
    key.verify(base64.b64decode(signed["signature"]), canonical_json(signed["record"]),
               ec.ECDSA(hashes.SHA256()))
    return dict(signed["record"])
