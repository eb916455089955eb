"""S/MIME 4.0 messages (RFC 8551) signed and encrypted with the CPS card, built with `email`.

Signing gives `multipart/signed` (detached CMS over the canonical CRLF form of the inner
entity); encryption gives `application/pkcs7-mime` (enveloped-data with AES-256-CBC or
authEnveloped-data with AES-256-GCM). The header fields are also copied into the protected
payload (RFC 9788 header protection), so a subject replaced outside is restored inside.
The MSSanté profile is not public: this one is a STAND-IN (docs/messaging.md).
"""

from __future__ import annotations

import binascii
import datetime as dt
import email.policy
import functools
import io
import itertools
import os
import re
import secrets
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from email.generator import BytesGenerator
from email.headerregistry import AddressHeader
from email.message import EmailMessage, Message, MIMEPart
from email.parser import BytesParser
from email.utils import format_datetime, make_msgid
from typing import BinaryIO, Literal

from cryptography import x509

from edged.services import cms
from edged.services.cms import CmsError, Decryptor, Signer, TrustStore, VerifiedSignature
from edged.services.pieces import CHUNK, Base64Lines, Pieces, base64_wrapped

__all__ = [
    "DEFAULT_MAX_ATTACHMENT",
    "DEFAULT_MAX_MESSAGE",
    "POLICY",
    "Attachment",
    "AttachmentTooLarge",
    "DecryptorNeeded",
    "MalformedMessage",
    "MessageTooLarge",
    "NotEncrypted",
    "NotSigned",
    "OpenedMessage",
    "SenderMismatch",
    "SmimeError",
    "build_message",
    "encrypt_message",
    "open_message",
    "protect",
    "protect_bytes",
    "protect_to",
    "sign_message",
    "to_bytes",
]

# Generation: CRLF line ends (the canonical form, RFC 8551 §3.1.1), 78-column folding, and
# non-ASCII headers as RFC 2047 encoded words, so everything we sign is 7-bit.
POLICY = email.policy.default.clone(linesep="\r\n")
# Received entities are written back with their header fields as received: refolding a
# parameter whose name is longer than a line loops forever in CPython 3.11's
# _fold_mime_parameters (found by fuzz/fuzz_smime.py; docs/reliability.md).
_AS_RECEIVED = POLICY.clone(refold_source="none")
DEFAULT_MAX_ATTACHMENT = 25 * 1024 * 1024
DEFAULT_MAX_MESSAGE = cms.DEFAULT_MAX_CONTENT
_NEWLINE = re.compile(r"\r\n|\r|\n")  # email.generator's NLCRE
_BLANK_LINE = re.compile(rb"\r?\n\r?\n")
MAX_LAYERS = 4  # nested S/MIME layers opened (sign, encrypt, and a triple wrap at most)
Mode = Literal["gcm", "cbc"]
SMIME_TYPE: dict[str, str] = {"cbc": "enveloped-data", "gcm": "authEnveloped-data"}
# Header fields copied outside (envelope) and inside (protected payload, RFC 9788 §2).
PROTECTED = ("From", "Sender", "Reply-To", "To", "Cc", "Subject", "Date", "Message-ID",
             "In-Reply-To", "References")
_PKCS7_MIME = {"application/pkcs7-mime", "application/x-pkcs7-mime"}
_PKCS7_SIGNATURE = {"application/pkcs7-signature", "application/x-pkcs7-signature"}
_ENVELOPES = {"enveloped_data", "authenticated_enveloped_data"}
_MIME_TYPE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]*/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]*$")


# -- errors -------------------------------------------------------------------------------
class SmimeError(CmsError):
    """Base of the S/MIME message errors (CMS errors pass through unchanged)."""


class MalformedMessage(SmimeError, ValueError):
    """The message's MIME structure is not a valid S/MIME message (says where)."""


class DecryptorNeeded(SmimeError, ValueError):
    """An encrypted layer was met and the caller gave no decryptor (no card to open it)."""


class AttachmentTooLarge(SmimeError):
    """An attachment is over the configured limit."""

    def __init__(self, name: str, size: int, limit: int) -> None:
        self.name = name
        self.size = size
        self.limit = limit
        super().__init__(f"attachment {name!r} is {size} bytes, over the limit of {limit}")


class MessageTooLarge(SmimeError):
    """The raw message is over the configured limit (refused before parsing)."""

    def __init__(self, size: int, limit: int) -> None:
        self.size = size
        self.limit = limit
        super().__init__(f"message of {size} bytes is over the limit of {limit}")


class NotEncrypted(SmimeError):
    """The message was sent in clear where encryption is required (M1)."""


class NotSigned(SmimeError):
    """The message carries no signature where one is required (M4)."""


class SenderMismatch(SmimeError):
    """The From address is not an address of the signer's certificate (RFC 8550 §3)."""

    def __init__(self, sender: str, certificate_addresses: Sequence[str]) -> None:
        self.sender = sender
        self.certificate_addresses = tuple(certificate_addresses)
        super().__init__(f"the message is from {sender!r} but signed with a certificate "
                         f"for {', '.join(self.certificate_addresses) or 'no address'}")


# -- building -----------------------------------------------------------------------------
@dataclass(frozen=True)
class Attachment:
    """A file carried by a message; `data` comes back byte-identical."""

    filename: str
    content_type: str
    # A large attachment opened from an encrypted message is a bytearray: it was decoded
    # into the decrypted message's buffer (P5d, docs/benchmarks.md).
    data: bytes | bytearray = field(repr=False)


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
        if len(item.data) > max_attachment:
            raise AttachmentTooLarge(item.filename, len(item.data), max_attachment)
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
    part.set_payload(base64_wrapped(item.data, b"\r\n").decode("ascii"))
    _mark_crlf(part)
    return part


# A part whose body we wrote with CRLF line breaks notes which body (by identity), so the
# splice need not count every line break of a large body again.
_CRLF_MARK = "_bifente_crlf_body"


def _mark_crlf(part: MIMEPart) -> None:
    vars(part)[_CRLF_MARK] = id(_raw_payload(part))


def _known_crlf(part: MIMEPart, body: str) -> bool:
    return vars(part).get(_CRLF_MARK) == id(body) or _is_crlf(body)


def _raw_payload(part: MIMEPart) -> object:
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
                self.write(_NEWLINE.sub(self._NL, lines))


def _is_crlf(text: str) -> bool:
    """Every line break is CRLF (three C-speed counts instead of a regex over the text)."""
    pairs = text.count("\r\n")
    return text.count("\r") == pairs == text.count("\n")


def to_bytes(msg: EmailMessage | MIMEPart, policy: email.policy.Policy = POLICY) -> bytes:
    """The wire form: CRLF line ends and our folding (another policy may break a signature)."""
    buffer = io.BytesIO()
    _Generator(buffer, mangle_from_=False, policy=policy).flatten(msg, linesep="\r\n")
    return buffer.getvalue()


def _parse(raw: bytes | bytearray) -> EmailMessage:
    """The whole entity, every part parsed."""
    message = BytesParser(policy=POLICY).parsebytes(raw)
    assert isinstance(message, EmailMessage)
    return message


def _shallow(raw: bytes | bytearray) -> EmailMessage:
    """The entity's header fields parsed, its body kept as the exact text received.

    Enough to route an S/MIME layer, and the body is written back byte for byte (a string
    payload is written as is, RFC 1847 §2.1), at a fraction of a full parse's cost.
    """
    blank = _BLANK_LINE.search(raw)
    if blank is None:
        return _parse(raw)
    message = BytesParser(policy=POLICY).parsebytes(raw[:blank.end()], headersonly=True)
    assert isinstance(message, EmailMessage)
    message.set_payload(raw[blank.end():].decode("ascii", "surrogateescape"))
    return message


def _payload(msg: EmailMessage, hp: str | None) -> MIMEPart:
    """The MIME entity under the message headers; with `hp`, the header fields are copied in."""
    part = MIMEPart(policy=POLICY)
    for name, value in msg.items():
        if name.lower().startswith("content-"):
            part[name] = value
    if hp is not None:
        for name in PROTECTED:
            for value in msg.get_all(name, ()):
                part[name] = value
    part.set_payload(msg.get_payload())
    part.preamble, part.epilogue = msg.preamble, msg.epilogue
    if hp is not None:
        part.set_param("hp", hp)  # RFC 9788 §2.1.1: "clear" signed only, "cipher" encrypted
    return part


def _envelope(msg: EmailMessage, subject: str | None = None) -> EmailMessage:
    outer = EmailMessage(policy=POLICY)
    for name, value in msg.items():
        if not name.lower().startswith("content-") and name.lower() != "mime-version":
            outer[name] = subject if subject is not None and name.lower() == "subject" \
                else value
    outer["MIME-Version"] = "1.0"
    return outer



def _signed_envelope(msg: EmailMessage, first: MIMEPart, der: bytes) -> EmailMessage:
    """multipart/signed (RFC 8551 §3.5.3): the signed entity `first`, then the detached CMS."""
    signature = MIMEPart(policy=POLICY)
    signature.set_content(der, maintype="application", subtype="pkcs7-signature",
                          cte="base64", disposition="attachment", filename="smime.p7s",
                          params={"name": "smime.p7s"})
    outer = _envelope(msg)
    outer["Content-Type"] = ('multipart/signed; protocol="application/pkcs7-signature"; '
                             f'micalg=sha-256; boundary="=_bifente_s_{secrets.token_hex(16)}"')
    outer.set_payload([first, signature])
    outer.preamble = "This is an S/MIME signed message"
    return outer


def sign_message(msg: EmailMessage, signer: Signer, *, hp: str = "clear") -> EmailMessage:
    """multipart/signed (RFC 8551 §3.5): a detached CMS over the first part's exact CRLF bytes.

    protocol="application/pkcs7-signature", micalg=sha-256; the header fields are copied into
    the signed part (RFC 9788, hp=`hp`).
    """
    if msg.get_content_type() in {"multipart/signed", *_PKCS7_MIME}:
        raise ValueError("the message is already signed or encrypted")
    content = to_bytes(_payload(msg, hp))
    der = cms.sign(content, signer, detached=True)
    # Attach the signed bytes re-read, not the object: inside multipart/signed the generator
    # writes parsed header fields as received, while it would refold the ones we set.
    first = _shallow(content)
    if to_bytes(first) != content:  # what we signed is what goes on the wire, bit for bit
        raise RuntimeError("the signed entity does not serialize back to the signed bytes")
    outer = _signed_envelope(msg, first, der)
    return outer


def encrypt_message(msg: EmailMessage, recipients: Sequence[x509.Certificate],
                    mode: Mode = "gcm", *, subject: str | None = None) -> EmailMessage:
    """application/pkcs7-mime: enveloped-data (AES-256-CBC) or authEnveloped-data (GCM).

    The header fields stay outside (From, To, Cc, Date, Message-ID are needed to deliver);
    `subject` replaces the outer Subject (STAND-IN default: kept clear), the real one being
    inside the encrypted payload.
    """
    if msg.get_content_type() in _PKCS7_MIME:
        raise ValueError("the message is already encrypted")
    signed = msg.get_content_type() == "multipart/signed"
    content = to_bytes(_payload(msg, None if signed else "cipher"))
    der = cms.encrypt(content, recipients, mode=mode)
    del content  # the clear entity is not needed while the envelope is base64-encoded
    outer = _envelope(msg, subject)
    outer.set_content(der, maintype="application", subtype="pkcs7-mime", cte="base64",
                      disposition="attachment", filename="smime.p7m",
                      params={"smime-type": SMIME_TYPE[mode], "name": "smime.p7m"})
    return outer


def protect(msg: EmailMessage, signer: Signer, recipients: Sequence[x509.Certificate],
            mode: Mode = "gcm", *, sender_certificate: x509.Certificate | None = None,
            subject: str | None = None, trust: TrustStore | None = None) -> EmailMessage:
    """Sign, then encrypt to the recipients and always to the sender (M1, M4).

    The sender's encryption certificate is `sender_certificate` or the signer's
    `encryption_certificate` (CardSigner reads it from the card). With `trust`, every
    recipient certificate is validated for encryption first (chain, validity, CRL).
    protect_bytes() gives the wire form directly, with far less memory.
    """
    return _shallow(protect_bytes(msg, signer, recipients, mode,
                                  sender_certificate=sender_certificate, subject=subject,
                                  trust=trust))


def protect_bytes(msg: EmailMessage, signer: Signer, recipients: Sequence[x509.Certificate],
                  mode: Mode = "gcm", *, sender_certificate: x509.Certificate | None = None,
                  subject: str | None = None, trust: TrustStore | None = None) -> bytes:
    """protect() in its wire form (what to_bytes(protect(...)) gives), built as a stream."""
    out = io.BytesIO()
    protect_to(out, msg, signer, recipients, mode, sender_certificate=sender_certificate,
               subject=subject, trust=trust)
    return out.getvalue()


def protect_to(sink: BinaryIO, msg: EmailMessage, signer: Signer,
               recipients: Sequence[x509.Certificate], mode: Mode = "gcm", *,
               sender_certificate: x509.Certificate | None = None,
               subject: str | None = None, trust: TrustStore | None = None) -> int:
    """protect(), written to `sink` a chunk at a time; returns the bytes written.

    The message is never joined: its large bodies are hashed, encrypted and base64-encoded
    in chunks, so memory stays near one copy of the message (docs/benchmarks.md, P5m).
    """
    own = sender_certificate or getattr(signer, "encryption_certificate", None)
    if own is None:
        raise ValueError("the sender's encryption certificate is needed: a message is always "
                         "encrypted to its sender too (M1)")
    everyone = [*recipients, own]
    if trust is not None:
        for cert in everyone:
            cms.validate_certificate(cert, trust, purpose=cms.KeyPurpose.ENCRYPTION)
    if msg.get_content_type() in {"multipart/signed", *_PKCS7_MIME}:
        raise ValueError("the message is already signed or encrypted")
    content = _pieces(_payload(msg, "cipher"))
    der = cms.sign(content, signer, detached=True)
    prefix, suffix = _signed_frame(msg, content, der)
    chunks = cms.encrypt_stream(Pieces([prefix, *content.parts, suffix]), everyone, mode=mode)
    outer = _envelope(msg, subject)
    outer.set_content(b"", maintype="application", subtype="pkcs7-mime", cte="base64",
                      disposition="attachment", filename="smime.p7m",
                      params={"smime-type": SMIME_TYPE[mode], "name": "smime.p7m"})
    written = sink.write(to_bytes(outer))  # the header fields and the blank line
    encoder = Base64Lines(b"\r\n")
    for chunk in chunks:
        written += sink.write(encoder.update(chunk))
    written += sink.write(encoder.finish())
    return written


# Bodies at least this long are spliced in as they are rather than written by the generator.
_SPLICE_MIN = 64 * 1024


def _pieces(entity: MIMEPart) -> Pieces:
    """to_bytes(entity) as pieces: the large bodies are not copied into the output."""
    large = [p for p in entity.walk() if not p.is_multipart()
             and isinstance(body := _raw_payload(p), str) and len(body) >= _SPLICE_MIN
             and body.isascii()]
    for part in entity.walk():  # chosen here, or the generator scans the bodies for one
        if part.is_multipart() and part.get_boundary() is None:
            part.set_boundary(f"=_bifente_m_{secrets.token_hex(16)}")
    bodies: list[str] = []
    tokens: list[bytes] = []
    try:
        for part in large:
            body = _raw_payload(part)
            assert isinstance(body, str)
            token = f"bifente-body-{os.urandom(16).hex()}"  # not a boundary: not secrets
            part.set_payload(token)
            bodies.append(body)
            tokens.append(token.encode("ascii"))
        frame = to_bytes(entity)
    finally:
        for part, body in zip(large, bodies, strict=False):
            part.set_payload(body)
    out: list[bytes | str] = []
    at = 0
    for part, marker, body in zip(large, tokens, bodies, strict=True):
        found = frame.find(marker, at)
        if found < 0 or frame.find(marker, found + 1) >= 0:
            raise RuntimeError("a body placeholder was not written exactly once")
        # What _Generator writes for an ASCII body: its line breaks as CRLF.
        out += [frame[at:found], body if _known_crlf(part, body) else _NEWLINE.sub("\r\n", body)]
        at = found + len(marker)
    out.append(frame[at:])
    return Pieces(out)


def _signed_frame(msg: EmailMessage, content: Pieces, der: bytes) -> tuple[bytes, bytes]:
    """The multipart/signed entity's bytes before and after `content` (RFC 8551 §3.5).

    What encrypt_message(sign_message(msg)) encrypts, without its content joined in.
    """
    first_chunk = bytes(next(content.chunks(_SPLICE_MIN), b""))
    blank = _BLANK_LINE.search(first_chunk)
    if blank is None:
        raise RuntimeError("the signed entity has no header block")
    head = first_chunk[:blank.end()]
    token = f"bifente-signed-{os.urandom(16).hex()}".encode("ascii")
    # Inside multipart/signed the generator writes parsed header fields as received: the
    # signed part re-read from its own header block and a placeholder body.
    first = _shallow(head + token)
    if to_bytes(first) != head + token:  # what we signed is what goes on the wire
        raise RuntimeError("the signed entity does not serialize back to the signed bytes")
    outer = _signed_envelope(msg, first, der)
    frame = to_bytes(_payload(outer, None))
    at = frame.find(head + token)
    if at < 0 or frame.find(token, at + len(head) + len(token)) >= 0:
        raise RuntimeError("the signed entity placeholder was not written exactly once")
    return frame[:at], frame[at + len(head) + len(token):]


# -- opening ------------------------------------------------------------------------------
@dataclass(frozen=True)
class OpenedMessage:
    """A message opened: who signed it, its header fields, bodies and attachments.

    `signature.content` is empty: the fields here are that content, and its bytes are not
    kept (they would hold the message twice; a decrypted buffer becomes an attachment).
    """

    sender: str
    to: tuple[str, ...]
    cc: tuple[str, ...]
    subject: str
    date: dt.datetime | None
    message_id: str | None
    text: str | None = field(repr=False)
    html: str | None = field(repr=False)
    attachments: tuple[Attachment, ...]
    signature: VerifiedSignature | None
    encrypted: bool
    headers_protected: bool  # the fields above came from inside the cryptographic layers

    @property
    def signer(self) -> x509.Certificate | None:
        """The signer's certificate (None for an unsigned message)."""
        return self.signature.signer if self.signature else None


def _certificate_addresses(cert: x509.Certificate) -> list[str]:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    return [a.lower() for a in san.get_values_for_type(x509.RFC822Name)]


def _delimiters(entity: bytes | bytearray, dash: bytes, start: int) -> list[tuple[int, int, bool]]:
    """(start, end of line, is close-delimiter) of each boundary line (RFC 2046 §5.1.1)."""
    found = []
    pos = start
    while (at := entity.find(dash, pos)) >= 0:
        pos = at + len(dash)
        if at != start and entity[at - 1:at] != b"\n":
            continue  # not at the start of a line
        eol = entity.find(b"\n", pos)
        eol = len(entity) if eol < 0 else eol + 1
        rest = entity[pos:eol].rstrip(b"\r\n")
        close = rest.startswith(b"--")
        if (rest[2:] if close else rest).strip(b" \t"):
            continue  # a longer boundary that starts with ours
        found.append((at, eol, close))
        if close:
            break
    return found


def _before_line_break(entity: bytes | bytearray, end: int) -> int:
    # The line break before a delimiter belongs to the delimiter (RFC 2046 §5.1.1).
    return end - 2 if entity[end - 2:end] == b"\r\n" else end - 1 \
        if entity[end - 1:end] == b"\n" else end


def _signed_parts(entity: bytes | bytearray, boundary: str) -> tuple[int, int, bytes]:
    """Where the signed part of a multipart/signed entity starts and ends, and the signature
    part, exactly as sent (RFC 1847 §2.1)."""
    blank = _BLANK_LINE.search(entity)
    if blank is None:
        raise MalformedMessage("multipart/signed has no body")
    marks = _delimiters(entity, b"--" + boundary.encode("ascii", "surrogateescape"),
                        blank.end())
    if len(marks) != 3 or [m[2] for m in marks] != [False, False, True]:
        raise MalformedMessage("multipart/signed needs exactly two parts between its "
                               "boundaries")
    (_, content_start, _), (second, signature_start, _), (close, _, _) = marks
    signature = bytes(entity[signature_start:_before_line_break(entity, close)])
    return content_start, _before_line_break(entity, second), signature


def _canonical(entity: bytes | bytearray, start: int, end: int) -> memoryview | bytes:
    """entity[start:end] in canonical form: a view of it, or a copy with CRLF line breaks."""
    # A message stored with bare LF (Maildir on Unix) is hashed with CRLF (RFC 8551 §3.1.1).
    if entity.count(b"\n", start, end) != entity.count(b"\r\n", start, end):
        return re.sub(rb"(?<!\r)\n", b"\r\n", entity[start:end])
    return memoryview(entity)[start:end]


def _cut(entity: bytes | bytearray, start: int, end: int) -> bytes | bytearray:
    """entity[start:end]; a buffer of ours (a decrypted layer) is cut in place, not copied."""
    if isinstance(entity, bytearray):
        del entity[end:]
        del entity[:start]  # CPython moves the buffer's start: no copy (a decrypted 10 MB)
        return entity
    return entity[start:end]


def _der_of(part: EmailMessage) -> bytes:
    data = part.get_payload(decode=True)
    if not isinstance(data, bytes) or not data:
        raise MalformedMessage(f"{part.get_content_type()} part has no CMS content")
    return data


def _text(part: object) -> str | None:
    if not isinstance(part, MIMEPart):
        return None
    content = part.get_content()
    return content.replace("\r\n", "\n") if isinstance(content, str) else None


def _addresses_of(msg: EmailMessage, name: str) -> tuple[str, ...]:
    header = msg[name]
    if isinstance(header, AddressHeader):
        return tuple(str(a) for a in header.addresses)
    return ()


def _attachments(entity: EmailMessage, limit: int, raw: bytes | bytearray = b"",
                 spans: dict[int, tuple[int, int]] | None = None) -> tuple[Attachment, ...]:
    """The attachments; with `raw` a buffer of ours, its last large one is decoded into it.

    `raw` must not be read after this: that buffer becomes the attachment's data.
    """
    parts = list(entity.iter_attachments())
    spanned = [id(p) for p in parts if spans and id(p) in spans]
    in_place = spanned[-1] if spanned and isinstance(raw, bytearray) else None
    out: list[Attachment] = []
    for index, part in enumerate(parts, 1):
        name = part.get_filename() or f"attachment-{index}"
        if spans and (span := spans.get(id(part))):
            if id(part) == in_place and isinstance(raw, bytearray):
                decoded = _decode_in_place(raw, *span, name, limit)
                if decoded is not None:  # the last read of raw: later parts are not spans
                    out.append(Attachment(name, part.get_content_type(), decoded))
                    continue
            data = _base64_span(raw, *span, name, limit)
            if data is not None:
                out.append(Attachment(name, part.get_content_type(), data))
                continue
            part.set_payload(raw[span[0]:span[1]].decode("ascii", "surrogateescape"))
        encoded = part.get_payload()
        base64 = str(part.get("Content-Transfer-Encoding", "")).strip().lower() == "base64"
        if base64 and isinstance(encoded, str):  # an upper bound, before decoding anything
            estimate = (len(encoded) - encoded.count("\n") - encoded.count("\r")) * 3 // 4
            if estimate > limit + 2:  # up to two '=' pad characters
                raise AttachmentTooLarge(name, estimate, limit)
        payload = part.get_payload(decode=True)
        if isinstance(payload, bytes):
            body = payload
        else:  # message/rfc822 and other multiparts: the entity as sent
            inner = part.get_payload(0) if part.is_multipart() else None
            body = to_bytes(inner, _AS_RECEIVED) if isinstance(inner, MIMEPart) else b""
        if len(body) > limit:
            raise AttachmentTooLarge(name, len(body), limit)
        out.append(Attachment(name, part.get_content_type(), body))
    return tuple(out)


def _head(raw: bytes | bytearray) -> tuple[EmailMessage, int]:
    """The entity's header fields alone, and where its body starts (the body is not read)."""
    blank = _BLANK_LINE.search(raw)
    if blank is None:
        return _parse(raw), len(raw)
    message = BytesParser(policy=POLICY).parsebytes(raw[:blank.end()], headersonly=True)
    assert isinstance(message, EmailMessage)
    return message, blank.end()


def _cms_body(entity: EmailMessage, raw: bytes | bytearray, body_at: int) -> bytes:
    """The CMS DER of an application/pkcs7-mime entity, decoded straight from `raw`."""
    cte = str(entity.get("Content-Transfer-Encoding", "")).strip().lower()
    data: bytes | None = None
    if cte == "base64":
        try:  # line breaks are skipped by a2b_base64 (RFC 2045 §6.8): no per-line split
            data = binascii.a2b_base64(memoryview(raw)[body_at:])
        except binascii.Error:
            data = None  # bad padding and the like: email's lenient decoder below
    elif cte in ("", "7bit", "8bit", "binary"):
        data = bytes(raw[body_at:])  # asn1crypto parses bytes only (a decrypted layer: a copy)
    if data is None:
        return _der_of(_shallow(raw))
    if not data:
        raise MalformedMessage(f"{entity.get_content_type()} part has no CMS content")
    return data


def _base64_chunks(raw: bytes | bytearray, start: int,
                   end: int | None = None) -> Iterator[bytes]:
    """a2b_base64 of raw[start:end], a slice at a time, each slice ending at a line break.

    The same bytes as one a2b_base64 call when every slice but the last holds whole groups
    of 4 characters and no padding; anything else raises cms.Unstreamable (read it whole).
    """
    end = len(raw) if end is None else end
    with memoryview(raw) as view:
        for at, cut in _slices(raw, start, end):
            try:
                data = binascii.a2b_base64(view[at:cut])
            except binascii.Error:
                raise cms.Unstreamable from None
            if cut < end and raw.find(b"=", at, cut) >= 0:  # one call would stop there
                raise cms.Unstreamable
            yield data


def _slices(raw: bytes | bytearray, start: int, end: int) -> Iterator[tuple[int, int]]:
    """(start, end) of CHUNK-sized slices of raw[start:end], each ending at a line break."""
    while start < end:
        cut = raw.find(b"\n", min(start + CHUNK, end), end)
        cut = end if cut < 0 else cut + 1
        yield start, cut
        start = cut


_BASE64_ALPHABET = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"


def _base64_size(raw: bytes | bytearray, start: int, end: int) -> int | None:
    """The bytes _base64_chunks(raw, start, end) yields in all, None where it would raise.

    Only the last slice is decoded: in the others a2b_base64 skips what is not in the
    alphabet (RFC 2045 §6.8), so it decodes whole groups of 4 characters, with no padding,
    without error into 3 bytes each (5x faster to count than to decode).
    """
    size = 0
    for at, cut in _slices(raw, start, end):
        if cut == end:
            try:
                return size + len(binascii.a2b_base64(memoryview(raw)[at:cut]))
            except binascii.Error:
                return None
        skipped = raw[at:cut].translate(None, _BASE64_ALPHABET)
        characters = cut - at - len(skipped)
        if b"=" in skipped or characters % 4:
            return None
        size += characters // 4 * 3
    return size


def _cms_stream(entity: EmailMessage, raw: bytes | bytearray,
                body_at: int) -> cms.CmsStream | None:
    """The CMS of a base64 application/pkcs7-mime body, decoded as it is read; None: whole."""
    if str(entity.get("Content-Transfer-Encoding", "")).strip().lower() != "base64":
        return None
    try:
        # 3 bytes for every 4 characters at most: a bound on the DER's size.
        return cms.CmsStream(_base64_chunks(raw, body_at), (len(raw) - body_at) * 3 // 4 + 3)
    except (ValueError, cms.Unstreamable):  # not a ContentInfo: _cms_body says why
        return None


_MAX_TREE_DEPTH = 8


def _tree(raw: bytes | bytearray) -> tuple[EmailMessage, dict[int, tuple[int, int]]] | None:
    """_parse(raw), multiparts split on their delimiters with bytes.find (RFC 2046 §5.1.1).

    Large base64 attachment bodies are not copied: their (start, end) in `raw` is returned
    by id of the part. None when the entity is not plain (message/* parts, a part without
    header fields, a missing delimiter): the caller then uses email's full parser.
    """
    spans: dict[int, tuple[int, int]] = {}
    entity = _subtree(raw, 0, len(raw), spans, 0)
    return None if entity is None else (entity, spans)


def _subtree(raw: bytes | bytearray, start: int, end: int, spans: dict[int, tuple[int, int]],
             depth: int) -> EmailMessage | None:
    if depth > _MAX_TREE_DEPTH or raw[start:start + 1] in (b"\r", b"\n"):
        return None
    blank = _BLANK_LINE.search(raw, start, end)
    if blank is None:
        return None
    part = BytesParser(policy=POLICY).parsebytes(raw[start:blank.end()], headersonly=True)
    assert isinstance(part, EmailMessage)
    body = blank.end()
    if part.get_content_maintype() == "message":
        return None
    if not part.is_multipart() and part.get_content_maintype() != "multipart":
        large = end - body >= _SPLICE_MIN and part.is_attachment() and str(
            part.get("Content-Transfer-Encoding", "")).strip().lower() == "base64"
        if large:
            spans[id(part)] = (body, end)
            part.set_payload("")
        else:
            part.set_payload(raw[body:end].decode("ascii", "surrogateescape"))
        return part
    boundary = part.get_boundary()
    if boundary is None:
        return None
    marks = _delimiters(raw, b"--" + boundary.encode("ascii", "surrogateescape"), body)
    if len(marks) < 2 or not marks[-1][2] or marks[-1][1] > end:
        return None
    children: list[Message[str, str] | str] = []
    for (_, part_start, _), (next_at, _, _) in itertools.pairwise(marks):
        child = _subtree(raw, part_start, _before_line_break(raw, next_at), spans, depth + 1)
        if child is None:
            return None
        children.append(child)
    part.set_payload(children)
    first = marks[0][0]
    if first > body:
        part.preamble = raw[body:_before_line_break(raw, first)].decode("ascii",
                                                                          "surrogateescape")
    return part


def _base64_span(raw: bytes | bytearray, start: int, end: int, name: str,
                 limit: int) -> bytes | None:
    """The base64 body raw[start:end] decoded (not copied first); None if it does not decode."""
    _check_estimate(raw, start, end, name, limit)
    try:
        data = binascii.a2b_base64(memoryview(raw)[start:end])
    except binascii.Error:
        return None
    if len(data) > limit:
        raise AttachmentTooLarge(name, len(data), limit)
    return data


def _check_estimate(raw: bytes | bytearray, start: int, end: int, name: str,
                    limit: int) -> None:
    line_breaks = raw.count(b"\n", start, end) + raw.count(b"\r", start, end)
    estimate = (end - start - line_breaks) * 3 // 4
    if estimate > limit + 2:  # up to two '=' pad characters
        raise AttachmentTooLarge(name, estimate, limit)


def _decode_in_place(buffer: bytearray, start: int, end: int, name: str,
                     limit: int) -> bytearray | None:
    """The base64 body buffer[start:end] decoded into the buffer itself, cut down to it.

    A decrypted message and its largest attachment are then one buffer, not two (P5d,
    docs/benchmarks.md). Decoded bytes are written behind the text still to be read (3
    bytes for 4 characters). None, the buffer untouched, when the body does not decode a
    slice at a time exactly as in one call (_base64_chunks): _base64_size checks first.
    """
    size = _base64_size(buffer, start, end)  # exact, where _check_estimate guesses
    if size is None:
        return None
    if size > limit:
        raise AttachmentTooLarge(name, size, limit)
    at = start
    for piece in _base64_chunks(buffer, start, end):  # each slice is read before it is written
        buffer[at:at + len(piece)] = piece
        at += len(piece)
    del buffer[at:]
    del buffer[:start]  # as in _cut: no copy
    return buffer


# What CPython's email package raises on hostile header fields and bodies (an 8-bit boundary,
# an unknown or NUL charset, a group where a mailbox belongs, a NUL in a file name): the
# message is malformed, whatever the library's exception says (D2, D4 of the review).
EMAIL_ERRORS = (ValueError, LookupError, AttributeError, TypeError, UnicodeError)


def open_message(raw: bytes, decryptor: Decryptor | None, trust: TrustStore, *,
                 require_encrypted: bool = True, require_signed: bool = True,
                 require_signing_certificate: bool = True, check_sender: bool = True,
                 at: dt.datetime | None = None, max_message: int = DEFAULT_MAX_MESSAGE,
                 max_attachment: int = DEFAULT_MAX_ATTACHMENT) -> OpenedMessage:
    """Decrypt (card PSO DECIPHER through `decryptor`) and verify a message, in any layer order.

    Raises NotEncrypted / NotSigned when a required layer is missing, the CMS errors
    (NotForThisRecipient, DecryptionFailed, SignatureInvalid(reason)), SenderMismatch when
    the From address is not in the signer's certificate, AttachmentTooLarge, MessageTooLarge,
    and MalformedMessage for anything the mail parser cannot read. Nothing else.
    """
    try:
        return _open(raw, decryptor, trust, require_encrypted=require_encrypted,
                     require_signed=require_signed,
                     require_signing_certificate=require_signing_certificate,
                     check_sender=check_sender, at=at, max_message=max_message,
                     max_attachment=max_attachment)
    except CmsError:
        raise
    except EMAIL_ERRORS as exc:  # IndexError is a LookupError
        raise MalformedMessage(f"unreadable message ({type(exc).__name__}: "
                               f"{str(exc)[:120]})") from None


def _open(raw: bytes, decryptor: Decryptor | None, trust: TrustStore, *,
          require_encrypted: bool, require_signed: bool, require_signing_certificate: bool,
          check_sender: bool, at: dt.datetime | None, max_message: int,
          max_attachment: int) -> OpenedMessage:
    if len(raw) > max_message:
        raise MessageTooLarge(len(raw), max_message)
    blank = _BLANK_LINE.search(raw)
    top = _shallow(raw[:blank.end()] if blank else raw)  # header fields only: the body is big
    entity_bytes: bytes | bytearray = raw
    entity, body_at = _head(raw)
    encrypted = False
    signature: VerifiedSignature | None = None
    for _layer in range(MAX_LAYERS + 1):
        kind = entity.get_content_type()
        stream = _cms_stream(entity, entity_bytes, body_at) if kind in _PKCS7_MIME else None
        if stream is not None and stream.content_type in _ENVELOPES:
            if decryptor is None:
                raise DecryptorNeeded("the message is encrypted: a decryptor is needed")
            # The ciphertext is base64-decoded and decrypted a slice at a time: the DER of
            # the envelope is never whole (docs/benchmarks.md, P5d).
            entity_bytes = cms.decrypt_stream(
                stream, decryptor, max_content=max_message,
                whole=functools.partial(_cms_body, entity, entity_bytes, body_at))
            encrypted = True
            del stream, entity
        elif kind in _PKCS7_MIME:
            del stream
            der = _cms_body(entity, entity_bytes, body_at)
            try:  # the CMS content type decides; smime-type is only a hint (RFC 8551 §3.2.2)
                content_type = cms.content_type_of(der)
            except ValueError as exc:
                raise MalformedMessage(f"application/pkcs7-mime: {exc}") from None
            if content_type in ("enveloped_data", "authenticated_enveloped_data"):
                if decryptor is None:
                    raise DecryptorNeeded("the message is encrypted: a decryptor is needed")
                entity_bytes = cms.decrypt(der, decryptor, max_content=max_message)
                encrypted = True
                del der, entity  # let the ciphertext go before the next layer is read
            elif content_type == "signed_data":
                if signature is not None:
                    raise MalformedMessage("more than one signature layer")
                signature = cms.verify(der, trust=trust, at=at, max_content=max_message,
                                       require_signing_certificate=require_signing_certificate)
                embedded = signature.content  # bytes: nothing was given detached
                entity_bytes = embedded if isinstance(embedded, bytes) else bytes(embedded)
            else:
                raise MalformedMessage(f"application/pkcs7-mime with {content_type}")
        elif kind == "multipart/signed":
            if signature is not None:
                raise MalformedMessage("more than one signature layer")
            protocol = entity.get_param("protocol", "")
            if not isinstance(protocol, str) or protocol.lower() not in _PKCS7_SIGNATURE:
                raise MalformedMessage("multipart/signed with a protocol other than PKCS#7")
            boundary = entity.get_boundary()
            if boundary is None:
                raise MalformedMessage("multipart/signed without a boundary")
            start, end, signature_part = _signed_parts(entity_bytes, boundary)
            signature_entity = _parse(signature_part)
            if signature_entity.get_content_type() not in _PKCS7_SIGNATURE:
                raise MalformedMessage("the second part of multipart/signed is not a signature")
            content = _canonical(entity_bytes, start, end)
            try:
                signature = cms.verify(_der_of(signature_entity), trust=trust,
                                       detached_content=content, at=at,
                                       max_content=max_message,
                                       require_signing_certificate=require_signing_certificate)
            finally:
                if isinstance(content, memoryview):
                    content.release()  # before the buffer is cut to the signed part
            entity_bytes = _cut(entity_bytes, start, end) if isinstance(content, memoryview) \
                else content
        else:
            break
        entity, body_at = _head(entity_bytes)
    else:
        raise MalformedMessage(f"more than {MAX_LAYERS} nested S/MIME layers")
    layered = entity_bytes is not raw
    del entity
    # The content itself: every part, for bodies and files (large files left undecoded).
    entity, spans = _tree(entity_bytes) or (_parse(entity_bytes), {})
    if require_encrypted and not encrypted:
        raise NotEncrypted("the message was not encrypted")
    if require_signed and signature is None:
        raise NotSigned("the message is not signed")

    # Header fields inside the protected payload win over the outer ones (RFC 9788 §4).
    inner = layered and entity["From"] is not None
    fields = entity if inner else top
    senders = _addresses_of(fields, "From")
    if check_sender and signature is not None:
        wanted = _certificate_addresses(signature.signer)
        from_addresses = [a.addr_spec.lower() for a in fields["From"].addresses] \
            if isinstance(fields["From"], AddressHeader) else []
        if not from_addresses or not set(from_addresses) <= set(wanted):
            raise SenderMismatch(", ".join(from_addresses), wanted)
    try:
        date_header = fields["Date"]
    except (ValueError, OverflowError):  # a date the parser cannot hold (year 4411518833)
        date_header = None
    plain = entity.get_body(preferencelist=("plain",))
    rich = entity.get_body(preferencelist=("html",))
    return OpenedMessage(
        sender=", ".join(senders),
        to=_addresses_of(fields, "To"),
        cc=_addresses_of(fields, "Cc"),
        subject=str(fields["Subject"] or ""),
        date=getattr(date_header, "datetime", None),
        message_id=str(fields["Message-ID"]) if fields["Message-ID"] else None,
        text=_text(plain),
        html=_text(rich),
        attachments=_attachments(entity, max_attachment, entity_bytes, spans),
        signature=replace(signature, content=b"") if signature else None,
        encrypted=encrypted,
        headers_protected=inner,
    )
