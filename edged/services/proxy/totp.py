"""Emission codes: RFC 4226 HOTP, RFC 6238 TOTP, and where a code travels (the Subject).

docs/messaging.md ("The encrypting proxy") says how staff get and type them.
"""

from __future__ import annotations

import base64
import hmac
import re
import struct
import urllib.parse

__all__ = ["CODE_PATTERN", "DIGITS", "STEP", "WINDOW", "extract_code", "hotp", "matching_steps",
           "otpauth_uri", "totp"]

STEP = 30  # RFC 6238 X, seconds
DIGITS = 6
WINDOW = 1  # steps accepted either side of now (clock drift of the phone)
# Where the code travels: a `[code:123456]` tag in the Subject, the one thing every mail client
# lets a user type (best at the start; anywhere is accepted, e.g. after a "Re: ").
CODE_PATTERN = re.compile(r"\[\s*code\s*[:=]?\s*(\d{6})\s*\]", re.IGNORECASE)
_ANY_CODE = re.compile(r"\[\s*code\b[^\]]*\]", re.IGNORECASE)


def hotp(secret: bytes, counter: int, digits: int = DIGITS, digest: str = "sha1") -> str:
    """RFC 4226 HOTP: dynamic truncation of HMAC(secret, counter as 8 bytes big-endian)."""
    mac = hmac.new(secret, struct.pack(">Q", counter), digest).digest()
    offset = mac[-1] & 0x0F
    value = struct.unpack(">I", mac[offset:offset + 4])[0] & 0x7FFFFFFF
    return str(value % 10**digits).zfill(digits)


def totp(secret: bytes, at: float, *, digits: int = DIGITS, step: int = STEP,
         digest: str = "sha1") -> str:
    """RFC 6238 TOTP at Unix time `at` (T0 = 0)."""
    return hotp(secret, int(at) // step, digits, digest)


def matching_steps(secret: bytes, code: str, at: float) -> list[int]:
    """The time steps within WINDOW of `at` whose code is `code` (compared in constant time)."""
    now = int(at) // STEP
    return [s for s in range(now - WINDOW, now + WINDOW + 1)
            if hmac.compare_digest(hotp(secret, s), code)]


def otpauth_uri(secret: bytes, name: str, issuer: str) -> str:
    """The Key URI format authenticator apps read (QR code or pasted)."""
    label = urllib.parse.quote(f"{issuer}:{name}")
    query = urllib.parse.urlencode({"secret": base64.b32encode(secret).decode().rstrip("="),
                                    "issuer": issuer, "algorithm": "SHA1",
                                    "digits": DIGITS, "period": STEP})
    return f"otpauth://totp/{label}?{query}"


def extract_code(subject: str) -> tuple[str | None, str]:
    """(the first code, the subject without any `[code...]` tag): no tag is ever relayed."""
    match = CODE_PATTERN.search(subject)
    if not _ANY_CODE.search(subject):
        return None, subject
    clean = " ".join(_ANY_CODE.sub(" ", subject).split())
    return (match.group(1) if match else None), clean
