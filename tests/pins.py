"""Whether a PIN shows in text: the digits on their own, not inside a hex string (a
certificate fingerprint or a hash may hold "1234" by chance, 1 time in about 1,000)."""

from __future__ import annotations

import re

__all__ = ["shows_pin"]


def shows_pin(text: str, pin: str) -> bool:
    """True if `pin` appears in `text` with no hex digit or letter right before or after it."""
    return re.search(rf"(?<![0-9A-Za-z]){re.escape(pin)}(?![0-9A-Za-z])", text) is not None
