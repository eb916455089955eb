"""PIN objects and the security environment (ISO/IEC 7816-4 §5.4, 7816-8 MSE)."""

from __future__ import annotations

import hmac
from dataclasses import dataclass, field

__all__ = ["Pin", "SecurityEnvironment"]


@dataclass
class Pin:
    """A PIN with a try counter; the value never appears in repr or logs."""

    reference: int
    value: bytes = field(repr=False)
    max_tries: int = 3
    tries_left: int = 3
    min_length: int = 4
    max_length: int = 8
    pad_to: int = 8  # IAS-ECC PINs are stored padded with FF to 8 bytes
    label: str = ""

    @property
    def blocked(self) -> bool:
        """True once no tries are left."""
        return self.tries_left <= 0

    def normalise(self, candidate: bytes) -> bytes:
        """Drop the FF padding a host may add (ISO 9564-style format: digits then FF)."""
        return candidate.rstrip(b"\xff")

    def check(self, candidate: bytes) -> bool:
        """Compare in constant time; update the counter (reset on success)."""
        ok = hmac.compare_digest(self.normalise(candidate), self.value)
        self.tries_left = self.max_tries if ok else self.tries_left - 1
        return ok

    def valid_format(self, candidate: bytes) -> bool:
        """True when the candidate has an acceptable length and only ASCII digits."""
        plain = self.normalise(candidate)
        return self.min_length <= len(plain) <= self.max_length and plain.isdigit()


@dataclass
class SecurityEnvironment:
    """What MSE SET chose and what has been verified since power on."""

    verified: set[int] = field(default_factory=set)
    # Template (B6 DST, A4 AT, B8 CT, AA HT) -> (key reference or None for HT, algorithm)
    templates: dict[int, tuple[int | None, int | None]] = field(default_factory=dict)
    hash_state: bytes | None = field(default=None, repr=False)  # digest awaiting PSO CDS

    def reset(self) -> None:
        """Forget everything: power off, reset or application change."""
        self.verified.clear()
        self.templates.clear()
        self.hash_state = None
