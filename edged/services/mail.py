"""Secure health mail from the terminal: settings, directory, SMTP submission, POP3 reading.

`MailService` is a daemon service (edged/services/container.py): it owns the durable
outbox (state_dir/outbox.db) and runs its delivery loop, submitting over SMTP with STARTTLS
and AUTH to the configured operator. Certificates come from the operator's directory over
HTTPS, the CA pinned to the configured one. Reading uses POP3 over TLS and never deletes.
The cryptography (sign with the CPS, encrypt to every recipient and the sender, decrypt with
the card) is done by edged/api/mail_methods.py with edged/services/smime/, on the card.

[mail] keys (docs/messaging.md, "The mail service"):

    host               the operator's SMTP/POP3 host
    submission_port    SMTP submission (STARTTLS then AUTH)         default 587
    pop3_port          POP3 over TLS                                 default 995
    domains            per-domain ports, for an operator that serves each of its domains on
                       its own ports: {"<domain>" = {submission_port = N, pop3_port = N}};
                       submission_port / pop3_port, when set, win over them
    directory_url      https://host:port of the certificate directory
    ca_file            the CA to trust for the operator's TLS (pinned: only this one)
    password_file      the mailbox password (one line)
    address            the professional's address; default: the e-mail of the CPS
                       signature certificate, read from the card
    trust_roots        roots for verifying signed mail (PEM); default ca_file
    intermediates_file intermediate CA certificates (PEM, several), sent with signatures
    max_attachment_bytes   default 25 MB
    mode               "gcm" (default) or "cbc"
    timeout            network timeout in seconds (default 30)
    retry_base_delay / retry_max_delay   outbox backoff (defaults 2 s / 600 s)
"""

from __future__ import annotations

import asyncio
import contextlib
import email.message
import email.parser
import email.policy
import json
import logging
import poplib
import smtplib
import ssl
import threading
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cryptography import x509

from bifente.edged.config import ConfigError
from bifente.edged.services import smime
from bifente.edged.services.outbox import Outbox, OutboxItem, PermanentFailure, TemporaryFailure
from bifente.edged.services.smtp_stream import LineTooLong, sendmail_stream

if TYPE_CHECKING:
    from bifente.edged.services.context import ServiceContext

__all__ = [
    "MailError",
    "MailService",
    "MailSettings",
    "MailUnavailable",
    "NoSuchMessage",
    "UnknownRecipient",
    "extension",
    "load_certificates",
]

log = logging.getLogger(__name__)

DEFAULT_MAX_ATTACHMENT = 25 * 1024 * 1024
MAX_LIST = 500  # messages listed at most (newest kept)
MAX_RETRIEVE = 64 * 1024 * 1024

_KEYS = {"domains", "host", "submission_port", "pop3_port", "directory_url", "ca_file",
         "password_file", "address", "trust_roots", "intermediates_file",
         "max_attachment_bytes", "mode", "timeout", "retry_base_delay", "retry_max_delay"}


# -- errors -------------------------------------------------------------------------------
class MailError(Exception):
    """A mail failure with a reason code (edged/api/errors.py maps it to MAIL_ERROR)."""

    reason = "mail_error"

    def __init__(self, message: str, **data: Any) -> None:
        super().__init__(message)
        self.data = data


class UnknownRecipient(MailError):
    """The directory has no encryption certificate for an address."""

    reason = "unknown_recipient"

    def __init__(self, address: str, detail: str = "") -> None:
        super().__init__(f"unknown recipient {address}" + (f": {detail}" if detail else ""),
                         address=address)
        self.address = address


class MailUnavailable(MailError):
    """The operator (directory, POP3) could not be reached or answered badly."""

    reason = "operator_unavailable"


class OperatorRefused(MailError):
    """The operator refused a request for good (login, mailbox)."""

    reason = "operator_refused"


class NoSuchMessage(MailError):
    """No message with that id (outbox) or uid (mailbox)."""

    reason = "no_such_message"


class MailNotConfigured(MailError):
    """The daemon has no [mail] section."""

    reason = "not_configured"


# -- settings -----------------------------------------------------------------------------
def load_certificates(path: Path) -> list[x509.Certificate]:
    """Every certificate of a PEM file."""
    return x509.load_pem_x509_certificates(path.read_bytes())


def _domains(value: object) -> dict[str, tuple[int, int]]:
    """The [mail] domains table: {domain: {submission_port, pop3_port}} -> {domain: ports}."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ConfigError("[mail] domains must be a table of domain = {submission_port, "
                          "pop3_port}")
    domains: dict[str, tuple[int, int]] = {}
    for name, ports in value.items():
        if not isinstance(ports, dict) or set(ports) != {"submission_port", "pop3_port"}:
            raise ConfigError(f"[mail] domains.{name} must give exactly submission_port "
                              "and pop3_port")
        pair = (ports["submission_port"], ports["pop3_port"])
        if not all(isinstance(p, int) and not isinstance(p, bool) and 1 <= p <= 65535
                   for p in pair):
            raise ConfigError(f"[mail] domains.{name}: ports must be integers in 1..65535")
        domains[str(name).lower()] = pair
    return domains


@dataclass(frozen=True)
class MailSettings:
    """The [mail] table, checked."""

    host: str
    directory_url: str
    ca_file: Path
    password: str = field(repr=False)
    submission_port: int | None = None
    pop3_port: int | None = None
    domains: dict[str, tuple[int, int]] = field(default_factory=dict)  # (submission, pop3)
    address: str | None = None
    trust_roots: Path | None = None
    intermediates_file: Path | None = None
    max_attachment: int = DEFAULT_MAX_ATTACHMENT
    mode: smime.Mode = "gcm"
    timeout: float = 30.0
    retry_base_delay: float = 2.0
    retry_max_delay: float = 600.0

    @classmethod
    def from_table(cls, table: dict[str, Any]) -> MailSettings:
        """Check the raw [mail] table; ConfigError naming the key otherwise."""
        unknown = sorted(set(table) - _KEYS)
        if unknown:
            raise ConfigError(f"[mail]: unknown setting(s) {', '.join(unknown)} "
                              f"(known: {', '.join(sorted(_KEYS))})")

        def text(key: str) -> str | None:
            value = table.get(key)
            if value is not None and (not isinstance(value, str) or not value):
                raise ConfigError(f"[mail] {key} must be a non-empty string")
            return value

        def number(key: str, kind: type, low: float, high: float) -> Any:
            value = table.get(key)
            if value is None:
                return None
            if isinstance(value, bool) or not isinstance(value, int | float) or \
                    (kind is int and not isinstance(value, int)) or not low <= value <= high:
                what = "an integer" if kind is int else "a number"
                raise ConfigError(f"[mail] {key} must be {what} in {low}..{high}, "
                                  f"got {value!r}")
            return kind(value)

        def path(key: str) -> Path | None:
            value = text(key)
            if value is None:
                return None
            p = Path(value)
            if not p.is_file():
                raise ConfigError(f"[mail] {key}: no such file {value}")
            return p

        values: dict[str, Any] = {}
        domains = _domains(table.get("domains"))
        password: str | None = None
        for key in ("host", "directory_url", "address", "mode"):
            if (v := text(key)) is not None:
                values[key] = v
        for key in ("ca_file", "trust_roots", "intermediates_file"):
            if (p := path(key)) is not None:
                values[key] = p
        if (p := path("password_file")) is not None:
            lines = p.read_text(encoding="utf-8").splitlines()
            password = lines[0] if lines else ""
            if not password:
                raise ConfigError("[mail] password_file is empty")
        for key, kind, low, high in (("submission_port", int, 1, 65535),
                                     ("pop3_port", int, 1, 65535),
                                     ("timeout", float, 0.1, 600),
                                     ("retry_base_delay", float, 0.01, 3600),
                                     ("retry_max_delay", float, 0.01, 86400)):
            if (v := number(key, kind, low, high)) is not None:
                values[key] = v
        if (v := number("max_attachment_bytes", int, 1, 1 << 30)) is not None:
            values["max_attachment"] = v
        for key in ("host", "directory_url", "ca_file"):
            if key not in values:
                raise ConfigError(f"[mail] {key} is required")
        if not Path(values["ca_file"]).is_file():
            raise ConfigError(f"[mail] ca_file: no such file {values['ca_file']}")
        if not str(values["directory_url"]).startswith("https://"):
            raise ConfigError("[mail] directory_url must be https://")
        if password is None:
            raise ConfigError("[mail] password_file is required")
        if values.get("mode", "gcm") not in ("gcm", "cbc"):
            raise ConfigError("[mail] mode must be \"gcm\" or \"cbc\"")
        if "address" in values and "@" not in values["address"]:
            raise ConfigError("[mail] address must be an e-mail address")
        if not domains and ("submission_port" not in values or "pop3_port" not in values):
            values.setdefault("submission_port", 587)
            values.setdefault("pop3_port", 995)
        return cls(password=password, domains=domains, **values)

    def ports(self, address: str) -> tuple[int, int]:
        """(submission, pop3s) for the professional's address."""
        domain = address.rpartition("@")[2].lower()
        sub, pop = self.domains.get(domain, (None, None))
        sub = self.submission_port or sub
        pop = self.pop3_port or pop
        if sub is None or pop is None:
            raise MailNotConfigured(f"the operator does not serve {domain} "
                                    "(set submission_port and pop3_port)")
        return sub, pop


# -- the service --------------------------------------------------------------------------
class MailService:
    """Outbox and delivery loop, directory, mailbox reading (blocking calls run in threads)."""

    def __init__(self, ctx: ServiceContext, settings: MailSettings) -> None:
        self.ctx = ctx
        self.settings = settings
        self.context = ssl.create_default_context(cafile=str(settings.ca_file))
        self.context.minimum_version = ssl.TLSVersion.TLSv1_2
        self.roots = load_certificates(settings.trust_roots or settings.ca_file)
        self.intermediates = (load_certificates(settings.intermediates_file)
                              if settings.intermediates_file else [])
        self.outbox = Outbox(ctx.config.state_dir / "outbox.db",
                             base_delay=settings.retry_base_delay,
                             max_delay=settings.retry_max_delay)
        self._task: asyncio.Task[None] | None = None
        self._box_locks: dict[str, threading.Lock] = {}
        self._box_locks_guard = threading.Lock()

    async def start(self) -> None:
        """Run the delivery loop."""
        self._task = asyncio.get_running_loop().create_task(self.outbox.run(self._deliver))

    async def stop(self) -> None:
        """Stop delivering (a message being sent is retried at the next start); idempotent."""
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            except Exception:  # the rest of Daemon.stop must still run (D1)
                log.exception("mail: the delivery loop ended with an error")
            self._task = None
            self.outbox.close()

    # -- submission --------------------------------------------------------------------
    async def _deliver(self, item: OutboxItem) -> None:
        try:
            try:
                await asyncio.to_thread(self.submit, item)
            except MailError as exc:  # e.g. no submission port for the sender's domain
                raise PermanentFailure(str(exc)) from None
            except (TemporaryFailure, PermanentFailure, OSError, TimeoutError):
                raise
            except Exception as exc:  # a bug must not stop the loop: retried, then failed
                log.exception("mail: delivery of %s failed unexpectedly", item.message_id)
                raise TemporaryFailure(f"internal error: {type(exc).__name__}") from None
        except PermanentFailure as exc:
            self._audit("mail.failed", message_id=item.message_id, attempts=item.attempts + 1,
                        error=str(exc)[:300])
            raise
        self._audit("mail.delivered", message_id=item.message_id, attempts=item.attempts + 1)

    def _audit(self, event: str, **fields: Any) -> None:
        # The message has left (or been refused): a failing audit write must not make the
        # outbox send it again or stop the loop (D1); it is logged, without the fields.
        try:
            self.ctx.audit_event(event, None, **fields)
        except Exception:
            log.exception("mail: could not audit %s", event)

    def submit(self, item: OutboxItem) -> None:
        """SMTP + STARTTLS + AUTH; TemporaryFailure (4xx, network) or PermanentFailure (5xx)."""
        port = self.settings.ports(item.sender)[0]
        try:
            body = item.open_body()  # read a chunk at a time (smtp_stream.py)
        except FileNotFoundError:  # gone from the spool: no retry brings it back
            raise PermanentFailure("the message's body is missing from the outbox") from None
        try:
            with body, smtplib.SMTP(self.settings.host, port,
                                    timeout=self.settings.timeout) as smtp:
                smtp.starttls(context=self.context)
                smtp.login(item.sender, self.settings.password)
                size = body.seek(0, 2)
                body.seek(0)
                refused = sendmail_stream(smtp, item.sender, list(item.recipients), body, size)
        except LineTooLong as exc:
            raise PermanentFailure(str(exc)) from None
        except smtplib.SMTPRecipientsRefused as exc:
            raise _failure(exc.recipients) from None
        except smtplib.SMTPResponseException as exc:
            raise _failure({"": (exc.smtp_code, exc.smtp_error)}) from None
        except (smtplib.SMTPException, ssl.SSLError) as exc:
            raise TemporaryFailure(f"operator: {exc}") from None
        except OSError as exc:
            raise TemporaryFailure(f"operator unreachable: {exc.strerror or exc}") from None
        if refused:  # accepted for some recipients only: the others are lost to a retry
            raise _failure(refused, partial=True)
        log.info("mail %s submitted (%d recipient(s))", item.message_id, len(item.recipients))

    # -- directory -----------------------------------------------------------------------
    def certificates(self, address: str) -> list[x509.Certificate]:
        """The encryption certificate of an address (first), with any chain the directory sends."""
        query = urllib.parse.urlencode({"address": address})
        url = f"{self.settings.directory_url.rstrip('/')}/certificate?{query}"
        try:
            with urllib.request.urlopen(url, context=self.context,  # noqa: S310 https only
                                        timeout=self.settings.timeout) as response:
                return x509.load_pem_x509_certificates(response.read(1 << 20))
        except urllib.error.HTTPError as exc:
            detail = _http_reason(exc)
            if exc.code == 404:
                raise UnknownRecipient(address, detail) from None
            if exc.code == 400:
                raise MailError(f"bad address {address!r}: {detail}",
                                address=address) from None
            raise MailUnavailable(f"directory answered {exc.code}: {detail}") from None
        except (urllib.error.URLError, OSError, ValueError) as exc:
            raise MailUnavailable(f"cannot reach the directory: {exc}") from None

    # -- mailbox -------------------------------------------------------------------------
    def _pop3(self, address: str) -> poplib.POP3_SSL:
        port = self.settings.ports(address)[1]
        try:
            box = poplib.POP3_SSL(self.settings.host, port, context=self.context,
                                  timeout=self.settings.timeout)
        except (OSError, poplib.error_proto) as exc:
            # error_proto here: the connection closed before the greeting ('-ERR EOF', an
            # operator going down: found by the 30-minute soak) or a greeting that is not +OK.
            raise MailUnavailable(f"cannot reach the mailbox: {_text(exc)}") from None
        try:
            box.user(address)
            box.pass_(self.settings.password)
        except poplib.error_proto as exc:
            box.close()
            if _text(exc) == _POPLIB_CLOSED:  # the operator went away mid-login (the soak)
                raise MailUnavailable("the mailbox closed the connection") from None
            raise OperatorRefused(f"mailbox login refused: {_text(exc)}") from None
        except OSError as exc:  # reset or timed out mid-login: an outage, not a refusal
            box.close()
            raise MailUnavailable(f"cannot reach the mailbox: {exc}") from None
        return box

    def _box_lock(self, address: str) -> threading.Lock:
        # POP3 locks a maildrop for one session (RFC 1939 §8): two clients of the same
        # professional listing at once got "[IN-USE]" (found by the soak). One at a time here.
        with self._box_locks_guard:
            return self._box_locks.setdefault(address.lower(), threading.Lock())

    def list_mailbox(self, address: str) -> list[dict[str, Any]]:
        """uid, from, subject (the outer one), date, size of every message; nothing deleted."""
        with self._box_lock(address):
            return self._list_mailbox(address)

    def retrieve(self, address: str, uid: str) -> bytes:
        """One message by its uid, as stored; NoSuchMessage when it is not there."""
        with self._box_lock(address):
            return self._retrieve(address, uid)

    def _list_mailbox(self, address: str) -> list[dict[str, Any]]:
        box = self._pop3(address)
        try:
            uids = _listing(box.uidl()[1])
            sizes = _listing(box.list()[1])
            out = []
            for number, uid in list(uids.items())[-MAX_LIST:]:
                lines = _head(box, int(number))
                head = email.parser.BytesHeaderParser(policy=email.policy.default).parsebytes(
                    b"\r\n".join(lines[:_blank(lines)]))
                out.append({"uid": uid, "from": _field(head, "From"),
                            "subject": _field(head, "Subject"), "date": _field(head, "Date"),
                            "size": int(sizes.get(number, 0))})
            return out
        except (poplib.error_proto, OSError) as exc:
            raise MailUnavailable(f"mailbox: {_text(exc)}") from None
        finally:
            with contextlib.suppress(Exception):
                box.quit()

    def _retrieve(self, address: str, uid: str) -> bytes:
        box = self._pop3(address)
        try:
            number = next((n for n, u in _listing(box.uidl()[1]).items() if u == uid), None)
            if number is None:
                raise NoSuchMessage(f"no message {uid!r} in the mailbox")
            size = int(_listing(box.list()[1]).get(number, 0))
            if size > MAX_RETRIEVE:
                raise MailError(f"message of {size} bytes is over {MAX_RETRIEVE}")
            return b"\r\n".join(box.retr(int(number))[1]) + b"\r\n"
        except (poplib.error_proto, OSError) as exc:
            raise MailUnavailable(f"mailbox: {_text(exc)}") from None
        finally:
            with contextlib.suppress(Exception):
                box.quit()


def _failure(replies: Mapping[str, tuple[int, bytes | str]], *,
             partial: bool = False) -> Exception:
    """The outbox failure for SMTP replies: any 4xx -> temporary, else permanent."""
    parts = [f"{code} {_text(text)}" + (f" ({rcpt})" if rcpt else "")
             for rcpt, (code, text) in replies.items()]
    message = "operator refused: " + "; ".join(parts)
    if not partial and any(400 <= code < 500 for code, _ in replies.values()):
        return TemporaryFailure(message)
    return PermanentFailure(message)


def _field(head: email.message.Message, name: str) -> str:
    """A header field for a listing; one hostile message must not break the list (D2).

    Anyone in the trust space can send `From: x:;y@z.test`, on which CPython's header
    registry raises: the field is then shown as received, unfolded.
    """
    try:
        return str(head[name] or "")
    except smime.EMAIL_ERRORS:
        raw = next((v for k, v in head.raw_items() if k.lower() == name.lower()), "")
        return " ".join(str(raw).split())


# What poplib raises when the server closes the connection instead of answering; not a
# server's -ERR (RFC 1939 §3), so no refusal.
_POPLIB_CLOSED = "-ERR EOF"


def _text(value: object) -> str:
    if isinstance(value, BaseException) and value.args:
        value = value.args[0]
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    return " ".join(str(value).split())


def _http_reason(exc: urllib.error.HTTPError) -> str:
    with contextlib.suppress(Exception):
        return str(json.loads(exc.read(4096)).get("reason", ""))
    return ""


def _listing(lines: list[bytes]) -> dict[str, str]:
    out = {}
    for line in lines:
        number, _, value = line.decode("ascii", "replace").partition(" ")
        out[number] = value.strip()
    return out


def _head(box: poplib.POP3_SSL, number: int) -> list[bytes]:
    """The header lines of a message: TOP n 0 (RFC 1939 §7), else the whole message."""
    try:
        return box.top(number, 0)[1]
    except poplib.error_proto:
        return box.retr(number)[1]


def _blank(lines: list[bytes]) -> int:
    for i, line in enumerate(lines):
        if not line:
            return i
    return len(lines)


def extension(ctx: ServiceContext) -> MailService | None:
    """The service; None when [mail] is empty."""
    if not ctx.config.mail:
        return None
    return MailService(ctx, MailSettings.from_table(ctx.config.mail))


def service_of(service: MailService | None) -> MailService:
    """The running mail service, or MailNotConfigured."""
    if service is None:
        raise MailNotConfigured("secure mail is not configured on this terminal ([mail])")
    return service
