"""Opening a message: its layers decrypted and verified in any order, then its parts read."""

from __future__ import annotations

import binascii
import datetime as dt
import functools
import re
from dataclasses import dataclass, field, replace
from email.headerregistry import AddressHeader
from email.message import EmailMessage, MIMEPart

from cryptography import x509

from bifente.edged.services import cms
from bifente.edged.services.cms import CmsError, Decryptor, TrustStore, VerifiedSignature
from bifente.edged.services.smime.build import DEFAULT_MAX_ATTACHMENT, Attachment
from bifente.edged.services.smime.decode import base64_chunks, base64_span, decode_in_place
from bifente.edged.services.smime.errors import (
    AttachmentTooLarge,
    DecryptorNeeded,
    MalformedMessage,
    MessageTooLarge,
    NotEncrypted,
    NotSigned,
    SenderMismatch,
)
from bifente.edged.services.smime.mime import (
    AS_RECEIVED,
    BLANK_LINE,
    PKCS7_MIME,
    head,
    parse,
    shallow,
    to_bytes,
)
from bifente.edged.services.smime.tree import before_line_break, delimiters, tree

__all__ = ["DEFAULT_MAX_MESSAGE", "EMAIL_ERRORS", "MAX_LAYERS", "OpenedMessage", "open_message"]

DEFAULT_MAX_MESSAGE = cms.DEFAULT_MAX_CONTENT
MAX_LAYERS = 4  # nested S/MIME layers opened (sign, encrypt, and a triple wrap at most)
_PKCS7_SIGNATURE = {"application/pkcs7-signature", "application/x-pkcs7-signature"}
_ENVELOPES = {"enveloped_data", "authenticated_enveloped_data"}


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


def _signed_parts(entity: bytes | bytearray, boundary: str) -> tuple[int, int, bytes]:
    """Where the signed part of a multipart/signed entity starts and ends, and the signature
    part, exactly as sent (RFC 1847 §2.1)."""
    blank = BLANK_LINE.search(entity)
    if blank is None:
        raise MalformedMessage("multipart/signed has no body")
    marks = delimiters(entity, b"--" + boundary.encode("ascii", "surrogateescape"),
                       blank.end())
    if len(marks) != 3 or [m[2] for m in marks] != [False, False, True]:
        raise MalformedMessage("multipart/signed needs exactly two parts between its "
                               "boundaries")
    (_, content_start, _), (second, signature_start, _), (close, _, _) = marks
    signature = bytes(entity[signature_start:before_line_break(entity, close)])
    return content_start, before_line_break(entity, second), signature


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
                decoded = decode_in_place(raw, *span, name, limit)
                if decoded is not None:  # the last read of raw: later parts are not spans
                    out.append(Attachment(name, part.get_content_type(), decoded))
                    continue
            data = base64_span(raw, *span, name, limit)
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
            body = to_bytes(inner, AS_RECEIVED) if isinstance(inner, MIMEPart) else b""
        if len(body) > limit:
            raise AttachmentTooLarge(name, len(body), limit)
        out.append(Attachment(name, part.get_content_type(), body))
    return tuple(out)


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
        return _der_of(shallow(raw))
    if not data:
        raise MalformedMessage(f"{entity.get_content_type()} part has no CMS content")
    return data


def _cms_stream(entity: EmailMessage, raw: bytes | bytearray,
                body_at: int) -> cms.CmsStream | None:
    """The CMS of a base64 application/pkcs7-mime body, decoded as it is read; None: whole."""
    if str(entity.get("Content-Transfer-Encoding", "")).strip().lower() != "base64":
        return None
    try:
        # 3 bytes for every 4 characters at most: a bound on the DER's size.
        return cms.CmsStream(base64_chunks(raw, body_at), (len(raw) - body_at) * 3 // 4 + 3)
    except (ValueError, cms.Unstreamable):  # not a ContentInfo: _cms_body says why
        return None


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
    blank = BLANK_LINE.search(raw)
    top = shallow(raw[:blank.end()] if blank else raw)  # header fields only: the body is big
    entity_bytes: bytes | bytearray = raw
    entity, body_at = head(raw)
    encrypted = False
    signature: VerifiedSignature | None = None
    for _layer in range(MAX_LAYERS + 1):
        kind = entity.get_content_type()
        stream = _cms_stream(entity, entity_bytes, body_at) if kind in PKCS7_MIME else None
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
        elif kind in PKCS7_MIME:
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
            signature_entity = parse(signature_part)
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
        entity, body_at = head(entity_bytes)
    else:
        raise MalformedMessage(f"more than {MAX_LAYERS} nested S/MIME layers")
    layered = entity_bytes is not raw
    del entity
    # The content itself: every part, for bodies and files (large files left undecoded).
    entity, spans = tree(entity_bytes) or (parse(entity_bytes), {})
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
