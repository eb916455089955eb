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
import logging
from typing import TYPE_CHECKING, Any

from cryptography import x509

from bifente.client.codes import CARD_ERROR, MAIL_ERROR, PIN_ERROR, STORAGE_FULL
from bifente.edged.api import uploads
from bifente.edged.api.method import BOOL, INT, STR, Method, b64_param, obj, on_card
from bifente.edged.readers.pcsc import CardKind
from bifente.edged.readers.session import InsertedCps
from bifente.edged.services import cards, cms, smime
from bifente.edged.services.mail import MailError, MailService, NoSuchMessage, service_of

if TYPE_CHECKING:
    from bifente.edged.api.context import ApiContext, Caller

__all__ = ["METHODS", "card_address"]

log = logging.getLogger(__name__)

MAX_RECIPIENTS = 100
MAX_ATTACHMENTS = 32
_SEND = frozenset({"mail:send"})
_READ = frozenset({"mail:read"})  # the mailbox: a sending client does not read it (M10)
_ADDRESS = {"type": "string", "minLength": 3, "maxLength": 254, "pattern": r"^[^@\s]+@[^@\s]+$"}
_ATTACHMENT_FIELDS = {"filename": {"type": "string", "minLength": 1, "maxLength": 255},
                      "content_type": {"type": "string", "maxLength": 127}}
# The bytes in base64, or (larger than one message) a committed upload (edged/api/uploads.py).
_ATTACHMENT = {"anyOf": [
    obj({**_ATTACHMENT_FIELDS, "data": {"type": "string", "contentEncoding": "base64"}},
        ("filename", "data")),
    obj({**_ATTACHMENT_FIELDS, "upload_id": uploads.UPLOAD_ID}, ("filename", "upload_id"))]}
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


async def _card_certificates(daemon: ApiContext,
                             conn: Caller) -> tuple[x509.Certificate, x509.Certificate]:
    """(signature, authentication = encryption) certificates of the inserted CPS."""
    return await on_card(daemon, conn, CardKind.CPS, cards.certificates, "mail.certificates")


async def _address(daemon: ApiContext, conn: Caller, service: MailService) -> str:
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


async def mail_send(daemon: ApiContext, conn: Caller, params: dict[str, Any]) -> Any:
    """mail.send; a refusal is audited too (its reason, never the content)."""
    try:
        return await _send(daemon, conn, params)
    except Exception as exc:
        daemon.audit_event("mail.send", conn, outcome="refused",
                           error=str(getattr(exc, "reason", type(exc).__name__)),
                           recipients=len(params.get("to", [])) + len(params.get("cc", [])))
        raise


async def _send(daemon: ApiContext, conn: Caller, params: dict[str, Any]) -> Any:
    service = service_of(daemon.services.mail)
    settings = service.settings
    key = params.get("idempotency_key")
    client = conn.client_name or ""
    if key is not None:  # a retry of a call that queued: the same message, signed once
        earlier = await asyncio.to_thread(service.outbox.for_key, client, key)
        if earlier is not None:
            return {"message_id": earlier.message_id, "state": earlier.state}
    daemon.space.check("mail.send")  # before an upload is used or the card signs
    to = [a.strip() for a in params["to"]]
    cc = [a.strip() for a in params.get("cc", [])]
    everyone = list(dict.fromkeys(a.lower() for a in [*to, *cc]))
    if len(everyone) > MAX_RECIPIENTS:
        raise MailError(f"at most {MAX_RECIPIENTS} recipients")
    if params.get("text") is None and params.get("html") is None:
        raise MailError("a message needs a text or an HTML body")
    attachments = []
    for a in params.get("attachments", []):
        if "upload_id" in a:
            upload = await uploads.claim(daemon, conn, a["upload_id"], uploads.MAX_UPLOAD)
            if len(upload) > settings.max_attachment:
                raise smime.AttachmentTooLarge(a["filename"], len(upload),
                                               settings.max_attachment)
            # Encoded now, and the upload's bytes let go (Attachment.from_buffer).
            attachments.append(await asyncio.to_thread(
                smime.Attachment.from_buffer, a["filename"],
                a.get("content_type") or "application/octet-stream", upload))
            continue
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

    signature_cert, _ = await _card_certificates(daemon, conn)
    chain = [c for c in service.intermediates if c.subject == signature_cert.issuer]

    # The protected message goes straight into the outbox's spool file, a chunk at a time.
    # What it carries is base64-encoded twice (in the signed entity, then the enveloped one),
    # 78 bytes per 57 each time with CRLF: under twice its size.
    carried = sum(a.size for a in attachments) + sum(
        len(params.get(k) or "") for k in ("text", "html"))
    daemon.space.check("mail.send", carried * 2 + 64 * 1024)
    body = await asyncio.to_thread(service.outbox.new_body)

    def seal(session: InsertedCps) -> int:
        session.claim(conn.client_id)  # this client's PIN, not another's (docs/security.md)
        signer = cms.CardSigner(session, chain)
        with body.open("r+b") as sink:  # never created again if the call gave up
            return smime.protect_to(sink, msg, signer, recipients, settings.mode, trust=trust)

    try:
        size = await on_card(daemon, conn, CardKind.CPS, seal, "mail.send",
                             timeout=daemon.config.card_timeout + 60)
    except BaseException:
        body.unlink(missing_ok=True)
        raise
    # enqueue moves the file into the outbox, or deletes it.
    if key is None:
        await asyncio.to_thread(service.outbox.enqueue, message_id, sender, tuple(everyone),
                                body)
    else:  # two concurrent calls with one key: the first queued wins, the other is dropped
        message_id = await asyncio.to_thread(service.outbox.enqueue_once, client, key,
                                             message_id, sender, tuple(everyone), body)
    try:  # queued: from here the call has succeeded, whatever the audit log says (D1)
        daemon.audit_event("mail.send", conn, outcome="queued", message_id=message_id,
                           sender=sender, recipients=[_masked(a) for a in everyone],
                           attachments=len(attachments), bytes=size)
    except Exception:
        log.exception("mail.send: queued %s but could not audit it", message_id)
    return {"message_id": message_id, "state": "queued"}


async def mail_status(daemon: ApiContext, conn: Caller, params: dict[str, Any]) -> Any:
    """mail.status."""
    service = service_of(daemon.services.mail)
    item = await asyncio.to_thread(service.outbox.get, params["message_id"])
    if item is None:
        raise NoSuchMessage(f"no message {params['message_id']!r} in the outbox")
    return {"message_id": item.message_id, "state": item.state, "attempts": item.attempts,
            "last_error": item.last_error}


async def mail_list(daemon: ApiContext, conn: Caller, params: dict[str, Any]) -> Any:
    """mail.list."""
    service = service_of(daemon.services.mail)
    address = await _address(daemon, conn, service)
    messages = await asyncio.to_thread(service.list_mailbox, address)
    # The operator answered: mail waiting out a backoff (up to retry_max_delay) goes now.
    await asyncio.to_thread(service.outbox.wake)
    return {"address": address, "messages": messages}


async def mail_open(daemon: ApiContext, conn: Caller, params: dict[str, Any]) -> Any:
    """mail.open; a refusal is audited too (its reason)."""
    service = service_of(daemon.services.mail)
    settings = service.settings
    trust = cms.TrustStore(service.roots, intermediates=service.intermediates)
    try:
        address = await _address(daemon, conn, service)
        raw = await asyncio.to_thread(service.retrieve, address, params["uid"])
        def open_(session: InsertedCps) -> smime.OpenedMessage:
            session.claim(conn.client_id)
            decryptor = cms.CardDecryptor(session)
            return smime.open_message(raw, decryptor, trust,
                                      max_attachment=max(settings.max_attachment,
                                                         smime.DEFAULT_MAX_ATTACHMENT))

        opened = await on_card(daemon, conn, CardKind.CPS, open_, "mail.open",
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


# The card signs or decrypts (CARD, PIN), the mail service refuses (MAIL).
_MAIL = (CARD_ERROR, PIN_ERROR, MAIL_ERROR)

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
                                "items": _ATTACHMENT},
                "idempotency_key": {"type": "string", "minLength": 1, "maxLength": 128,
                                    "description": "the same key again (same client) returns "
                                    "the message queued the first time, never a second one"}},
               ("to",)),
           obj({"message_id": STR, "state": {"type": "string",
                                             "enum": ["queued", "sending", "sent", "failed"]}},
               ("message_id", "state")), errors=(*_MAIL, STORAGE_FULL)),
    Method("mail.status", mail_status, "Where a sent message is: queued, sending, sent or "
           "failed, with the attempts and the last error.", _SEND,
           obj({"message_id": {"type": "string", "maxLength": 998}}, ("message_id",)),
           obj({"message_id": STR, "state": {"type": "string",
                                             "enum": ["queued", "sending", "sent", "failed"]},
                "attempts": INT, "last_error": {"type": ["string", "null"]}},
               ("message_id", "state", "attempts", "last_error")), errors=_MAIL),
    Method("mail.list", mail_list, "The professional's mailbox (POP3, nothing deleted): uid, "
           "from, the outer subject, date, size.", _READ, obj({}),
           obj({"address": STR, "messages": {"type": "array", "items": obj({
               "uid": STR, "from": STR, "subject": STR, "date": STR, "size": INT},
               ("uid", "from", "subject", "date", "size"))}}, ("address", "messages")),
           errors=_MAIL),
    Method("mail.open", mail_open, "Decrypt a message with the CPS (needs the PIN verified) "
           "and verify its signature: subject, from, signer, text, HTML, attachments "
           "(byte-identical, base64).", _READ,
           obj({"uid": {"type": "string", "minLength": 1, "maxLength": 70}}, ("uid",)),
           obj({"uid": STR, "message_id": {"type": ["string", "null"]}, "subject": STR,
                "from": STR, "to": {"type": "array", "items": STR},
                "cc": {"type": "array", "items": STR}, "date": {"type": ["string", "null"]},
                "signer": obj({"name": STR, "email": {"type": ["string", "null"]},
                               "valid": BOOL}, ("name", "email", "valid")),
                "text": {"type": ["string", "null"]}, "html": {"type": ["string", "null"]},
                "attachments": {"type": "array", "items": _ATTACHMENT_OUT}},
               ("uid", "message_id", "subject", "from", "to", "cc", "date", "signer", "text",
                "html", "attachments")), errors=_MAIL),
]
