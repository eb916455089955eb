"""The wire form of a message: our email policy, CRLF output, parsing whole or headers only."""

from __future__ import annotations

import email.policy
import io
import re
from email.generator import BytesGenerator
from email.message import EmailMessage, MIMEPart
from email.parser import BytesParser

__all__ = ["AS_RECEIVED", "BLANK_LINE", "NEWLINE", "PKCS7_MIME", "POLICY", "SPLICE_MIN", "head",
           "known_crlf", "mark_crlf", "parse", "raw_payload", "shallow", "to_bytes"]

# Generation: CRLF line ends (the canonical form, RFC 8551 §3.1.1), 78-column folding, and
# non-ASCII headers as RFC 2047 encoded words, so everything we sign is 7-bit.
POLICY = email.policy.default.clone(linesep="\r\n")
# Received entities are written back with their header fields as received: refolding a
# parameter whose name is longer than a line loops forever in CPython 3.11's
# _fold_mime_parameters (found by fuzz/fuzz_smime.py; docs/reliability.md).
AS_RECEIVED = POLICY.clone(refold_source="none")
NEWLINE = re.compile(r"\r\n|\r|\n")  # email.generator's NLCRE
BLANK_LINE = re.compile(rb"\r?\n\r?\n")
PKCS7_MIME = {"application/pkcs7-mime", "application/x-pkcs7-mime"}
# Bodies at least this long are spliced in as they are rather than written by the generator.
SPLICE_MIN = 64 * 1024


# A part whose body we wrote with CRLF line breaks notes which body (by identity), so the
# splice need not count every line break of a large body again.
_CRLF_MARK = "_bifente_crlf_body"


def mark_crlf(part: MIMEPart) -> None:
    """Note that the part's body, as it is now, was written with CRLF line breaks."""
    vars(part)[_CRLF_MARK] = id(raw_payload(part))


def known_crlf(part: MIMEPart, body: str) -> bool:
    """Every line break of `body` is CRLF: noted by mark_crlf, or counted."""
    return vars(part).get(_CRLF_MARK) == id(body) or _is_crlf(body)


def raw_payload(part: MIMEPart) -> object:
    """The part's payload as stored, not encoded again."""
    # get_payload() encodes a str payload once more to look for surrogates (a copy of each
    # large body per call); the generator itself reads the attribute.
    return part._payload  # type: ignore[attr-defined]


class _Generator(BytesGenerator):
    """BytesGenerator that writes a text payload in one call instead of line by line."""

    _NL: str  # the line separator, set by Generator.flatten (not in the type stubs)

    def _write_lines(self, lines: str) -> None:
        # Same output as the base class (every line end becomes linesep), 5x faster on
        # large base64 bodies.
        if lines:
            if "\r" not in lines:  # the usual case: str.replace is 7x faster than the regex
                self.write(lines.replace("\n", self._NL))
            elif self._NL == "\r\n" and _is_crlf(lines):  # already canonical: as is
                self.write(lines)
            else:
                self.write(NEWLINE.sub(self._NL, lines))


def _is_crlf(text: str) -> bool:
    """Every line break is CRLF (three C-speed counts instead of a regex over the text)."""
    pairs = text.count("\r\n")
    return text.count("\r") == pairs == text.count("\n")


def to_bytes(msg: EmailMessage | MIMEPart, policy: email.policy.Policy = POLICY) -> bytes:
    """The wire form: CRLF line ends and our folding (another policy may break a signature)."""
    buffer = io.BytesIO()
    _Generator(buffer, mangle_from_=False, policy=policy).flatten(msg, linesep="\r\n")
    return buffer.getvalue()


def parse(raw: bytes | bytearray) -> EmailMessage:
    """The whole entity, every part parsed."""
    message = BytesParser(policy=POLICY).parsebytes(raw)
    assert isinstance(message, EmailMessage)
    return message


def shallow(raw: bytes | bytearray) -> EmailMessage:
    """The entity's header fields parsed, its body kept as the exact text received.

    Enough to route an S/MIME layer, and the body is written back byte for byte (a string
    payload is written as is, RFC 1847 §2.1), at a fraction of a full parse's cost.
    """
    blank = BLANK_LINE.search(raw)
    if blank is None:
        return parse(raw)
    message = BytesParser(policy=POLICY).parsebytes(raw[:blank.end()], headersonly=True)
    assert isinstance(message, EmailMessage)
    message.set_payload(raw[blank.end():].decode("ascii", "surrogateescape"))
    return message


def head(raw: bytes | bytearray) -> tuple[EmailMessage, int]:
    """The entity's header fields alone, and where its body starts (the body is not read)."""
    blank = BLANK_LINE.search(raw)
    if blank is None:
        return parse(raw), len(raw)
    message = BytesParser(policy=POLICY).parsebytes(raw[:blank.end()], headersonly=True)
    assert isinstance(message, EmailMessage)
    return message, blank.end()
