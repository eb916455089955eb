"""The proxy's SMTP submission listener: check the user and the code, protect, relay.

docs/messaging.md ("The encrypting proxy"). A message with a valid, unused emission code is
stripped of it, signed with the structure's seal, encrypted to every recipient and to the
structure, and relayed to the operator as `structure@<domain>`; without one it is refused
with a 5xx and never relayed: nothing leaves in clear. Every outcome is audited
(`proxy.relayed`, `proxy.refused`), never a code, an address list or a password.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import logging
import re
import smtplib
import ssl
import time
from collections.abc import Callable, Sequence
from email.parser import BytesParser
from email.utils import format_datetime, getaddresses, make_msgid
from pathlib import Path
from typing import Any

from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session
from cryptography import x509

from bifente.edged.services import cms, smime
from bifente.edged.services.context import audit_actor
from bifente.edged.services.proxy.codes import check_code
from bifente.edged.services.proxy.directory import UnknownRecipient, directory_certificate
from bifente.edged.services.proxy.message import seven_bit
from bifente.edged.services.proxy.seal import load_seal
from bifente.edged.services.proxy.settings import ProxyConfigError, ProxySettings
from bifente.edged.services.proxy.totp import extract_code
from bifente.edged.state.keystore import Keystore
from bifente.edged.state.keywrap import KeyWrapper
from bifente.edged.state.proxy_users import UserStore

__all__ = ["REFUSED_CLEAR", "ProxyServer", "server_tls_context"]

log = logging.getLogger(__name__)

REFUSED_CLEAR = "550 5.7.0 emission code missing or invalid: mail is never relayed in clear"


class _RelayFailed(Exception):
    def __init__(self, reply: str) -> None:
        super().__init__(reply)
        self.reply = reply


# -- the SMTP listener --------------------------------------------------------------------
class _ProxySMTP(SMTP):
    """aiosmtpd's protocol; nothing changed but a clearer name in tracebacks."""


class ProxyServer:
    """The submission listener; `await start()` / `await stop()` (a daemon extension)."""

    def __init__(self, settings: ProxySettings, state_dir: Path, tls: ssl.SSLContext,
                 wrapper: KeyWrapper, *, audit: Callable[..., Any] | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.settings = settings
        self.state_dir = Path(state_dir)
        self.tls = tls
        self._wrapper = wrapper
        self._audit = audit
        # Loaded first, so that a missing or undecryptable seal stops edged before it listens.
        self.signer: cms.SoftwareSigner | None = load_seal(self.state_dir, wrapper,
                                                           settings.seal_secret_file)
        self.users = UserStore(self.state_dir, wrapper, max_failures=settings.max_failures,
                               lockout_seconds=settings.lockout_seconds, clock=clock)
        try:
            self._client_tls = ssl.create_default_context(cafile=str(settings.ca_file))
            roots = x509.load_pem_x509_certificates(settings.ca_file.read_bytes())
        except (OSError, ValueError) as exc:
            raise ProxyConfigError(f"proxy.ca_file {settings.ca_file}: {exc}") from None
        intermediates = []
        for path in settings.trust_intermediates:
            try:
                intermediates += x509.load_pem_x509_certificates(path.read_bytes())
            except (OSError, ValueError) as exc:
                raise ProxyConfigError(f"proxy.trust_intermediates {path}: {exc}") from None
        if not settings.account_password_file.is_file():
            raise ProxyConfigError(f"proxy.account_password_file {settings.account_password_file}"
                                   " is not a readable file")
        self.trust = cms.TrustStore(roots=roots, intermediates=intermediates)
        self._server: asyncio.AbstractServer | None = None
        self.port = 0

    # audit: outcomes only, never a code, an address list or a password
    def audit(self, event: str, actor: str, **fields: Any) -> None:
        """Append to the audit chain; a value the privacy guard refuses (a Message-ID that
        looks like a NIR) is replaced by a short hash, so the SMTP outcome never changes."""
        if self._audit is not None:
            try:
                self._audit(event, actor=audit_actor(actor), **fields)
            except ValueError:
                hashed = {k: hashlib.sha256(v.encode()).hexdigest()[:16] if isinstance(v, str)
                          else v for k, v in fields.items()}
                self._audit(event, actor=audit_actor(actor), **hashed)
        log.info("%s by %s: %s", event, actor, fields.get("reason", "ok"))

    async def start(self) -> None:
        """Load the seal key (decrypted in memory only) and listen."""
        if self.signer is None:
            self.signer = load_seal(self.state_dir, self._wrapper, self.settings.seal_secret_file)
        loop = asyncio.get_running_loop()

        def factory() -> SMTP:
            return _ProxySMTP(self, hostname="bifente-proxy", ident="bifente proxy",
                              tls_context=self.tls, require_starttls=True,
                              auth_require_tls=True, auth_required=True,
                              authenticator=self.authenticate,
                              data_size_limit=self.settings.max_message_bytes,
                              command_call_limit={"AUTH": 5, "*": 200})

        self._server = await loop.create_server(factory, self.settings.host, self.settings.port)
        self.port = int(self._server.sockets[0].getsockname()[1])
        self.audit("proxy.start", "edged", port=self.port, domain=self.settings.domain)

    async def stop(self) -> None:
        """Stop listening; idempotent."""
        if self._server is not None:
            self._server.close()
            try:
                await asyncio.wait_for(self._server.wait_closed(), 5)
            except Exception as exc:  # stopping goes on (the daemon is closing), but say why
                log.warning("proxy: the listener did not close cleanly: %s",
                            str(exc) or type(exc).__name__)
            self._server = None
        self.users.close()
        self.signer = None

    # aiosmtpd authenticator (sync)
    def authenticate(self, server: SMTP, session: Session, envelope: Envelope,
                     mechanism: str, auth_data: Any) -> AuthResult:
        if not isinstance(auth_data, LoginPassword):
            return AuthResult(success=False, handled=False)
        login = auth_data.login.decode("utf-8", "replace")
        name, reason = self.users.authenticate(login,
                                               auth_data.password.decode("utf-8", "replace"))
        if name is None:
            peer = session.peer[0] if isinstance(session.peer, tuple) else session.peer
            self.audit("proxy.refused", audit_actor(None, str(peer) if peer else None),
                       reason=reason)
            return AuthResult(success=False, handled=False)
        return AuthResult(success=True, auth_data=name)

    async def handle_MAIL(self, server: SMTP, session: Session, envelope: Envelope,
                          address: str, mail_options: list[str]) -> str:
        name = str(session.auth_data)
        email = self.users.email_of(name)
        if email is None or address.strip("<>").lower() != email:
            return f"553 5.7.1 {address} is not the address of the authenticated user"
        envelope.mail_from = email
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RCPT(self, server: SMTP, session: Session, envelope: Envelope,
                          address: str, rcpt_options: list[str]) -> str:
        if len(envelope.rcpt_tos) >= 100:
            return "452 4.5.3 too many recipients (at most 100 per message)"
        if not re.fullmatch(r"[^@\s<>]+@[A-Za-z0-9.-]+", address):
            return f"553 5.1.3 {address[:80]} is not a valid address"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        name = str(session.auth_data)
        raw = envelope.content if isinstance(envelope.content, bytes) else b""
        try:
            return await self._handle(name, envelope, raw)
        except Exception:
            log.exception("proxy: message of %s not relayed", name)
            self.audit("proxy.refused", name, reason="internal-error",
                       recipients=len(envelope.rcpt_tos))
            return "451 4.3.0 the proxy could not protect the message; nothing was relayed"

    async def _handle(self, name: str, envelope: Envelope, raw: bytes) -> str:
        recipients = list(envelope.rcpt_tos)
        msg = BytesParser(policy=smime.POLICY).parsebytes(raw)
        subject = str(msg.get("Subject", ""))
        code, clean_subject = extract_code(subject)
        check = check_code(self.users, name, code)
        if not check.ok:
            self.audit("proxy.refused", name, reason=check.reason, recipients=len(recipients))
            if check.reason == "locked":
                return ("550 5.7.0 too many invalid emission codes: the account is locked; "
                        "mail is never relayed in clear")
            return REFUSED_CLEAR
        email = self.users.email_of(name)
        senders = [a.lower() for _, a in getaddresses(msg.get_all("From", []))]
        if senders != [email]:
            self.audit("proxy.refused", name, reason="from-mismatch", recipients=len(recipients))
            return "550 5.7.1 the From field must be the authenticated user's own address"
        if msg.get_content_type() in ("multipart/signed", "application/pkcs7-mime",
                                      "application/x-pkcs7-mime"):
            self.audit("proxy.refused", name, reason="already-protected",
                       recipients=len(recipients))
            return "554 5.6.0 the message is already signed or encrypted: send it directly"
        try:
            certificates = await asyncio.to_thread(self._certificates, recipients)
        except UnknownRecipient as exc:
            self.audit("proxy.refused", name, reason="unknown-recipient",
                       recipients=len(recipients))
            return (f"550 5.1.1 {exc.args[0]}: no encryption certificate in the directory; "
                    "nothing was relayed")
        except cms.CmsError as exc:
            self.audit("proxy.refused", name, reason="recipient-certificate",
                       recipients=len(recipients))
            return f"550 5.7.1 a recipient certificate is not valid for encryption: {exc}"
        except OSError:
            self.audit("proxy.refused", name, reason="directory-unreachable",
                       recipients=len(recipients))
            return "451 4.4.1 the operator's directory is unreachable; try again later"
        if not self.users.use_step(name, check.step):  # a concurrent message spent it
            self.audit("proxy.refused", name, reason="replayed", recipients=len(recipients))
            return REFUSED_CLEAR
        del msg["Subject"]
        msg["Subject"] = clean_subject
        seven_bit(msg)
        if msg["Message-ID"] is None:
            msg["Message-ID"] = make_msgid(domain=self.settings.domain)
        if msg["Date"] is None:
            msg["Date"] = format_datetime(time_now())
        for bcc in ("Bcc", "Resent-Bcc"):
            del msg[bcc]
        wire = await asyncio.to_thread(self._protect, msg, certificates)
        message_id = str(msg["Message-ID"])
        try:
            await asyncio.to_thread(self._relay, email or "", recipients, wire)
        except _RelayFailed as exc:
            self.audit("proxy.refused", name, reason="relay-failed", message_id=message_id,
                       recipients=len(recipients))
            return exc.reply
        self.audit("proxy.relayed", name, message_id=message_id, recipients=len(recipients))
        return f"250 2.0.0 signed by the structure, encrypted and relayed {message_id}"

    def _protect(self, msg: Any, certificates: list[x509.Certificate]) -> bytes:
        assert self.signer is not None
        return smime.protect_bytes(msg, self.signer, certificates,
                                   "cbc" if self.settings.mode == "cbc" else "gcm")

    def _certificates(self, recipients: Sequence[str]) -> list[x509.Certificate]:
        out = []
        for address in recipients:
            cert = directory_certificate(self.settings.directory_url, self._client_tls, address)
            cms.validate_certificate(cert, self.trust, purpose=cms.KeyPurpose.ENCRYPTION)
            out.append(cert)
        return out

    def _relay(self, sender: str, recipients: Sequence[str], wire: bytes) -> None:
        password = self.settings.account_password_file.read_text(encoding="utf-8").strip()
        s = self.settings
        try:
            with smtplib.SMTP(s.smtp_host, s.smtp_port, timeout=60,
                              local_hostname="bifente-proxy") as client:
                client.ehlo()
                # The TLS name STARTTLS checks (smtplib keeps it in _host; no public setter).
                client._host = s.server_name  # type: ignore[attr-defined]
                client.starttls(context=self._client_tls)
                client.ehlo()
                client.login(s.relay_account, password)
                refused = client.sendmail(sender, list(recipients), wire)
        except smtplib.SMTPRecipientsRefused as exc:
            code, text = next(iter(exc.recipients.values()))
            raise _RelayFailed(_passed_on(code, text)) from None
        except smtplib.SMTPResponseException as exc:
            raise _RelayFailed(_passed_on(exc.smtp_code, exc.smtp_error)) from None
        except (OSError, smtplib.SMTPException) as exc:
            raise _RelayFailed(f"451 4.4.1 the operator is unreachable ({type(exc).__name__});"
                               " try again later") from None
        if refused:
            raise _RelayFailed("451 4.4.1 the operator refused some recipients")


def _passed_on(code: int, text: bytes | str) -> str:
    detail = text.decode("utf-8", "replace") if isinstance(text, bytes) else str(text)
    detail = " ".join(detail.split())[:200]
    if 400 <= code < 500:
        return f"451 4.4.1 the operator deferred the message: {detail}"
    return f"554 5.0.0 the operator refused the message: {detail}"


def time_now() -> dt.datetime:
    """Now, aware (UTC)."""
    return dt.datetime.now(dt.UTC)


def server_tls_context(keystore: Keystore) -> ssl.SSLContext:
    """STARTTLS for mail clients: edged's own server certificate (issued by the device CA)."""
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2  # mail clients: TLS 1.2 still common
    keystore.load_server_chain(ctx)  # the key is encrypted at rest (docs/security.md)
    return ctx
