"""A plain message built (text, HTML, attachments), to be signed and encrypted."""

from __future__ import annotations

import datetime as dt
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid

from bifente.edged.services.pieces import base64_wrapped
from bifente.edged.services.smime.errors import AttachmentTooLarge
from bifente.edged.services.smime.mime import POLICY, mark_crlf

__all__ = ["DEFAULT_MAX_ATTACHMENT", "Attachment", "build_message"]

DEFAULT_MAX_ATTACHMENT = 25 * 1024 * 1024
_MIME_TYPE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]*/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]*$")


@dataclass(frozen=True)
class Attachment:
    """A file carried by a message; `data` comes back byte-identical."""

    filename: str
    content_type: str
    # A large attachment opened from an encrypted message is a bytearray: it was decoded
    # into the decrypted message's buffer (P5d, docs/benchmarks.md).
    data: bytes | bytearray = field(repr=False)
    # Or, made by from_buffer, the content as the message carries it (base64 in 76-column
    # CRLF lines) and its size, `data` left empty.
    encoded: str | None = field(default=None, repr=False, compare=False)
    encoded_size: int = 0

    @classmethod
    def from_buffer(cls, filename: str, content_type: str, buffer: bytearray) -> Attachment:
        """An attachment for a message to build, from a buffer it empties on the way.

        Its base64 lines are kept instead of the bytes, which are let go before the lines
        become text: the bytes, the lines and their text are never in memory together
        (a 25 MB upload through mail.send: Lm in docs/benchmarks.md).
        """
        lines = base64_wrapped(buffer, b"\r\n")
        size = len(buffer)
        buffer.clear()
        return cls(filename, content_type, b"", lines.decode("ascii"), size)

    @property
    def size(self) -> int:
        """The content's size in bytes."""
        return self.encoded_size if self.encoded is not None else len(self.data)


def _addresses(values: str | Sequence[str]) -> list[str]:
    return [values] if isinstance(values, str) else list(values)


def build_message(sender: str, to: str | Sequence[str], cc: str | Sequence[str] = (),
                  subject: str = "", text: str | None = None, html: str | None = None,
                  attachments: Sequence[Attachment] = (), message_id: str | None = None,
                  date: dt.datetime | None = None, *,
                  max_attachment: int = DEFAULT_MAX_ATTACHMENT) -> EmailMessage:
    """A plain message to sign and encrypt; AttachmentTooLarge over `max_attachment`.

    Text and/or HTML (multipart/alternative, quoted-printable UTF-8), attachments in base64
    (multipart/mixed), non-ASCII header fields as RFC 2047 encoded words.
    """
    for item in attachments:
        if item.size > max_attachment:
            raise AttachmentTooLarge(item.filename, item.size, max_attachment)
        if not _MIME_TYPE.match(item.content_type):
            raise ValueError(f"attachment {item.filename!r}: bad content type "
                             f"{item.content_type!r} (type/subtype)")
    msg = EmailMessage(policy=POLICY)
    msg["From"] = sender
    recipients = _addresses(to)
    if not recipients:
        raise ValueError("a message needs at least one To address")
    msg["To"] = ", ".join(recipients)
    if copies := _addresses(cc):
        msg["Cc"] = ", ".join(copies)
    msg["Subject"] = subject
    msg["Date"] = format_datetime((date or dt.datetime.now(dt.UTC)).astimezone(dt.UTC))
    domain = sender.rpartition("@")[2].strip("> ") or None
    msg["Message-ID"] = message_id or make_msgid(domain=domain)
    for name in ("From", "To", "Cc"):
        header = msg[name]
        if header is not None and (header.defects or not header.addresses):
            raise ValueError(f"{name}: not a valid address list")
    if html is not None and text is None:
        msg.set_content(html, subtype="html", charset="utf-8", cte="quoted-printable")
    else:
        msg.set_content(text or "", charset="utf-8", cte="quoted-printable")
        if html is not None:
            msg.add_alternative(html, subtype="html", charset="utf-8", cte="quoted-printable")
    for item in attachments:
        if msg.get_content_type() != "multipart/mixed":
            msg.make_mixed()
        msg.attach(_attachment_part(item))
    for part in msg.walk():
        if part is not msg:
            del part["MIME-Version"]  # set_content adds it to every part; only the top needs it
        if part.is_multipart() and part.get_boundary() is None:
            # Chosen now, not by the generator, which would scan every body for it: "=_" and
            # 128 random bits cannot occur in base64 or quoted-printable (RFC 2046 §5.1.1).
            part.set_boundary(f"=_bifente_m_{secrets.token_hex(16)}")
    return msg


def _attachment_part(item: Attachment) -> EmailMessage:
    """What add_attachment makes, with the base64 written in large chunks (CRLF lines)."""
    maintype, _, subtype = item.content_type.lower().partition("/")
    part = EmailMessage(policy=POLICY)
    part.set_content(b"", maintype=maintype, subtype=subtype, filename=item.filename)
    # email encodes one 57-byte line per call; the same lines, a block per call.
    part.set_payload(item.encoded if item.encoded is not None
                     else base64_wrapped(item.data, b"\r\n").decode("ascii"))
    mark_crlf(part)
    return part
