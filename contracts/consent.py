"""The patient consent record: what the terminal's device key signs and the DMP host checks.

Format (docs/dmp-api.md, "Consent records"): a JSON object with exactly RECORD_FIELDS,

    {"v": 1, "ins": ..., "professional": <national id>, "action": "read"|"feed"|"create",
     "express": bool, "issued": <unix>, "expires": <unix>, "nonce": <base64 16 bytes>,
     "device": <device id>}

canonicalised as JSON with sorted keys, compact separators and UTF-8 (no escaping of
non-ASCII), signed with ECDSA P-256 / SHA-256 (DER), and sent as the envelope
{"record": {...}, "signature": <base64>}, base64 of its JSON in the CONSENT_HEADER header.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping

__all__ = ["ACTIONS", "CONSENT_HEADER", "RECORD_FIELDS", "VERSION", "canonical_json",
           "encode_header"]

CONSENT_HEADER = "X-DMP-Consent"
VERSION = 1
ACTIONS = ("read", "feed", "create")
RECORD_FIELDS = frozenset({"v", "ins", "professional", "action", "express", "issued",
                           "expires", "nonce", "device"})


def canonical_json(record: Mapping[str, object]) -> bytes:
    """The signed bytes: sorted keys, "," and ":" separators, UTF-8, no escaping of non-ASCII."""
    return json.dumps(record, sort_keys=True, separators=(",", ":"),
                      ensure_ascii=False).encode("utf-8")


def encode_header(envelope: Mapping[str, object]) -> str:
    """The consent header's value: base64 of the envelope's compact JSON."""
    return base64.b64encode(json.dumps(envelope, separators=(",", ":")).encode()).decode()
