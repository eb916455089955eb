"""Signed audit checkpoints: (sequence, head hash), signed by the device, kept off the device.

The anchor and its MAC key live on the Pi, so whoever holds root there can rewrite both
(docs/audit.md). A checkpoint fetched by an admin client (`audit.checkpoint`) and stored
elsewhere pins the chain up to `seq`: a later log that is shorter (truncated), or whose
record `seq` has another hash (rewritten, or cut and forged past that point), disagrees with
it, and `bifente audit verify --checkpoint FILE` says so.

Format (JSON): {"v": 1, "seq", "hash", "issued" (unix), "device" (SHA-256 of the device CA
certificate's DER), "signature" (base64 DER ECDSA P-256/SHA-256 over TAG + the canonical
JSON of the five fields before it), "certificate" (the device CA, PEM)}.
"""

from __future__ import annotations

import base64
import json
import re
import time
from collections.abc import Callable
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from bifente.client.identity import fingerprint_of

__all__ = ["TAG", "CheckpointError", "make_checkpoint", "verify_checkpoint"]

# Domain separation: these bytes can never be mistaken for a certificate's TBS (a DER
# SEQUENCE starts with 0x30), so signing them with the CA key issues nothing.
TAG = b"bifente-audit-checkpoint-v1\n"
_HEX64 = re.compile(r"[0-9a-f]{64}")
_MAX_BYTES = 16 * 1024


class CheckpointError(ValueError):
    """Not a checkpoint, or its signature does not verify."""


def _signed_bytes(body: dict[str, Any]) -> bytes:
    return TAG + json.dumps(body, sort_keys=True, separators=(",", ":")).encode()


def make_checkpoint(seq: int, digest: str, *, sign: Callable[[bytes], bytes],
                    certificate_pem: bytes,
                    clock: Callable[[], float] = time.time) -> dict[str, Any]:
    """A checkpoint of the log at (seq, digest), signed with `sign` (the device CA key)."""
    cert = x509.load_pem_x509_certificate(certificate_pem)
    device = fingerprint_of(cert.public_bytes(serialization.Encoding.DER))
    body = {"v": 1, "seq": seq, "hash": digest, "issued": int(clock()), "device": device}
    signature = sign(_signed_bytes(body))
    return {**body, "signature": base64.b64encode(signature).decode(),
            "certificate": certificate_pem.decode("ascii")}


def verify_checkpoint(data: bytes | dict[str, Any], *,
                      device: str | None = None) -> tuple[int, str]:
    """(seq, hash) of a checkpoint whose signature verifies; `device` pins the CA."""
    if isinstance(data, bytes):
        if len(data) > _MAX_BYTES:
            raise CheckpointError("the checkpoint file is too large")
        try:
            data = json.loads(data)
        except ValueError:
            raise CheckpointError("the checkpoint is not JSON") from None
    if not isinstance(data, dict) or data.get("v") != 1:
        raise CheckpointError("not a bifente audit checkpoint (v 1)")
    seq, digest, issued, dev = (data.get(k) for k in ("seq", "hash", "issued", "device"))
    if type(seq) is not int or seq < 0 or not isinstance(digest, str) \
            or not _HEX64.fullmatch(digest) or type(issued) is not int \
            or not isinstance(dev, str) or not _HEX64.fullmatch(dev):
        raise CheckpointError("the checkpoint's fields are malformed")
    try:
        cert = x509.load_pem_x509_certificate(str(data.get("certificate", "")).encode())
        signature = base64.b64decode(str(data.get("signature", "")), validate=True)
    except ValueError:
        raise CheckpointError("the checkpoint's certificate or signature is malformed") from None
    actual = fingerprint_of(cert.public_bytes(serialization.Encoding.DER))
    if actual != dev or (device is not None and device.lower() != dev):
        raise CheckpointError("the checkpoint was signed by another device")
    key = cert.public_key()
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise CheckpointError("the checkpoint's certificate has no EC key")
    body = {"v": 1, "seq": seq, "hash": digest, "issued": issued, "device": dev}
    try:
        key.verify(signature, _signed_bytes(body), ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        raise CheckpointError("the checkpoint's signature does not verify") from None
    return seq, digest
