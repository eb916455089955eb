"""SMTP submission of a message read from a file a chunk at a time (RFC 5321 §3.3, §4.5.2).

smtplib's `SMTP.sendmail` takes the whole message and copies it (line endings for a text
message, then dot-stuffing): for a 25 MB S/MIME message, two or three copies in memory.
`sendmail_stream` reads it 1 MiB at a time instead, applies both transformations to whole
lines (every line end becomes CRLF, RFC 5321 §2.3.8, so no bare LF reaches the server), and
answers and raises as `sendmail` does, so callers handle both alike.
"""

from __future__ import annotations

import contextlib
import re
import smtplib
from collections.abc import Sequence
from typing import BinaryIO

__all__ = ["MAX_LINE", "LineTooLong", "sendmail_stream"]

CHUNK = 1 << 20
# RFC 5321 §4.5.3.1.6 limits a line to 1000 octets; a message of ours never comes near. This
# bounds what waits for a line's end, so that a body without line breaks cannot fill memory.
MAX_LINE = 1 << 20


class LineTooLong(ValueError):
    """The message has a line longer than MAX_LINE: no server would take it (permanent)."""


_EOLS = re.compile(rb"\r\n|\n|\r(?!\n)")  # every line end becomes CRLF, as sendmail does
_LEADING_DOT = re.compile(rb"(?m)^\.")  # §4.5.2: a line starting with "." gets one more


def _abandon(smtp: smtplib.SMTP, code: int) -> None:
    """After a refusal: 421 means the server is closing; otherwise reset the transaction."""
    if code == 421:
        smtp.close()
    else:
        with contextlib.suppress(smtplib.SMTPServerDisconnected):
            smtp.rset()


def _wire(lines: bytes) -> bytes:
    """Whole lines (or the last one) as DATA carries them."""
    return _LEADING_DOT.sub(b"..", _EOLS.sub(b"\r\n", lines))


def _send_data(smtp: smtplib.SMTP, body: BinaryIO) -> None:
    """The message after DATA's 354, then the end-of-data line."""
    carry, end = b"", b"\r\n"
    while chunk := body.read(CHUNK):
        data = carry + chunk
        cut = data.rfind(b"\n") + 1  # whole lines only: each piece starts at a line start
        if not cut:
            if len(data) > MAX_LINE:
                raise LineTooLong(f"a line of the message is longer than {MAX_LINE} bytes")
            carry = data
            continue
        piece, carry = _wire(data[:cut]), data[cut:]
        smtp.send(piece)
        end = piece[-2:]
    if carry:  # the last line has no line end
        piece = _wire(carry)
        smtp.send(piece)
        end = piece[-2:]
    smtp.send(b".\r\n" if end == b"\r\n" else b"\r\n.\r\n")


def sendmail_stream(smtp: smtplib.SMTP, sender: str, recipients: Sequence[str],
                    body: BinaryIO, size: int | None = None) -> dict[str, tuple[int, bytes]]:
    """`smtp.sendmail(sender, recipients, body.read())` without reading the body whole: the
    recipients refused (the others got it), or SMTPSenderRefused, SMTPRecipientsRefused
    (all refused) or SMTPDataError, as sendmail raises them. With `size` (the body's bytes),
    MAIL FROM declares it where the server offers SIZE (RFC 1870), as sendmail does."""
    smtp.ehlo_or_helo_if_needed()
    options = [f"size={size}"] if size is not None and smtp.does_esmtp \
        and smtp.has_extn("size") else []
    code, reply = smtp.mail(sender, options)
    if code != 250:
        _abandon(smtp, code)
        raise smtplib.SMTPSenderRefused(code, reply, sender)
    refused: dict[str, tuple[int, bytes]] = {}
    for rcpt in recipients:
        code, reply = smtp.rcpt(rcpt)
        if code not in (250, 251):
            refused[rcpt] = (code, reply)
        if code == 421:
            smtp.close()
            raise smtplib.SMTPRecipientsRefused(refused)
    if len(refused) == len(recipients):
        _abandon(smtp, 0)
        raise smtplib.SMTPRecipientsRefused(refused)
    code, reply = smtp.docmd("data")
    if code != 354:
        _abandon(smtp, code)
        raise smtplib.SMTPDataError(code, reply)
    try:
        _send_data(smtp, body)
    except BaseException:
        # Mid-DATA, only dropping the connection ends the transaction: the server then
        # discards the partial message (RFC 5321 §4.1.1.4), and QUIT is not taken as data.
        smtp.close()
        raise
    code, reply = smtp.getreply()
    if code != 250:
        _abandon(smtp, code)
        raise smtplib.SMTPDataError(code, reply)
    return refused
