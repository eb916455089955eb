"""The encrypting proxy (M8; issue 5 §5): ordinary mail clients in, signed + encrypted mail out.

A structure's staff send from their usual mail client to an SMTP submission listener in
edged (STARTTLS required, then AUTH with their local account). Each message must carry a
one-time **emission code** (RFC 6238 TOTP, 6 digits, 30 s, ±1 step) at the start of its
Subject, as `[code:123456]`. With a valid, unused code the proxy strips it, signs the message
with the structure's seal certificate, encrypts it to every recipient (certificates from the
operator's directory) and to the structure, and relays it to the operator as
`structure@<domain>`. Without one the message is refused with a 5xx and never relayed:
nothing leaves in clear. Codes are single-use; failures lock the user out after N tries;
every outcome is audited (`proxy.relayed`, `proxy.refused`), never a code.

Files under `<state_dir>/proxy/` (0600, directory 0700):
  users.db        local users: e-mail, salted SHA-256 of the SMTP password, TOTP secret,
                  last used time step, failure count, lockout
  seal.key.pem    the seal key, PKCS#8 ENCRYPTED PRIVATE KEY (PBES2, AES-256-CBC)
  seal.crt.pem    the seal certificate, then its chain (intermediates)
  seal.secret     the random passphrase of seal.key.pem, unless [proxy] seal_secret_file
                  names one kept elsewhere
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import datetime as dt
import hashlib
import hmac
import logging
import os
import quopri
import re
import secrets
import smtplib
import sqlite3
import ssl
import struct
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from email.parser import BytesParser
from email.utils import format_datetime, getaddresses, make_msgid
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey

from edged.config import ConfigError
from edged.services import cms, smime
from edged.state.keystore import Keystore, _atomic_write

if TYPE_CHECKING:
    from edged.services.context import ServiceContext

__all__ = [
    "CODE_PATTERN",
    "ProxyConfigError",
    "ProxyServer",
    "ProxySettings",
    "SealError",
    "UserStore",
    "extract_code",
    "hotp",
    "import_seal",
    "load_seal",
    "proxy_extension",
    "totp",
]

log = logging.getLogger(__name__)

STEP = 30  # RFC 6238 X, seconds
DIGITS = 6
WINDOW = 1  # steps accepted either side of now (clock drift of the phone)
# Where the code travels: a `[code:123456]` tag in the Subject, the one thing every mail client
# lets a user type (best at the start; anywhere is accepted, e.g. after a "Re: ").
CODE_PATTERN = re.compile(r"\[\s*code\s*[:=]?\s*(\d{6})\s*\]", re.IGNORECASE)
_ANY_CODE = re.compile(r"\[\s*code\b[^\]]*\]", re.IGNORECASE)
REFUSED_CLEAR = "550 5.7.0 emission code missing or invalid: mail is never relayed in clear"


class ProxyConfigError(ConfigError):
    """A bad [proxy] setting; the message names it (edged exits with a configuration error)."""


class SealError(ConfigError):
    """The seal key or certificate is missing, does not match, or cannot be decrypted."""


# -- RFC 4226 / RFC 6238 ------------------------------------------------------------------
def hotp(secret: bytes, counter: int, digits: int = DIGITS, digest: str = "sha1") -> str:
    """RFC 4226 HOTP: dynamic truncation of HMAC(secret, counter as 8 bytes big-endian)."""
    mac = hmac.new(secret, struct.pack(">Q", counter), digest).digest()
    offset = mac[-1] & 0x0F
    value = struct.unpack(">I", mac[offset:offset + 4])[0] & 0x7FFFFFFF
    return str(value % 10**digits).zfill(digits)


def totp(secret: bytes, at: float, *, digits: int = DIGITS, step: int = STEP,
         digest: str = "sha1") -> str:
    """RFC 6238 TOTP at Unix time `at` (T0 = 0)."""
    return hotp(secret, int(at) // step, digits, digest)


def otpauth_uri(secret: bytes, name: str, issuer: str) -> str:
    """The Key URI format authenticator apps read (QR code or pasted)."""
    label = urllib.parse.quote(f"{issuer}:{name}")
    query = urllib.parse.urlencode({"secret": base64.b32encode(secret).decode().rstrip("="),
                                    "issuer": issuer, "algorithm": "SHA1",
                                    "digits": DIGITS, "period": STEP})
    return f"otpauth://totp/{label}?{query}"


def extract_code(subject: str) -> tuple[str | None, str]:
    """(the first code, the subject without any `[code...]` tag): no tag is ever relayed."""
    match = CODE_PATTERN.search(subject)
    if not _ANY_CODE.search(subject):
        return None, subject
    clean = " ".join(_ANY_CODE.sub(" ", subject).split())
    return (match.group(1) if match else None), clean


# -- settings -----------------------------------------------------------------------------
@dataclass(frozen=True)
class ProxySettings:
    """The [proxy] table, checked."""

    domain: str
    smtp_host: str
    smtp_port: int
    ca_file: Path  # trusted for the operator's TLS, the directory's TLS and the recipients
    directory_url: str
    account_password_file: Path
    account: str = ""  # default structure@<domain>
    smtp_server_name: str = ""  # TLS name of the operator; default smtp.<domain>
    host: str = "0.0.0.0"  # noqa: S104 - the structure's LAN
    port: int = 1587
    seal_secret_file: Path | None = None
    trust_intermediates: tuple[Path, ...] = ()
    max_failures: int = 5
    lockout_seconds: float = 900.0
    max_message_bytes: int = 25 * 1024 * 1024
    mode: str = "gcm"

    _REQUIRED = ("domain", "smtp_host", "smtp_port", "ca_file", "directory_url",
                 "account_password_file")

    @classmethod
    def from_table(cls, table: dict[str, Any]) -> ProxySettings:
        """Validate the raw TOML table; ProxyConfigError names the bad key."""
        known = {f for f in cls.__dataclass_fields__ if not f.startswith("_")} | {"enabled"}
        for key in table:
            if key not in known:
                raise ProxyConfigError(f"unknown setting proxy.{key}")
        for key in cls._REQUIRED:
            if key not in table:
                raise ProxyConfigError(f"proxy.{key} is required")
        values: dict[str, Any] = {}
        for key, value in table.items():
            if key == "enabled":
                if not isinstance(value, bool):
                    raise ProxyConfigError("proxy.enabled must be true or false")
                continue
            if key in ("ca_file", "account_password_file", "seal_secret_file"):
                if not isinstance(value, str) or not value:
                    raise ProxyConfigError(f"proxy.{key} must be a path")
                values[key] = Path(value)
            elif key == "trust_intermediates":
                if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                    raise ProxyConfigError("proxy.trust_intermediates must be a list of paths")
                values[key] = tuple(Path(v) for v in value)
            elif key in ("smtp_port", "port", "max_failures", "max_message_bytes"):
                if not isinstance(value, int) or isinstance(value, bool):
                    raise ProxyConfigError(f"proxy.{key} must be an integer")
                values[key] = value
            elif key == "lockout_seconds":
                if not isinstance(value, int | float) or isinstance(value, bool):
                    raise ProxyConfigError("proxy.lockout_seconds must be a number")
                values[key] = float(value)
            else:
                if not isinstance(value, str):
                    raise ProxyConfigError(f"proxy.{key} must be a string")
                values[key] = value
        settings = cls(**values)
        if not re.fullmatch(r"[a-z0-9.-]+\.[a-z0-9-]+", settings.domain):
            raise ProxyConfigError(f"proxy.domain is not a mail domain: {settings.domain!r}")
        for key in ("smtp_port", "port"):
            if not 0 <= getattr(settings, key) <= 65535:
                raise ProxyConfigError(f"proxy.{key} must be 0..65535")
        if not settings.directory_url.startswith("https://"):
            raise ProxyConfigError("proxy.directory_url must be an https:// URL")
        if settings.mode not in ("gcm", "cbc"):
            raise ProxyConfigError("proxy.mode must be gcm or cbc")
        if settings.max_failures < 1:
            raise ProxyConfigError("proxy.max_failures must be at least 1")
        if settings.lockout_seconds <= 0:
            raise ProxyConfigError("proxy.lockout_seconds must be positive")
        if settings.max_message_bytes < 4096:
            raise ProxyConfigError("proxy.max_message_bytes must be at least 4096")
        return settings

    @property
    def relay_account(self) -> str:
        return self.account or f"structure@{self.domain}"

    @property
    def server_name(self) -> str:
        return self.smtp_server_name or f"smtp.{self.domain}"


def proxy_dir(state_dir: Path) -> Path:
    """`<state_dir>/proxy`, created 0700."""
    folder = Path(state_dir) / "proxy"
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(folder, 0o700)
    return folder


# -- the seal key, encrypted at rest ------------------------------------------------------
def _read_secret(path: Path) -> bytes:
    try:
        secret = path.read_bytes().strip()
    except OSError as exc:
        raise SealError(f"cannot read the seal secret {path}: {exc.strerror}") from None
    if len(secret) < 16:
        raise SealError(f"the seal secret {path} is shorter than 16 bytes")
    return secret


def import_seal(state_dir: Path, certificate: Path, key: Path, chain: Sequence[Path] = (),
                *, secret_file: Path | None = None, key_password: bytes | None = None) -> Path:
    """Store the structure's seal certificate and its key, the key encrypted; returns the key path.

    Without `secret_file` a random 256-bit passphrase is written to `proxy/seal.secret` (0600).
    """
    folder = proxy_dir(state_dir)
    cert = x509.load_pem_x509_certificate(certificate.read_bytes())
    private = serialization.load_pem_private_key(key.read_bytes(), password=key_password)
    if not isinstance(private, RSAPrivateKey):
        raise SealError("the seal key must be an RSA key (FACTS §5: RSA PKCS#1 v1.5 signatures)")
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    der = serialization.Encoding.DER
    if private.public_key().public_bytes(der, spki) != cert.public_key().public_bytes(der, spki):
        raise SealError(f"{key} does not match the certificate {certificate}")
    if secret_file is None:
        secret_file = folder / "seal.secret"
        if not secret_file.exists():
            _atomic_write(secret_file, base64.b64encode(secrets.token_bytes(32)) + b"\n")
    secret = _read_secret(secret_file)
    encrypted = private.private_bytes(serialization.Encoding.PEM,
                                      serialization.PrivateFormat.PKCS8,
                                      serialization.BestAvailableEncryption(secret))
    pems = [cert.public_bytes(serialization.Encoding.PEM)]
    pems += [x509.load_pem_x509_certificate(p.read_bytes()).public_bytes(
        serialization.Encoding.PEM) for p in chain]
    _atomic_write(folder / "seal.key.pem", encrypted)
    _atomic_write(folder / "seal.crt.pem", b"".join(pems))
    return folder / "seal.key.pem"


def load_seal(state_dir: Path, secret_file: Path | None = None) -> cms.SoftwareSigner:
    """The seal key decrypted in memory, as a signer (its certificate also encrypts to itself)."""
    folder = Path(state_dir) / "proxy"
    key_path, cert_path = folder / "seal.key.pem", folder / "seal.crt.pem"
    if not key_path.exists() or not cert_path.exists():
        raise SealError(f"no seal key in {folder}: run `bifente proxy seal import`")
    secret = _read_secret(secret_file or folder / "seal.secret")
    try:
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=secret)
    except (ValueError, TypeError):
        raise SealError(f"{key_path} cannot be decrypted with the seal secret") from None
    certs = x509.load_pem_x509_certificates(cert_path.read_bytes())
    assert isinstance(key, RSAPrivateKey)
    return cms.SoftwareSigner(key, certs[0], certs[1:], encryption_certificate=certs[0])


# -- local users --------------------------------------------------------------------------
@dataclass
class CodeCheck:
    """The outcome of an emission code check."""

    ok: bool
    reason: str = ""  # missing, invalid, replayed, locked
    step: int = 0


class UserStore:
    """Users, their password hash and TOTP secret, used steps and lockouts (SQLite, 0600)."""

    def __init__(self, state_dir: Path, *, max_failures: int = 5, lockout_seconds: float = 900.0,
                 clock: Callable[[], float] = time.time) -> None:
        self.path = proxy_dir(state_dir) / "users.db"
        fresh = not self.path.exists()
        if fresh:
            os.close(os.open(self.path, os.O_CREAT | os.O_WRONLY, 0o600))
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS users (name TEXT PRIMARY KEY, email TEXT UNIQUE NOT NULL,"
            " password_hash BLOB NOT NULL, salt BLOB NOT NULL, totp_secret BLOB NOT NULL,"
            " last_step INTEGER NOT NULL DEFAULT 0, failures INTEGER NOT NULL DEFAULT 0,"
            " locked_until REAL NOT NULL DEFAULT 0, created REAL NOT NULL)")
        self.max_failures = max_failures
        self.lockout_seconds = lockout_seconds
        self._clock = clock

    def close(self) -> None:
        """Close the database."""
        self._db.close()

    @staticmethod
    def _hash(password: str, salt: bytes) -> bytes:
        # Passwords are generated (120 random bits), never chosen by a person: a salted
        # SHA-256 cannot be brute-forced, and a slow KDF would stall the daemon's event loop
        # (aiosmtpd calls the authenticator synchronously).
        return hashlib.sha256(salt + password.encode("utf-8")).digest()

    def add(self, name: str, email: str) -> tuple[str, bytes]:
        """A new user: returns (SMTP password, TOTP secret), shown once and never again."""
        if not re.fullmatch(r"[A-Za-z0-9._-]{1,64}", name):
            raise ValueError("a user name is 1-64 letters, digits, '.', '_' or '-'")
        if not re.fullmatch(r"[^@\s<>]+@[a-z0-9.-]+\.[a-z0-9-]+", email.lower()):
            raise ValueError(f"not an e-mail address: {email!r}")
        password = secrets.token_urlsafe(15)
        secret = secrets.token_bytes(20)  # 160 bits, RFC 4226 §4 recommends it
        salt = secrets.token_bytes(16)
        try:
            self._db.execute(
                "INSERT INTO users (name, email, password_hash, salt, totp_secret, created)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (name, email.lower(), self._hash(password, salt), salt, secret, self._clock()))
        except sqlite3.IntegrityError:
            raise ValueError(f"a user {name!r} or the address {email} exists already") from None
        return password, secret

    def remove(self, name: str) -> bool:
        """Delete a user; False when unknown."""
        return self._db.execute("DELETE FROM users WHERE name = ?", (name,)).rowcount > 0

    def unlock(self, name: str) -> bool:
        """Clear a lockout; False when unknown."""
        return self._db.execute("UPDATE users SET failures = 0, locked_until = 0 WHERE name = ?",
                                (name,)).rowcount > 0

    def list(self) -> list[tuple[str, str, bool]]:
        """(name, email, locked) for every user."""
        now = self._clock()
        return [(n, e, lu > now) for n, e, lu in
                self._db.execute("SELECT name, email, locked_until FROM users ORDER BY name")]

    def email_of(self, name: str) -> str | None:
        row = self._db.execute("SELECT email FROM users WHERE name = ?", (name,)).fetchone()
        return row[0] if row else None

    def authenticate(self, login: str, password: str) -> tuple[str | None, str]:
        """(the user's name, "") when the login (name or e-mail) and password match, else
        (None, "auth-failed" or "locked"); a wrong password counts toward the lockout."""
        row = self._db.execute(
            "SELECT name, password_hash, salt, locked_until FROM users"
            " WHERE name = ? OR email = ?", (login, login.lower())).fetchone()
        if row is None:
            self._hash(password, b"\0" * 16)  # same cost for an unknown login
            return None, "auth-failed"
        name, stored, salt, locked_until = row
        if not hmac.compare_digest(self._hash(password, salt), stored):
            self._fail(name)
            return None, "auth-failed"
        if locked_until > self._clock():
            return None, "locked"
        return str(name), ""

    def is_locked(self, name: str) -> bool:
        row = self._db.execute("SELECT locked_until FROM users WHERE name = ?",
                               (name,)).fetchone()
        return row is None or row[0] > self._clock()

    def _fail(self, name: str) -> None:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            self._db.execute("UPDATE users SET failures = failures + 1 WHERE name = ?", (name,))
            self._db.execute("UPDATE users SET locked_until = ?, failures = 0 WHERE name = ? AND"
                             " failures >= ?",
                             (self._clock() + self.lockout_seconds, name, self.max_failures))
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise

    def check_code(self, name: str, code: str | None) -> CodeCheck:
        """Check (without using it) an emission code; failures count toward the lockout."""
        if self.is_locked(name):
            return CodeCheck(False, "locked")
        if code is None:
            return CodeCheck(False, "missing")
        row = self._db.execute("SELECT totp_secret, last_step FROM users WHERE name = ?",
                               (name,)).fetchone()
        secret, last_step = row
        now = int(self._clock()) // STEP
        matched = [s for s in range(now - WINDOW, now + WINDOW + 1)
                   if hmac.compare_digest(hotp(secret, s), code)]
        if not matched:
            self._fail(name)
            return CodeCheck(False, "invalid")
        fresh = [s for s in matched if s > last_step]
        if not fresh:
            self._fail(name)
            return CodeCheck(False, "replayed")
        return CodeCheck(True, step=fresh[0])

    def use_code(self, name: str, step: int) -> bool:
        """Spend a code atomically: this step and every earlier one become unusable."""
        changed = self._db.execute(
            "UPDATE users SET last_step = ?, failures = 0 WHERE name = ? AND last_step < ?",
            (step, name, step)).rowcount
        return changed == 1


# -- the operator side --------------------------------------------------------------------
class UnknownRecipient(LookupError):
    """The directory has no encryption certificate for this address."""


def directory_certificate(url: str, context: ssl.SSLContext, address: str) -> x509.Certificate:
    """Ask the operator's directory (GET /certificate?address=) for a recipient's certificate."""
    query = urllib.parse.urlencode({"address": address})
    try:
        with urllib.request.urlopen(f"{url}/certificate?{query}",  # noqa: S310 - https only
                                    context=context, timeout=15) as response:
            return x509.load_pem_x509_certificate(response.read(1 << 20))
    except urllib.error.HTTPError as exc:
        if exc.code in (400, 404):
            raise UnknownRecipient(address) from None
        raise OSError(f"directory answered {exc.code}") from None


class _RelayFailed(Exception):
    def __init__(self, reply: str) -> None:
        super().__init__(reply)
        self.reply = reply


# -- the SMTP listener --------------------------------------------------------------------
class _ProxySMTP(SMTP):
    """aiosmtpd's protocol; nothing changed but a clearer name in tracebacks."""


class ProxyServer:
    """The submission listener; `await start()` / `await stop()` (a daemon extension)."""

    def __init__(self, settings: ProxySettings, state_dir: Path, tls: ssl.SSLContext, *,
                 audit: Callable[..., Any] | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.settings = settings
        self.state_dir = Path(state_dir)
        self.tls = tls
        self._audit = audit
        self.users = UserStore(self.state_dir, max_failures=settings.max_failures,
                               lockout_seconds=settings.lockout_seconds, clock=clock)
        # Loaded now, so that a missing or undecryptable seal stops edged before it listens.
        self.signer: cms.SoftwareSigner | None = load_seal(self.state_dir,
                                                           settings.seal_secret_file)
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
                self._audit(event, actor=actor or "unauthenticated", **fields)
            except ValueError:
                hashed = {k: hashlib.sha256(v.encode()).hexdigest()[:16] if isinstance(v, str)
                          else v for k, v in fields.items()}
                self._audit(event, actor=actor or "unauthenticated", **hashed)
        log.info("%s by %s: %s", event, actor, fields.get("reason", "ok"))

    async def start(self) -> None:
        """Load the seal key (decrypted in memory only) and listen."""
        if self.signer is None:
            self.signer = load_seal(self.state_dir, self.settings.seal_secret_file)
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
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 5)
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
            self.audit("proxy.refused", "unauthenticated", reason=reason)
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
        check = self.users.check_code(name, code)
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
        if not self.users.use_code(name, check.step):  # a concurrent message spent it
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
        mode = "cbc" if self.settings.mode == "cbc" else "gcm"
        return smime.protect_bytes(msg, self.signer, certificates, mode)

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
                client._host = s.server_name  # the TLS name checked by STARTTLS
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


def seven_bit(msg: Any) -> None:
    """Re-encode 8bit/binary parts (clients send them when 8BITMIME is offered) for signing.

    RFC 8551 §3.1.2: signed content must be 7-bit; text becomes quoted-printable, the rest
    base64. The decoded content is unchanged, byte for byte.
    """
    for part in msg.walk():
        if part.is_multipart():
            continue
        cte = str(part.get("Content-Transfer-Encoding", "7bit")).strip().lower()
        payload = part.get_payload()
        if cte not in ("8bit", "binary") and (not isinstance(payload, str) or payload.isascii()):
            continue
        data = part.get_payload(decode=True) or b""
        del part["Content-Transfer-Encoding"]
        if part.get_content_maintype() == "text":
            encoded = quopri.encodestring(data.replace(b"\r\n", b"\n")).decode("ascii")
            part["Content-Transfer-Encoding"] = "quoted-printable"
        else:
            encoded = binascii.b2a_base64(data).decode("ascii")
            encoded = "\n".join(encoded[i:i + 76] for i in range(0, len(encoded), 76))
            part["Content-Transfer-Encoding"] = "base64"
        part.set_payload(encoded)


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


def proxy_extension(ctx: ServiceContext) -> ProxyServer | None:
    """The service: None unless [proxy] is set (and not `enabled = false`)."""
    table = dict(ctx.config.proxy)
    if not table or table.get("enabled", True) is False:
        return None
    settings = ProxySettings.from_table(table)
    ctx.keystore.server_certificate  # noqa: B018 - issues server.pem/server.key if needed
    return ProxyServer(settings, ctx.config.state_dir,
                       server_tls_context(ctx.keystore),
                       audit=ctx.audit.append)
