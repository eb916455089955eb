"""Protecting a message: signed (multipart/signed), encrypted (pkcs7-mime), or both as a stream."""

from __future__ import annotations

import io
import os
import secrets
from collections.abc import Sequence
from email.message import EmailMessage, MIMEPart
from typing import BinaryIO, Literal

from cryptography import x509

from bifente.edged.services import cms
from bifente.edged.services.cms import Signer, TrustStore
from bifente.edged.services.pieces import Base64Lines, Pieces
from bifente.edged.services.smime.mime import (
    BLANK_LINE,
    NEWLINE,
    PKCS7_MIME,
    POLICY,
    SPLICE_MIN,
    known_crlf,
    raw_payload,
    shallow,
    to_bytes,
)

__all__ = [
    "PROTECTED",
    "SMIME_TYPE",
    "Mode",
    "encrypt_message",
    "protect",
    "protect_bytes",
    "protect_to",
    "sign_message",
]

Mode = Literal["gcm", "cbc"]
SMIME_TYPE: dict[str, str] = {"cbc": "enveloped-data", "gcm": "authEnveloped-data"}
# Header fields copied outside (envelope) and inside (protected payload, RFC 9788 §2).
PROTECTED = ("From", "Sender", "Reply-To", "To", "Cc", "Subject", "Date", "Message-ID",
             "In-Reply-To", "References")


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
    if msg.get_content_type() in {"multipart/signed", *PKCS7_MIME}:
        raise ValueError("the message is already signed or encrypted")
    content = to_bytes(_payload(msg, hp))
    der = cms.sign(content, signer, detached=True)
    # Attach the signed bytes re-read, not the object: inside multipart/signed the generator
    # writes parsed header fields as received, while it would refold the ones we set.
    first = shallow(content)
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
    if msg.get_content_type() in PKCS7_MIME:
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
    return shallow(protect_bytes(msg, signer, recipients, mode,
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
    if msg.get_content_type() in {"multipart/signed", *PKCS7_MIME}:
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




def _pieces(entity: MIMEPart) -> Pieces:
    """to_bytes(entity) as pieces: the large bodies are not copied into the output."""
    large = [p for p in entity.walk() if not p.is_multipart()
             and isinstance(body := raw_payload(p), str) and len(body) >= SPLICE_MIN
             and body.isascii()]
    for part in entity.walk():  # chosen here, or the generator scans the bodies for one
        if part.is_multipart() and part.get_boundary() is None:
            part.set_boundary(f"=_bifente_m_{secrets.token_hex(16)}")
    bodies: list[str] = []
    tokens: list[bytes] = []
    try:
        for part in large:
            body = raw_payload(part)
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
        out += [frame[at:found], body if known_crlf(part, body) else NEWLINE.sub("\r\n", body)]
        at = found + len(marker)
    out.append(frame[at:])
    return Pieces(out)


def _signed_frame(msg: EmailMessage, content: Pieces, der: bytes) -> tuple[bytes, bytes]:
    """The multipart/signed entity's bytes before and after `content` (RFC 8551 §3.5).

    What encrypt_message(sign_message(msg)) encrypts, without its content joined in.
    """
    first_chunk = bytes(next(content.chunks(SPLICE_MIN), b""))
    blank = BLANK_LINE.search(first_chunk)
    if blank is None:
        raise RuntimeError("the signed entity has no header block")
    head = first_chunk[:blank.end()]
    token = f"bifente-signed-{os.urandom(16).hex()}".encode("ascii")
    # Inside multipart/signed the generator writes parsed header fields as received: the
    # signed part re-read from its own header block and a placeholder body.
    first = shallow(head + token)
    if to_bytes(first) != head + token:  # what we signed is what goes on the wire
        raise RuntimeError("the signed entity does not serialize back to the signed bytes")
    outer = _signed_envelope(msg, first, der)
    frame = to_bytes(_payload(outer, None))
    at = frame.find(head + token)
    if at < 0 or frame.find(token, at + len(head) + len(token)) >= 0:
        raise RuntimeError("the signed entity placeholder was not written exactly once")
    return frame[:at], frame[at + len(head) + len(token):]
