"""Preparing a staff member's message for signing: 7-bit content (RFC 8551 §3.1.2)."""

from __future__ import annotations

import binascii
import quopri
from typing import Any

__all__ = ["seven_bit"]


def seven_bit(msg: Any) -> None:
    """Re-encode 8bit/binary parts (clients send them when 8BITMIME is offered) for signing.

    RFC 8551 §3.1.2: signed content must be 7-bit; text becomes quoted-printable, the rest
    base64. The decoded content is unchanged, byte for byte.
    """
    for part in msg.walk():
        if part.is_multipart():
            continue
        cte = str(part.get("Content-Transfer-Encoding", "7bit")).strip().lower()
        payload = part.get_payload()
        if cte not in ("8bit", "binary") and (not isinstance(payload, str) or payload.isascii()):
            continue
        data = part.get_payload(decode=True) or b""
        del part["Content-Transfer-Encoding"]
        if part.get_content_maintype() == "text":
            encoded = quopri.encodestring(data.replace(b"\r\n", b"\n")).decode("ascii")
            part["Content-Transfer-Encoding"] = "quoted-printable"
        else:
            encoded = binascii.b2a_base64(data).decode("ascii")
            encoded = "\n".join(encoded[i:i + 76] for i in range(0, len(encoded), 76))
            part["Content-Transfer-Encoding"] = "base64"
        part.set_payload(encoded)
