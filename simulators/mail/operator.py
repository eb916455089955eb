"""The reference operator trust space: SMTP, POP3 and a certificate directory per MSSanté-like
domain, on real sockets with real TLS from the test IGC-Santé PKI (docs/messaging.md; M5, M6).

Every account password is the test value TEST_PASSWORD: this is test data, never a real secret.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import ipaddress
import logging
import smtplib
import ssl
import threading
import weakref
from collections.abc import Awaitable, Callable, Iterable, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

from bifente.apdu.identity import parse_nir
from bifente.simulators.mail import replies
from bifente.simulators.mail.addresses import (
    PATIENT_PREFIX,
    Address,
    TrustSpace,
    mask_text,
    parse_address,
)
from bifente.simulators.mail.directory import DirectoryServer, UnknownRecipient
from bifente.simulators.mail.info import PORTS_FILE, DomainPorts, OperatorInfo
from bifente.simulators.mail.pki import mailbox_certificate, root_ca_pem, server_certificate
from bifente.simulators.mail.pop3 import Pop3Server
from bifente.simulators.mail.smtp import RelayHandler, SmtpServer, SubmissionHandler, server_context
from bifente.simulators.mail.store import Account, AccountKind, MailStore
from bifente.simulators.pki import DATA as PKI_DATA
from bifente.simulators.profiles import available, load_cps

__all__ = [
    "DEFAULT_DOMAINS",
    "DEFAULT_MAX_MESSAGE_BYTES",
    "STRUCTURE_LOCAL",
    "TEST_PASSWORD",
    "MailOperator",
    "describe",
]

log = logging.getLogger(__name__)

TEST_PASSWORD = "test-password"  # noqa: S105 TEST DATA: the password of every simulated mailbox
DEFAULT_DOMAINS = ("cabinet.test", "chu.test", "labo.test")  # a practice, a hospital, a lab
DEFAULT_MAX_MESSAGE_BYTES = 25 * 1024 * 1024
STRUCTURE_LOCAL = "structure"  # structure@<domain>: the structure's account (proxy, M8)
RELAY_TIMEOUT = 30.0
_CALL_LIMITS = {"AUTH": 5, "*": 10_000}  # per connection: 5 AUTH commands, then 421


class _MaskNirs(logging.Filter):
    """Masks NIR-shaped tokens in records of loggers we do not write (aiosmtpd's mail.log)."""

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        if text.startswith("Session.login_data is deprecated"):
            return False  # aiosmtpd 1.4 warns about its own use of login_data at every AUTH
        masked = mask_text(text)
        if masked != text:
            record.msg, record.args = masked, ()
        return True


def _install_log_mask() -> None:
    logger = logging.getLogger("mail.log")  # aiosmtpd logs envelope addresses and DATA lines
    if not any(isinstance(f, _MaskNirs) for f in logger.filters):
        logger.addFilter(_MaskNirs())


def _dns_names(peercert: dict[str, Any] | None) -> set[str]:
    san = (peercert or {}).get("subjectAltName", ())
    return {str(v).lower() for k, v in san if k == "DNS"}


class _PeerIdentityError(Exception):
    """The relay peer's certificate does not name the operator we meant to reach."""


class MailOperator:
    """Operators for several trust-space domains, each with submission, relay, POP3; a directory.

    `async start()/stop()` inside a running loop, or `with MailOperator(...) as op:` to run it
    in a background thread with its own loop.
    """

    def __init__(self, data_dir: str | Path, domains: Iterable[str] = DEFAULT_DOMAINS,
                 trusted: Iterable[str] | None = None, host: str = "127.0.0.1", *,
                 max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES, require_smime: bool = True,
                 password: str = TEST_PASSWORD, profiles: Iterable[str] | None = None,
                 routes: Mapping[str, tuple[str, int]] | None = None,
                 base_port: int | None = None) -> None:
        self.data_dir = Path(data_dir)
        self.domains = tuple(dict.fromkeys(d.lower().strip(".") for d in domains))
        if not self.domains:
            raise ValueError("an operator serves at least one domain")
        self.space = TrustSpace.of(self.domains if trusted is None else trusted)
        if outside := [d for d in self.domains if d not in self.space.domains]:
            raise ValueError(f"served domains must be trusted: {', '.join(outside)}")
        self.host = host
        self.max_message_bytes = max_message_bytes
        self.require_smime = require_smime  # read at every DATA: tests may switch it
        self.routes = {d.lower(): r for d, r in (routes or {}).items()}  # other operators' relay
        self.base_port = base_port
        self.store = MailStore(self.data_dir)
        self._password = password
        self._lock = threading.Lock()
        self._accounts: dict[Address, Account] = {}
        self._load_accounts(available("cps") if profiles is None else profiles)
        self._listeners: list[asyncio.Server] = []
        self._smtp_live: weakref.WeakSet[SmtpServer] = weakref.WeakSet()
        self._pop3: list[Pop3Server] = []
        self._directory: DirectoryServer | None = None
        self._info: OperatorInfo | None = None
        self._client_contexts: dict[str, ssl.SSLContext] = {}
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    # -- accounts ------------------------------------------------------------------------

    def _keys_dir(self, address: Address) -> Path:
        return self.data_dir / "keys" / address.domain

    def _load_accounts(self, profiles: Iterable[str]) -> None:
        for name in profiles:
            profile = load_cps(name)
            if not profile.email:
                continue
            address = parse_address(profile.email)
            if address.domain in self.domains:
                self._accounts[address] = Account(address, AccountKind.PROFESSIONAL,
                                                  self._password, profile.name)
        for domain in self.domains:
            structure = Address(STRUCTURE_LOCAL, domain)
            self._accounts[structure] = Account(structure, AccountKind.STRUCTURE, self._password)
            folder = self.data_dir / "keys" / f"{PATIENT_PREFIX}{domain}"
            for cert in sorted(folder.glob("*.crt.pem")) if folder.is_dir() else ():
                patient = Address(cert.name.removesuffix(".crt.pem"), folder.name)
                self._accounts[patient] = Account(patient, AccountKind.PATIENT, self._password)

    def account(self, address: Address | str) -> Account | None:
        """The account of an address served here, or None."""
        if isinstance(address, str):
            try:
                address = parse_address(address)
            except ValueError:
                return None
        return self._accounts.get(address)

    def addresses(self, domain: str | None = None) -> list[str]:
        """Every mailbox address (of one operator domain, patients included), sorted."""
        return sorted(str(a) for a in list(self._accounts)
                      if domain is None or self.space.operator_of(a.domain) == domain)

    def authenticate(self, domain: str, login: str, password: str) -> Account | None:
        """The account when `login` is a mailbox of `domain` and the password matches."""
        try:
            account = self.account(parse_address(login))
        except ValueError:
            account = None
        if account is None or self.space.operator_of(account.address.domain) != domain:
            Account(Address("x", "x.x"), AccountKind.PATIENT, "\0" * 16).check_password(password)
            return None  # the same comparison work as a real account (no timing oracle)
        return account if account.check_password(password) else None

    def patient_mailbox(self, ins: str, domain: str) -> str:
        """Create (once) the mailbox <INS>@patient.<domain> with its encryption certificate."""
        nir = parse_nir(ins)  # ValueError never echoes the number
        owner = self.space.operator_of(domain)
        if owner is None or owner not in self.domains:
            raise ValueError(f"{domain} is not an operator domain of this simulator")
        address = Address(nir.value.lower(), PATIENT_PREFIX + owner)
        with self._lock:
            if address not in self._accounts:
                folder = self._keys_dir(address)
                mailbox_certificate(folder / f"{address.local}.crt.pem",
                                    folder / f"{address.local}.key.pem", str(address),
                                    f"PATIENT {owner}")
                self.store.create(address)
                self._accounts[address] = Account(address, AccountKind.PATIENT, self._password)
                log.info("patient mailbox %s created", address.masked)
        return str(address)

    def patient_key(self, address: str) -> Path:
        """The PEM key of a patient mailbox (kept for the future patient web space)."""
        a = parse_address(address)
        if self.account(a) is None or not a.is_patient:
            raise UnknownRecipient(address)
        return self._keys_dir(a) / f"{a.local}.key.pem"

    def structure_certificate(self, domain: str) -> tuple[Path, Path]:
        """(certificate, key) of structure@<domain>: a seal + client-auth certificate (M8)."""
        if domain not in self.domains:
            raise ValueError(f"{domain} is not an operator domain of this simulator")
        address = Address(STRUCTURE_LOCAL, domain)
        folder = self._keys_dir(address)
        cert, key = folder / f"{STRUCTURE_LOCAL}.crt.pem", folder / f"{STRUCTURE_LOCAL}.key.pem"
        with self._lock:
            mailbox_certificate(cert, key, str(address), f"STRUCTURE {domain}", seal=True)
        return cert, key

    def encryption_certificate(self, address: Address) -> bytes:
        """The directory's answer: PEM of the address's encryption certificate."""
        account = self._accounts.get(address)
        if account is None:
            raise UnknownRecipient(str(address))
        if account.kind is AccountKind.PROFESSIONAL:
            path = PKI_DATA / "cps" / str(account.profile) / "aut.crt.pem"  # CPS_PRIV_AUT
        elif account.kind is AccountKind.STRUCTURE:
            path = self.structure_certificate(address.domain)[0]
        else:
            path = self._keys_dir(address) / f"{address.local}.crt.pem"
        if not path.is_file():
            raise UnknownRecipient(str(address), f"no certificate on file for {address.masked}")
        return path.read_bytes()

    def maildir(self, address: str) -> Path:
        """The Maildir folder of a mailbox."""
        return self.store.path(parse_address(address))

    # -- delivery and relay --------------------------------------------------------------

    def routable(self, owner: str) -> bool:
        """True when mail for operator domain `owner` can be relayed from here."""
        return owner in self.domains or owner in self.routes

    async def deliver(self, rcpts: list[Address], content: bytes) -> None:
        """Store a message in local mailboxes (atomic Maildir delivery, off the loop)."""
        await asyncio.to_thread(self.store.deliver, rcpts, content)
        log.info("delivered %d bytes to %s", len(content), ", ".join(r.masked for r in rcpts))

    def _client_context(self, domain: str) -> ssl.SSLContext:
        if domain not in self._client_contexts:
            chain, key = self._server_files(domain)
            context = ssl.create_default_context(cafile=str(self.ca_file))
            context.minimum_version = ssl.TLSVersion.TLSv1_2
            context.load_cert_chain(chain, key)  # our operator identity for the peer (M6)
            self._client_contexts[domain] = context
        return self._client_contexts[domain]

    def _relay_blocking(self, origin: str, owner: str, mail_from: str, rcpts: list[Address],
                        content: bytes) -> dict[str, tuple[int, bytes]]:
        host, port = ((self.host, self.info.domains[owner].relay) if owner in self.domains
                      else self.routes[owner])
        with smtplib.SMTP(host, port, local_hostname=f"smtp.{origin}",
                          timeout=RELAY_TIMEOUT) as client:
            client.starttls(context=self._client_context(origin))
            assert isinstance(client.sock, ssl.SSLSocket)
            if f"smtp.{owner}" not in _dns_names(client.sock.getpeercert()):
                raise _PeerIdentityError(f"the peer certificate does not name smtp.{owner}")
            return client.sendmail(mail_from, [str(r) for r in rcpts], content)

    async def relay(self, origin: str, owner: str, mail_from: str, rcpts: list[Address],
                    content: bytes) -> str | None:
        """Relay over SMTP + STARTTLS (client certificate) to `owner`; an SMTP reply if it fails."""
        try:
            refused = await asyncio.to_thread(self._relay_blocking, origin, owner, mail_from,
                                              rcpts, content)
        except smtplib.SMTPRecipientsRefused as exc:
            code, text = next(iter(exc.recipients.values()))
            return self._relay_reply(owner, code, text)
        except smtplib.SMTPResponseException as exc:
            return self._relay_reply(owner, exc.smtp_code, exc.smtp_error)
        except (_PeerIdentityError, smtplib.SMTPException, OSError) as exc:
            log.warning("relay %s -> %s failed: %s", origin, owner, mask_text(str(exc)))
            return replies.RELAY_FAILED.format(domain=owner,
                                               reason=mask_text(str(exc)) or type(exc).__name__)
        if refused:  # partly refused by a foreign operator: no bounce messages in this simulator
            log.warning("relay %s -> %s: %d recipient(s) refused", origin, owner, len(refused))
        log.info("relayed from %s to %s over SMTP+STARTTLS (%d recipient(s))", origin, owner,
                 len(rcpts))
        return None

    @staticmethod
    def _relay_reply(owner: str, code: int, text: bytes | str) -> str:
        line = (text.decode("utf-8", "replace") if isinstance(text, bytes) else text)
        line = mask_text(" ".join(line.split()))
        if 500 <= code < 600:
            return f"{code} {line}"  # a permanent refusal by the peer, passed on as it is
        return replies.RELAY_FAILED.format(domain=owner, reason=f"{code} {line}")

    # -- lifecycle -----------------------------------------------------------------------

    @property
    def ca_file(self) -> Path:
        """The CA file clients load: the test root (server chains carry the intermediate)."""
        return self.data_dir / "tls" / "ca.pem"

    @property
    def info(self) -> OperatorInfo:
        """Where everything listens (also in data_dir/operator.json); only while running."""
        if self._info is None:
            raise RuntimeError("the mail operator is not running")
        return self._info

    def _server_files(self, name: str) -> tuple[Path, Path]:
        """(chain, key) for smtp.<name> (the directory uses name 'directory')."""
        dns = ([f"smtp.{name}", f"pop.{name}"] if name in self.domains
               else [f"{name}.{self.domains[0]}"]) + ["localhost"]
        ips = ["127.0.0.1"]
        with contextlib.suppress(ValueError):
            if not ipaddress.ip_address(self.host).is_unspecified and self.host not in ips:
                ips.append(self.host)
        return server_certificate(self.data_dir / "tls", name, dns, ips)

    def _wanted_ports(self) -> dict[str, int]:
        """Ports to bind: from base_port, else those of the last run (operator.json), else 0."""
        names = ["directory"] + [f"{d}/{kind}" for d in self.domains
                                 for kind in ("submission", "relay", "pop3s")]
        if self.base_port:
            return {name: self.base_port + i for i, name in enumerate(names)}
        with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
            last = OperatorInfo.load(self.data_dir)
            if last.host == self.host:
                ports = {"directory": int(last.directory_url.rsplit(":", 1)[1])}
                for d, p in last.domains.items():
                    ports |= {f"{d}/submission": p.submission, f"{d}/relay": p.relay,
                              f"{d}/pop3s": p.pop3s}
                return ports
        return {}

    async def _bind(self, listen: Callable[[int], Awaitable[int]], port: int) -> int:
        """Listen on `port`; a remembered port that is taken falls back to a free one."""
        try:
            return await listen(port)
        except OSError as exc:
            if port == 0 or self.base_port:
                raise
            log.warning("port %d is taken (%s); using a free one", port, exc.strerror)
            return await listen(0)

    async def start(self) -> None:
        """Make certificates and mailboxes, listen on every port, write operator.json."""
        if self._info is not None:
            raise RuntimeError("the mail operator is already running")
        _install_log_mask()
        self.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        (self.data_dir / "tls").mkdir(exist_ok=True, mode=0o700)
        self.ca_file.write_bytes(root_ca_pem())
        files = {name: await asyncio.to_thread(self._server_files, name)
                 for name in (*self.domains, "directory")}
        for account in list(self._accounts.values()):
            self.store.create(account.address)
        wanted = self._wanted_ports()
        loop = asyncio.get_running_loop()
        ports: dict[str, DomainPorts] = {}
        try:
            for domain in self.domains:
                chain, key = map(str, files[domain])
                bound = []
                for kind in ("submission", "relay"):
                    handler: SubmissionHandler | RelayHandler = (
                        SubmissionHandler(self, domain) if kind == "submission"
                        else RelayHandler(self, domain))
                    context = server_context(chain, key, client_ca=(
                        str(self.ca_file) if kind == "relay" else None))
                    factory = functools.partial(self._smtp_protocol, loop, domain, handler,
                                                context)
                    bound.append(await self._bind(
                        functools.partial(self._listen_smtp, factory), wanted.get(
                            f"{domain}/{kind}", 0)))
                pop3 = Pop3Server(domain, self.store, functools.partial(self.authenticate, domain),
                                  server_context(chain, key))
                self._pop3.append(pop3)
                bound.append(await self._bind(functools.partial(pop3.start, self.host),
                                              wanted.get(f"{domain}/pop3s", 0)))
                ports[domain] = DomainPorts(bound[0], bound[1], bound[2], f"smtp.{domain}")
            self._directory = DirectoryServer(self.encryption_certificate,
                                              server_context(*map(str, files["directory"])))
            directory_port = await self._bind(functools.partial(self._directory.start, self.host),
                                              wanted.get("directory", 0))
        except BaseException:
            await self.stop()
            raise
        url_host = f"[{self.host}]" if ":" in self.host else self.host
        self._info = OperatorInfo(self.host, str(self.ca_file),
                                  f"https://{url_host}:{directory_port}", ports,
                                  tuple(sorted(self.space.domains)), self.max_message_bytes,
                                  self.require_smime)
        self._info.write(self.data_dir)
        log.info("mail operator up for %s (ports in %s)", ", ".join(self.domains),
                 self.data_dir / PORTS_FILE)

    def _smtp_protocol(self, loop: asyncio.AbstractEventLoop, domain: str,
                       handler: SubmissionHandler | RelayHandler,
                       context: ssl.SSLContext) -> SmtpServer:
        submission = isinstance(handler, SubmissionHandler)
        protocol = SmtpServer(
            handler, loop=loop, hostname=f"smtp.{domain}", ident="bifente test operator",
            tls_context=context, require_starttls=True, auth_require_tls=True,
            data_size_limit=self.max_message_bytes, auth_required=submission,
            authenticator=handler.authenticate if isinstance(handler, SubmissionHandler)
            else None, auth_exclude_mechanism=None if submission else ["PLAIN", "LOGIN"],
            command_call_limit=_CALL_LIMITS)
        self._smtp_live.add(protocol)
        return protocol

    async def _listen_smtp(self, factory: Callable[[], SmtpServer], port: int) -> int:
        server = await asyncio.get_running_loop().create_server(factory, self.host, port)
        self._listeners.append(server)
        return int(server.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        """Stop listening and close every connection; mailboxes stay on disk. Idempotent."""
        for server in self._listeners:
            server.close()
        for protocol in list(self._smtp_live):
            if protocol.transport is not None:
                protocol.transport.close()
        for pop3 in self._pop3:
            await pop3.stop()
        if self._directory is not None:
            await self._directory.stop()
        for server in self._listeners:
            await server.wait_closed()
        self._listeners, self._pop3, self._directory = [], [], None
        if self._info is not None:
            log.info("mail operator stopped")
        self._info = None

    # -- in a background thread ----------------------------------------------------------

    def serve_in_thread(self, timeout: float = 60.0) -> MailOperator:
        """Run start() on a loop of its own in a daemon thread; returns once listening."""
        if self._thread is not None:
            raise RuntimeError("the mail operator already runs in a thread")
        ready = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            asyncio.set_event_loop(loop)
            self._loop = loop
            try:
                loop.run_until_complete(self.start())
            except BaseException as exc:  # reported to the caller below
                failure.append(exc)
                ready.set()
                loop.close()
                return
            ready.set()
            try:
                loop.run_forever()
            finally:
                loop.run_until_complete(self.stop())
                pending = asyncio.all_tasks(loop)
                for task in pending:
                    task.cancel()
                loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
                loop.run_until_complete(loop.shutdown_asyncgens())
                loop.run_until_complete(loop.shutdown_default_executor())
                loop.close()

        self._thread = threading.Thread(target=run, name="mail-operator", daemon=True)
        self._thread.start()
        if not ready.wait(timeout):
            raise TimeoutError("the mail operator did not start in time")
        if failure:
            self._thread.join()
            self._thread = self._loop = None
            raise failure[0]
        return self

    def close(self, timeout: float = 30.0) -> None:
        """Stop the background thread started by serve_in_thread(). Idempotent."""
        thread, loop = self._thread, self._loop
        if thread is None or loop is None:
            return
        if loop.is_running():
            asyncio.run_coroutine_threadsafe(self.stop(), loop).result(timeout)
            loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout)
        self._thread = self._loop = None

    def __enter__(self) -> MailOperator:
        return self.serve_in_thread()

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "running" if self._info else "stopped"
        return f"MailOperator({str(self.data_dir)!r}, domains={list(self.domains)!r}, {state})"


def describe(info: OperatorInfo) -> str:
    """A few lines for people: where to connect (used by `bifente sim mail`)."""
    lines = []
    for domain, p in info.domains.items():
        lines.append(f"{domain}: submission smtp://{info.host}:{p.submission} (STARTTLS, AUTH), "
                     f"relay {info.host}:{p.relay}, pop3s://{info.host}:{p.pop3s}")
    lines.append(f"directory: {info.directory_url}/certificate?address=ADDRESS")
    lines.append(f"CA file (test root): {info.ca_file}")
    return "\n".join(lines)

