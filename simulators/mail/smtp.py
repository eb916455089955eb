"""The SMTP side of an operator: authenticated submission and operator-to-operator relay."""

from __future__ import annotations

import logging
import ssl
from datetime import UTC, datetime
from email.parser import BytesHeaderParser
from email.utils import format_datetime
from typing import TYPE_CHECKING, Any

from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from bifente.simulators.mail import replies
from bifente.simulators.mail.addresses import Address, mask_address, mask_text, parse_address
from bifente.simulators.mail.store import Account

if TYPE_CHECKING:
    from bifente.simulators.mail.operator import MailOperator

__all__ = ["RelayHandler", "SmtpServer", "SubmissionHandler", "is_smime"]

log = logging.getLogger(__name__)

# Top-level types the trust space carries (docs/messaging.md stand-in profile, RFC 8551 §3).
SMIME_TYPES = frozenset({"application/pkcs7-mime", "application/x-pkcs7-mime"})
SIGNED_PROTOCOLS = frozenset({"application/pkcs7-signature", "application/x-pkcs7-signature"})
MAX_RECIPIENTS = 100  # RFC 5321 §4.5.3.1.8: at least 100 must be accepted


def is_smime(content: bytes) -> bool:
    """True when the top-level entity is S/MIME: enveloped/signed data or multipart/signed."""
    headers = BytesHeaderParser().parsebytes(content, headersonly=True)
    kind = headers.get_content_type()
    if kind in SMIME_TYPES:
        return True
    protocol = str(headers.get_param("protocol", "") or "").lower()
    return kind == "multipart/signed" and protocol in SIGNED_PROTOCOLS


class SmtpServer(SMTP):
    """aiosmtpd's protocol with the trust space's replies for the size limit (RFC 1870)."""

    async def push(self, status: Any) -> None:
        """Send a reply; aiosmtpd's two size refusals get one clear enhanced-status text."""
        if isinstance(status, str) and status.startswith("552 Error"):
            status = replies.TOO_BIG.format(limit=self.data_size_limit)
        await super().push(status)


def _received(server: SMTP, session: Session, domain: str) -> bytes:
    """A trace header (RFC 5321 §4.4) for the hop that just received the message."""
    peer = session.peer[0] if isinstance(session.peer, tuple) else "unknown"
    helo = (session.host_name or "unknown").replace("\r", "").replace("\n", "")[:255]
    with_ = "ESMTPSA" if session.authenticated else ("ESMTPS" if session.ssl else "ESMTP")
    line = (f"Received: from {helo} ([{peer}])\r\n\tby smtp.{domain} (bifente test operator)"
            f" with {with_}; {format_datetime(datetime.now(UTC))}\r\n")
    return line.encode("ascii", "replace")


class _Handler:
    """What the submission and relay sides share: recipient and content rules."""

    def __init__(self, operator: MailOperator, domain: str) -> None:
        self.operator = operator
        self.domain = domain

    def _address(self, text: str) -> Address | str:
        try:
            return parse_address(text)
        except ValueError as exc:
            return replies.BAD_ADDRESS.format(reason=exc)

    def _recipient_refusal(self, envelope: Envelope, rcpt: Address) -> str | None:
        if len(envelope.rcpt_tos) >= MAX_RECIPIENTS:
            return replies.TOO_MANY_RECIPIENTS.format(limit=MAX_RECIPIENTS)
        owner = self.operator.space.operator_of(rcpt.domain)
        if owner is None:
            return replies.OUTSIDE_TRUST_SPACE.format(domain=rcpt.domain)
        if owner in self.operator.domains:
            if self.operator.account(rcpt) is None:
                return replies.UNKNOWN_MAILBOX.format(address=rcpt.masked)
        elif not self.operator.routable(owner):
            return replies.NO_ROUTE.format(domain=owner)
        return None

    def _content_refusal(self, envelope: Envelope) -> str | None:
        content = envelope.content
        assert isinstance(content, bytes)  # decode_data=False
        if self.operator.require_smime and not is_smime(content):
            log.info("smtp.%s: clear mail from %s refused", self.domain,
                     mask_address(envelope.mail_from or ""))
            return replies.CLEAR_MAIL_REFUSED
        return None


class SubmissionHandler(_Handler):
    """Submission (RFC 6409): STARTTLS, then AUTH, then mail from the account's own address."""

    def authenticate(self, server: SMTP, session: Session, envelope: Envelope,
                     mechanism: str, auth_data: Any) -> AuthResult:
        """aiosmtpd authenticator: PLAIN/LOGIN against this domain's accounts."""
        if not isinstance(auth_data, LoginPassword):
            return AuthResult(success=False, handled=False)
        login = auth_data.login.decode("utf-8", "replace")
        account = self.operator.authenticate(self.domain, login,
                                             auth_data.password.decode("utf-8", "replace"))
        log.info("smtp.%s: AUTH %s for %s: %s", self.domain, mechanism, mask_address(login),
                 "ok" if account else "refused")
        if account is None:
            return AuthResult(success=False, handled=False)
        return AuthResult(success=True, auth_data=account)

    async def handle_MAIL(self, server: SMTP, session: Session, envelope: Envelope,
                          address: str, mail_options: list[str]) -> str:
        """Sender: inside the trust space and owned by the authenticated account."""
        sender = self._address(address)
        if isinstance(sender, str):
            return sender
        if self.operator.space.operator_of(sender.domain) is None:
            return replies.OUTSIDE_TRUST_SPACE.format(domain=sender.domain)
        account = session.auth_data
        assert isinstance(account, Account)  # auth_required: set by authenticate() above
        if not account.may_send_as(sender):
            return replies.NOT_YOUR_ADDRESS.format(sender=sender.masked)
        envelope.mail_from = str(sender)
        envelope.mail_options.extend(mail_options)
        return replies.OK_SENDER

    async def handle_RCPT(self, server: SMTP, session: Session, envelope: Envelope,
                          address: str, rcpt_options: list[str]) -> str:
        """Recipient: trusted domain, existing mailbox when the domain is ours to know."""
        rcpt = self._address(address)
        if isinstance(rcpt, str):
            return rcpt
        refusal = self._recipient_refusal(envelope, rcpt)
        if refusal:
            return refusal
        envelope.rcpt_tos.append(str(rcpt))
        envelope.rcpt_options.extend(rcpt_options)
        return replies.OK_RCPT

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        """Relay to the other operators first, then deliver here: 250 means delivered."""
        refusal = self._content_refusal(envelope)
        if refusal:
            return refusal
        assert isinstance(envelope.content, bytes)
        content = _received(server, session, self.domain) + envelope.content
        local: list[Address] = []
        remote: dict[str, list[Address]] = {}
        for rcpt in map(parse_address, envelope.rcpt_tos):
            owner = self.operator.space.operator_of(rcpt.domain)
            assert owner is not None  # checked at RCPT
            (local if owner == self.domain else remote.setdefault(owner, [])).append(rcpt)
        for owner, rcpts in remote.items():
            failure = await self.operator.relay(self.domain, owner, envelope.mail_from or "",
                                                rcpts, content)
            if failure:
                return failure
        if local:
            await self.operator.deliver(local, content)
        relayed = sum(len(r) for r in remote.values())
        return replies.DELIVERED.format(count=len(local) + relayed, relayed=relayed)


def peer_operator(session: Session, trusted: frozenset[str]) -> str | None:
    """The trust-space operator named by the verified TLS client certificate (smtp.<domain>)."""
    cert = (session.ssl or {}).get("peercert") or {}
    for kind, value in cert.get("subjectAltName", ()):
        if (kind == "DNS" and isinstance(value, str) and value.startswith("smtp.")
                and value[5:].lower() in trusted):
            return value[5:].lower()
    return None


class RelayHandler(_Handler):
    """Inbound relay from other operators: STARTTLS with a client certificate, local mail only."""

    async def handle_MAIL(self, server: SMTP, session: Session, envelope: Envelope,
                          address: str, mail_options: list[str]) -> str:
        """Sender: from the relaying operator's own domain, as its certificate says."""
        peer = peer_operator(session, self.operator.space.domains)
        if peer is None:
            log.info("relay.%s: refused a peer without an operator certificate", self.domain)
            return replies.RELAY_NEEDS_OPERATOR
        sender = self._address(address)
        if isinstance(sender, str):
            return sender
        owner = self.operator.space.operator_of(sender.domain)
        if owner is None:
            return replies.OUTSIDE_TRUST_SPACE.format(domain=sender.domain)
        if owner != peer:
            return replies.RELAY_WRONG_OPERATOR.format(peer=peer, domain=sender.domain)
        envelope.mail_from = str(sender)
        envelope.mail_options.extend(mail_options)
        return replies.OK_SENDER

    async def handle_RCPT(self, server: SMTP, session: Session, envelope: Envelope,
                          address: str, rcpt_options: list[str]) -> str:
        """Recipient: a mailbox of this domain only (no open relay)."""
        rcpt = self._address(address)
        if isinstance(rcpt, str):
            return rcpt
        owner = self.operator.space.operator_of(rcpt.domain)
        if owner is not None and owner != self.domain:
            return replies.RELAY_DENIED.format(domain=self.domain)
        refusal = self._recipient_refusal(envelope, rcpt)
        if refusal:
            return refusal
        envelope.rcpt_tos.append(str(rcpt))
        envelope.rcpt_options.extend(rcpt_options)
        return replies.OK_RCPT

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        """Deliver to this domain's mailboxes (the S/MIME rule is checked again here)."""
        refusal = self._content_refusal(envelope)
        if refusal:
            return refusal
        assert isinstance(envelope.content, bytes)
        rcpts = [parse_address(r) for r in envelope.rcpt_tos]
        await self.operator.deliver(rcpts, _received(server, session, self.domain)
                                    + envelope.content)
        log.info("relay.%s: %d message(s) in from %s", self.domain, len(rcpts),
                 mask_text(str(peer_operator(session, self.operator.space.domains))))
        return replies.DELIVERED.format(count=len(rcpts), relayed=0)


def server_context(chain: str, key: str, *, client_ca: str | None = None) -> ssl.SSLContext:
    """A TLS server context (TLS 1.2+); with `client_ca`, client certificates are verified."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(chain, key)
    if client_ca:
        context.load_verify_locations(client_ca)
        context.verify_mode = ssl.CERT_OPTIONAL  # checked per command: see peer_operator()
    return context
