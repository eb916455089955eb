"""The secure mail methods of the API (registered in edged/api/methods.py).

mail.send: recipients' certificates from the directory (an unknown recipient is refused
before anything is signed), the message built, signed by the CPS (split hash) and encrypted
to every recipient and the sender on the card's arbiter, then queued in the durable outbox.
mail.open: the card's authentication key decrypts (PSO DECIPHER), the signature is verified
against the configured roots. Audit records name counts and domains, never bodies, subjects
or patient addresses (which carry an INS).
"""

from __future__ import annotations

import asyncio
import base64
import email.utils
import weakref
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from cryptography import x509

from apdu.cps import CpsSession
from apdu.cps_spec import KeyRef
from apdu.errors import ApduError
from apdu.sw import SW
from edged.api.method import BOOL, INT, STR, Method, b64_param, obj, on_card
from edged.services import cms, smime
from edged.services.mail import MailError, MailService, NoSuchMessage, service_of

if TYPE_CHECKING:
    from apdu.protocol import CardProtocol
    from edged.api.server import Connection
    from edged.daemon import Daemon

__all__ = ["METHODS", "card_address"]

MAX_RECIPIENTS = 100
MAX_ATTACHMENTS = 32
_SEND = frozenset({"mail:send"})
_ADDRESS = {"type": "string", "minLength": 3, "maxLength": 254, "pattern": r"^[^@\s]+@[^@\s]+$"}
_ATTACHMENT = obj({"filename": {"type": "string", "minLength": 1, "maxLength": 255},
                   "content_type": {"type": "string", "maxLength": 127},
                   "data": {"type": "string", "contentEncoding": "base64"}},
                  ("filename", "data"))
_ATTACHMENT_OUT = obj({"filename": STR, "content_type": STR, "size": INT,
                       "data": {"type": "string", "contentEncoding": "base64"}},
                      ("filename", "content_type", "size", "data"))


def card_address(certificate: x509.Certificate) -> str | None:
    """The first rfc822Name of a certificate (the CPS signature certificate's e-mail)."""
    try:
        san = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return None
    names = san.value.get_values_for_type(x509.RFC822Name)
    return names[0].lower() if names else None


# The card's certificates, read once per insertion (a new arbiter each time): on the
# terminal's serial line each certificate is a second or more of APDUs.
_CERTIFICATES: weakref.WeakKeyDictionary[Any, tuple[x509.Certificate, x509.Certificate]] = \
    weakref.WeakKeyDictionary()


async def _card_certificates(daemon: Daemon,
                             conn: Connection) -> tuple[x509.Certificate, x509.Certificate]:
    """(signature, authentication = encryption) certificates of the inserted CPS."""
    slot = daemon.slots.find("cps")
    arbiter = slot.arbiter if slot is not None else None
    if arbiter is not None and arbiter in _CERTIFICATES:
        return _CERTIFICATES[arbiter]

    def read(protocol: CardProtocol) -> tuple[x509.Certificate, x509.Certificate]:
        session = CpsSession(protocol)
        return session.certificate(KeyRef.SIGNATURE), session.certificate(KeyRef.AUTHENTICATION)

    certificates = await on_card(daemon, conn, "cps", read, "mail.certificates")
    if arbiter is not None:
        _CERTIFICATES[arbiter] = certificates
    return certificates


class _Signer:
    """The CPS signature key with certificates already read (cms.Signer)."""

    def __init__(self, session: CpsSession, certificate: x509.Certificate,
                 chain: Sequence[x509.Certificate],
                 encryption_certificate: x509.Certificate) -> None:
        self._session = session
        self.certificate = certificate
        self.chain = tuple(chain)
        self.encryption_certificate = encryption_certificate

    def sign(self, data: bytes) -> bytes:
        """PSO HASH + PSO COMPUTE DIGITAL SIGNATURE over SHA-256(data)."""
        return self._session.sign(data, KeyRef.SIGNATURE)


class _Decryptor:
    """The CPS authentication (= encryption) key (cms.Decryptor), like cms.CardDecryptor."""

    def __init__(self, session: CpsSession, certificate: x509.Certificate) -> None:
        self._session = session
        self.certificate = certificate

    def decrypt(self, encrypted_key: bytes, *, oaep: bool) -> bytes:
        """PSO DECIPHER; the card's 6A80 (padding check failed) becomes DecryptionFailed."""
        try:
            return self._session.decipher(encrypted_key, oaep=oaep)
        except ApduError as exc:
            if exc.sw in (SW.INCORRECT_DATA, SW.WRONG_LENGTH):
                raise cms.DecryptionFailed() from None
            raise


async def _address(daemon: Daemon, conn: Connection, service: MailService) -> str:
    """The professional's address: configured, else read from the CPS signature certificate."""
    if service.settings.address:
        return service.settings.address
    address = card_address((await _card_certificates(daemon, conn))[0])
    if not address:
        raise MailError("the CPS signature certificate carries no e-mail address; set "
                        "[mail] address")
    return address


def _masked(address: str) -> str:
    """Patient mailboxes are <INS>@patient.<domain>: keep only the domain in the audit."""
    domain = address.rpartition("@")[2]
    return f"*@{domain}" if domain.startswith("patient.") else address


async def mail_send(daemon: Daemon, conn: Connection, params: dict[str, Any]) -> Any:
    """mail.send; a refusal is audited too (its reason, never the content)."""
    try:
        return await _send(daemon, conn, params)
    except Exception as exc:
        daemon.audit_event("mail.send", conn, outcome="refused",
                           error=str(getattr(exc, "reason", type(exc).__name__)),
                           recipients=len(params.get("to", [])) + len(params.get("cc", [])))
        raise


async def _send(daemon: Daemon, conn: Connection, params: dict[str, Any]) -> Any:
    service = service_of(daemon)
    settings = service.settings
    to = [a.strip() for a in params["to"]]
    cc = [a.strip() for a in params.get("cc", [])]
    everyone = list(dict.fromkeys(a.lower() for a in [*to, *cc]))
    if len(everyone) > MAX_RECIPIENTS:
        raise MailError(f"at most {MAX_RECIPIENTS} recipients")
    if params.get("text") is None and params.get("html") is None:
        raise MailError("a message needs a text or an HTML body")
    attachments = []
    for a in params.get("attachments", []):
        # base64 grows by 4/3: refuse before decoding anything far over the limit
        if len(a["data"]) > 4 * (settings.max_attachment // 3 + 2):
            raise smime.AttachmentTooLarge(a["filename"], len(a["data"]) * 3 // 4,
                                           settings.max_attachment)
        data = b64_param(a["data"], f"attachment {a['filename']!r}", 1 << 31)
        if len(data) > settings.max_attachment:
            raise smime.AttachmentTooLarge(a["filename"], len(data), settings.max_attachment)
        attachments.append(smime.Attachment(a["filename"],
                                            a.get("content_type") or "application/octet-stream",
                                            data))
    sender = await _address(daemon, conn, service)
    settings.ports(sender)  # the operator serves the sender's domain (not_configured otherwise)
    # Every certificate first: an unknown recipient stops here, before the card signs.
    found = await asyncio.gather(*(asyncio.to_thread(service.certificates, a)
                                   for a in everyone))
    recipients = [certs[0] for certs in found]
    extra = [c for certs in found for c in certs[1:]]
    trust = cms.TrustStore(service.roots, intermediates=[*service.intermediates, *extra])
    message_id = email.utils.make_msgid(domain=sender.rpartition("@")[2])
    msg = smime.build_message(sender, to, cc, params.get("subject", ""), params.get("text"),
                              params.get("html"), attachments, message_id,
                              max_attachment=settings.max_attachment)
    if not params.get("subject"):
        del msg["Subject"]  # an empty Subject field does not survive the signed re-read

    signature_cert, encryption_cert = await _card_certificates(daemon, conn)
    chain = [c for c in service.intermediates if c.subject == signature_cert.issuer]

    def seal(protocol: CardProtocol) -> bytes:
        signer = _Signer(CpsSession(protocol), signature_cert, chain, encryption_cert)
        protected = smime.protect(msg, signer, recipients, settings.mode,  # type: ignore[arg-type]
                                  trust=trust)
        return smime.to_bytes(protected)

    body = await on_card(daemon, conn, "cps", seal, "mail.send",
                         timeout=daemon.config.card_timeout + 60)
    await asyncio.to_thread(service.outbox.enqueue, message_id, sender, tuple(everyone), body)
    daemon.audit_event("mail.send", conn, outcome="queued", message_id=message_id,
                       sender=sender, recipients=[_masked(a) for a in everyone],
                       attachments=len(attachments), bytes=len(body))
    return {"message_id": message_id, "state": "queued"}


async def mail_status(daemon: Daemon, conn: Connection, params: dict[str, Any]) -> Any:
    """mail.status."""
    service = service_of(daemon)
    item = await asyncio.to_thread(service.outbox.get, params["message_id"])
    if item is None:
        raise NoSuchMessage(f"no message {params['message_id']!r} in the outbox")
    return {"message_id": item.message_id, "state": item.state, "attempts": item.attempts,
            "last_error": item.last_error}


async def mail_list(daemon: Daemon, conn: Connection, params: dict[str, Any]) -> Any:
    """mail.list."""
    service = service_of(daemon)
    address = await _address(daemon, conn, service)
    messages = await asyncio.to_thread(service.list_mailbox, address)
    return {"address": address, "messages": messages}


async def mail_open(daemon: Daemon, conn: Connection, params: dict[str, Any]) -> Any:
    """mail.open; a refusal is audited too (its reason)."""
    service = service_of(daemon)
    settings = service.settings
    trust = cms.TrustStore(service.roots, intermediates=service.intermediates)
    try:
        address = await _address(daemon, conn, service)
        raw = await asyncio.to_thread(service.retrieve, address, params["uid"])
        encryption_cert = (await _card_certificates(daemon, conn))[1]

        def open_(protocol: CardProtocol) -> smime.OpenedMessage:
            decryptor = _Decryptor(CpsSession(protocol), encryption_cert)
            return smime.open_message(raw, decryptor, trust,
                                      max_attachment=max(settings.max_attachment,
                                                         smime.DEFAULT_MAX_ATTACHMENT))

        opened = await on_card(daemon, conn, "cps", open_, "mail.open",
                               timeout=daemon.config.card_timeout + 60)
    except Exception as exc:
        daemon.audit_event("mail.open", conn, uid=params["uid"], outcome="refused",
                           error=str(getattr(exc, "reason", type(exc).__name__)))
        raise
    signer = opened.signer
    signer_email = card_address(signer) if signer is not None else None
    daemon.audit_event("mail.open", conn, uid=params["uid"], outcome="ok",
                       sender=_masked(opened.sender), signer=signer_email,
                       attachments=len(opened.attachments))
    names = signer.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME) if signer else []
    return {
        "uid": params["uid"], "message_id": opened.message_id, "subject": opened.subject,
        "from": opened.sender, "to": list(opened.to), "cc": list(opened.cc),
        "date": opened.date.isoformat() if opened.date else None,
        "signer": {"name": str(names[0].value) if names else "", "email": signer_email,
                   "valid": signer is not None},
        "text": opened.text, "html": opened.html,
        "attachments": [{"filename": a.filename, "content_type": a.content_type,
                         "size": len(a.data), "data": base64.b64encode(a.data).decode()}
                        for a in opened.attachments],
    }


METHODS: list[Method] = [
    Method("mail.send", mail_send, "Sign (CPS, needs the PIN verified) and encrypt a message "
           "to every recipient and the sender, then queue it for the operator. Recipients "
           "without a directory certificate are refused before anything is signed.", _SEND,
           obj({"to": {"type": "array", "minItems": 1, "maxItems": MAX_RECIPIENTS,
                       "items": _ADDRESS},
                "cc": {"type": "array", "maxItems": MAX_RECIPIENTS, "items": _ADDRESS},
                "subject": {"type": "string", "maxLength": 998},
                "text": {"type": "string"}, "html": {"type": "string"},
                "attachments": {"type": "array", "maxItems": MAX_ATTACHMENTS,
                                "items": _ATTACHMENT}}, ("to",)),
           obj({"message_id": STR, "state": {"type": "string", "enum": ["queued"]}},
               ("message_id", "state"))),
    Method("mail.status", mail_status, "Where a sent message is: queued, sending, sent or "
           "failed, with the attempts and the last error.", _SEND,
           obj({"message_id": {"type": "string", "maxLength": 998}}, ("message_id",)),
           obj({"message_id": STR, "state": {"type": "string",
                                             "enum": ["queued", "sending", "sent", "failed"]},
                "attempts": INT, "last_error": {"type": ["string", "null"]}},
               ("message_id", "state", "attempts", "last_error"))),
    Method("mail.list", mail_list, "The professional's mailbox (POP3, nothing deleted): uid, "
           "from, the outer subject, date, size.", _SEND, obj({}),
           obj({"address": STR, "messages": {"type": "array", "items": obj({
               "uid": STR, "from": STR, "subject": STR, "date": STR, "size": INT},
               ("uid", "from", "subject", "date", "size"))}}, ("address", "messages"))),
    Method("mail.open", mail_open, "Decrypt a message with the CPS (needs the PIN verified) "
           "and verify its signature: subject, from, signer, text, HTML, attachments "
           "(byte-identical, base64).", _SEND,
           obj({"uid": {"type": "string", "minLength": 1, "maxLength": 70}}, ("uid",)),
           obj({"uid": STR, "message_id": {"type": ["string", "null"]}, "subject": STR,
                "from": STR, "to": {"type": "array", "items": STR},
                "cc": {"type": "array", "items": STR}, "date": {"type": ["string", "null"]},
                "signer": obj({"name": STR, "email": {"type": ["string", "null"]},
                               "valid": BOOL}, ("name", "email", "valid")),
                "text": {"type": ["string", "null"]}, "html": {"type": ["string", "null"]},
                "attachments": {"type": "array", "items": _ATTACHMENT_OUT}},
               ("uid", "message_id", "subject", "from", "to", "cc", "date", "signer", "text",
                "html", "attachments"))),
]
