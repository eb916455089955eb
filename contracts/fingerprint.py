"""The certificate fingerprint: how edged and its clients name a certificate.

The same value is published in the DNS-SD advert (contracts/mdns.py, TXT `fp`), pinned by
clients (docs/pairing.md), the key of a paired client in the registry, and the device named
by an audit checkpoint (docs/audit.md).
"""

from __future__ import annotations

import hashlib

__all__ = ["fingerprint_of"]


def fingerprint_of(der: bytes) -> str:
    """SHA-256 of a certificate's DER: 64 lower-case hex digits."""
    return hashlib.sha256(der).hexdigest()
