"""How a terminal and its clients name each other: certificate fingerprints, client names.

The fingerprint is published in the DNS-SD advert (docs/discovery.md, TXT `fp`), pinned by
clients (docs/pairing.md), the key of a paired client in the daemon's registry, and the
device named by an audit checkpoint (docs/audit.md). A client name is what pairing shows on
the terminal and puts in the client certificate's CN. The daemon and the clients take both
rules from here.
"""

from __future__ import annotations

import hashlib
import re

__all__ = ["MAX_NAME_LENGTH", "fingerprint_of", "validate_client_name", "validate_fingerprint"]

MAX_NAME_LENGTH = 64  # also the X.509 upper bound for a CN (RFC 5280 ub-common-name)
_NAME_RE = re.compile(r"[A-Za-z0-9 ._-]{1,64}")
_FINGERPRINT_RE = re.compile(r"[0-9a-f]{64}")


def fingerprint_of(der: bytes) -> str:
    """SHA-256 of a certificate's DER: 64 lower-case hex digits."""
    return hashlib.sha256(der).hexdigest()


def validate_client_name(name: object) -> str:
    """Return `name` if it is 1-64 of [A-Za-z0-9 ._-] without edge spaces, else ValueError."""
    if (
        not isinstance(name, str)
        or len(name) > MAX_NAME_LENGTH
        or not _NAME_RE.fullmatch(name)
        or name.strip() != name
    ):
        raise ValueError(
            "a client name is 1 to 64 characters among letters, digits, space, '.', '_' "
            "and '-', not starting or ending with a space"
        )
    return name


def validate_fingerprint(fingerprint: object) -> str:
    """A SHA-256 fingerprint as 64 lower-case hex digits (colons allowed), else ValueError."""
    if isinstance(fingerprint, str) and len(fingerprint) <= 128:
        normalised = fingerprint.replace(":", "").strip().lower()
        if _FINGERPRINT_RE.fullmatch(normalised):
            return normalised
    raise ValueError("a certificate fingerprint is 64 hex digits (SHA-256 of the certificate DER)")
