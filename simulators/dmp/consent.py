"""Consent records: the patient's OK on the terminal, signed by the terminal's device key.

Format (docs/dmp-api.md): a JSON object {v, ins, professional, action, express, issued, expires,
nonce, device}, canonicalised (sorted keys, compact separators, UTF-8) and signed with ECDSA
P-256 / SHA-256 (DER, base64); sent as {"record": {...}, "signature": "..."}, base64 in the
`X-DMP-Consent` header. The host checks it here; replays are refused by the storage layer,
in the same transaction as the operation the record authorises.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from bifente.contracts.consent import CONSENT_HEADER, RECORD_FIELDS, canonical_json, encode_header
from bifente.simulators.dmp.codes import CONSENT_ACTIONS, Reason, Refused

__all__ = [
    "CONSENT_HEADER",
    "ConsentRecord",
    "canonical_json",
    "decode_header",
    "encode_header",
    "load_device_key",
    "verify_consent",
]

FIELDS = RECORD_FIELDS
MAX_HEADER = 4096
_DEVICE = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")


def decode_header(value: str) -> object:
    """The envelope from an X-DMP-Consent header (Refused consent_invalid)."""
    if len(value) > MAX_HEADER:
        raise Refused(Reason.CONSENT_INVALID, "the consent header is too long")
    try:
        return json.loads(base64.b64decode(value, validate=True))
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise Refused(Reason.CONSENT_INVALID, "the consent header is not base64 JSON") from None


def load_device_key(pem: str | bytes) -> ec.EllipticCurvePublicKey:
    """A device's enrolled public key: PEM, ECDSA P-256 only (ValueError otherwise)."""
    key = serialization.load_pem_public_key(pem.encode() if isinstance(pem, str) else pem)
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve,
                                                                        ec.SECP256R1):
        raise ValueError("device keys are ECDSA P-256 (secp256r1)")
    return key


@dataclass(frozen=True)
class ConsentRecord:
    """A verified consent record."""

    ins: str = field(repr=False)
    professional: str
    action: str
    express: bool
    issued: int
    expires: int
    nonce: str
    device: str


def _int(record: Mapping[str, object], name: str) -> int:
    value = record.get(name)
    if type(value) is not int:  # bool is an int in Python: refused too
        raise Refused(Reason.CONSENT_INVALID, f"consent record: {name} must be an integer")
    return value


def _str(record: Mapping[str, object], name: str) -> str:
    value = record.get(name)
    if not isinstance(value, str) or not value:
        raise Refused(Reason.CONSENT_INVALID, f"consent record: {name} must be a string")
    return value


def _parse(envelope: object) -> tuple[ConsentRecord, Mapping[str, object], bytes]:
    if not isinstance(envelope, dict) or set(envelope) != {"record", "signature"}:
        raise Refused(Reason.CONSENT_INVALID, 'a consent is {"record": {...}, "signature": ...}')
    record = envelope["record"]
    if not isinstance(record, dict) or set(record) != FIELDS:
        raise Refused(Reason.CONSENT_INVALID,
                      f"consent record fields are exactly: {', '.join(sorted(FIELDS))}")
    if _int(record, "v") != 1:
        raise Refused(Reason.CONSENT_INVALID, "consent record version must be 1")
    action = _str(record, "action")
    if action not in CONSENT_ACTIONS:
        raise Refused(Reason.CONSENT_INVALID, "consent action must be read, feed or create")
    if not isinstance(record["express"], bool):
        raise Refused(Reason.CONSENT_INVALID, "consent record: express must be true or false")
    nonce = _str(record, "nonce")
    try:
        if len(base64.b64decode(nonce, validate=True)) != 16:
            raise ValueError
    except (binascii.Error, ValueError):
        raise Refused(Reason.CONSENT_INVALID, "consent nonce must be 16 bytes, base64") from None
    device = _str(record, "device")
    if not _DEVICE.match(device):
        raise Refused(Reason.CONSENT_INVALID, "consent device id: 1-64 of A-Z a-z 0-9 . _ : -")
    try:
        signature = base64.b64decode(_str(envelope, "signature"), validate=True)
    except binascii.Error:
        raise Refused(Reason.CONSENT_FORGED, "the consent signature is not base64") from None
    parsed = ConsentRecord(_str(record, "ins"), _str(record, "professional"), action,
                           record["express"], _int(record, "issued"), _int(record, "expires"),
                           nonce, device)
    return parsed, record, signature


def verify_consent(envelope: object, *,
                   device_key: Callable[[str], ec.EllipticCurvePublicKey | None],
                   ins: str, professional: str, action: str, now: float,
                   max_lifetime: int, skew: int) -> ConsentRecord:
    """Check a consent envelope for this request; raises Refused with the consent_* reason."""
    record, raw, signature = _parse(envelope)
    key = device_key(record.device)
    if key is None:  # an unknown (or revoked) device cannot vouch for anything
        raise Refused(Reason.CONSENT_FORGED, "the consent was signed by an unknown device")
    try:
        key.verify(signature, canonical_json(raw), ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        raise Refused(Reason.CONSENT_FORGED, "the consent signature does not verify") from None
    for name, got, want in (("patient", record.ins, ins),
                            ("professional", record.professional, professional),
                            ("action", record.action, action)):
        if got != want:
            raise Refused(Reason.CONSENT_MISMATCH, f"the consent is for another {name}")
    if record.expires <= record.issued or record.expires - record.issued > max_lifetime:
        raise Refused(Reason.CONSENT_INVALID,
                      f"a consent lasts more than 0 and at most {max_lifetime} s")
    if record.issued > now + skew:
        raise Refused(Reason.CONSENT_NOT_YET_VALID, "the consent was issued in the future")
    if now > record.expires + skew:
        raise Refused(Reason.CONSENT_EXPIRED, "the consent has expired")
    return record
