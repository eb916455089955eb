"""A small POP3 server over implicit TLS (RFC 1939, CAPA from RFC 2449, codes from RFC 3206).

Commands: CAPA, USER, PASS, STAT, LIST, UIDL, RETR, TOP, DELE, NOOP, RSET, QUIT. Messages stay in
the Maildir unless DELE'd and the session ends with QUIT (the UPDATE state).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum

from bifente.simulators.mail.addresses import Address, mask_address
from bifente.simulators.mail.store import Account, MailStore

__all__ = ["Pop3Server"]

log = logging.getLogger(__name__)

MAX_COMMAND = 255  # RFC 2449 §4: a command line is at most 255 octets
MAX_FAILURES = 3  # failed logins before the connection is closed
CAPABILITIES = ("USER", "UIDL", "TOP", "RESP-CODES", "AUTH-RESP-CODE", "EXPIRE NEVER",
                "IMPLEMENTATION bifente-test-operator")


class State(Enum):
    """RFC 1939 §3 session states (UPDATE happens inside QUIT)."""

    AUTHORIZATION = "authorization"
    TRANSACTION = "transaction"


@dataclass
class _Message:
    key: str
    size: int  # octets on the wire, CRLF line endings (RFC 1939 §5 LIST)
    uid: str
    deleted: bool = False


def _wire(data: bytes) -> bytes:
    """Stored LF text to the multi-line response body: CRLF, dot-stuffed, terminated."""
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    return b"".join((b"." + line if line.startswith(b".") else line) + b"\r\n"
                    for line in lines) + b".\r\n"


class _Session:
    def __init__(self, server: Pop3Server, reader: asyncio.StreamReader,
                 writer: asyncio.StreamWriter) -> None:
        self.server = server
        self.reader = reader
        self.writer = writer
        self.state = State.AUTHORIZATION
        self.user: str | None = None
        self.account: Account | None = None
        self.failures = 0
        self.messages: list[_Message] = []

    async def send(self, line: str) -> None:
        self.writer.write(line.encode("utf-8") + b"\r\n")
        await self.writer.drain()

    def message(self, arg: str) -> _Message | None:
        if not arg.isdigit() or not 1 <= int(arg) <= len(self.messages):
            return None
        msg = self.messages[int(arg) - 1]
        return None if msg.deleted else msg

    async def load(self, address: Address) -> None:
        store = self.server.store

        def scan() -> list[_Message]:
            out = []
            for key in store.keys(address):
                data = store.read(address, key)
                uid = hashlib.sha256(key.encode()).hexdigest()[:40]  # RFC 1939: 1-70 chars
                out.append(_Message(key, len(data) + data.count(b"\n"), uid))
            return out

        self.messages = await asyncio.to_thread(scan)

    async def run(self) -> bool:
        """Serve commands until QUIT or disconnection; True when QUIT ended the session."""
        await self.send(f"+OK bifente test operator POP3 (pop.{self.server.domain}) ready")
        while True:
            try:
                raw = await asyncio.wait_for(self.reader.readline(), self.server.idle_timeout)
            except TimeoutError:
                await self.send("-ERR autologout: idle for too long")
                return False
            except (ValueError, asyncio.LimitOverrunError):
                await self.send("-ERR line too long")
                return False
            if not raw:
                return False
            if len(raw) > MAX_COMMAND + 2:
                await self.send("-ERR command line too long")
                continue
            line = raw.decode("utf-8", "replace").rstrip("\r\n")
            command, _, arg = line.partition(" ")
            if await self.dispatch(command.upper(), arg):
                return True

    async def dispatch(self, command: str, arg: str) -> bool:
        """One command; True when the session is over."""
        if command == "QUIT":
            await self.quit()
            return True
        if command == "CAPA":
            await self.send("+OK capability list follows")
            for cap in CAPABILITIES:
                await self.send(cap)
            await self.send(".")
        elif command == "NOOP" and self.state is State.TRANSACTION:
            await self.send("+OK")
        elif self.state is State.AUTHORIZATION:
            await self.authorization(command, arg)
        else:
            await self.transaction(command, arg.strip())
        return False

    async def authorization(self, command: str, arg: str) -> None:
        if command == "USER" and arg.strip():
            self.user = arg.strip()
            await self.send("+OK send PASS")
        elif command == "PASS" and self.user is not None:
            await self.login(self.user, arg)  # the password is the rest of the line (§7)
        elif command == "PASS":
            await self.send("-ERR USER first")
        else:
            await self.send("-ERR not allowed before login (USER, PASS, CAPA, QUIT)")

    async def login(self, user: str, password: str) -> None:
        account = self.server.authenticate(user, password)
        self.user = None
        if account is None:
            self.failures += 1
            log.info("pop.%s: login refused for %s", self.server.domain, mask_address(user))
            await self.send("-ERR [AUTH] invalid user name or password")
            if self.failures >= MAX_FAILURES:
                self.writer.close()
            return
        if account.address in self.server.locked:  # RFC 1939 §4: exclusive maildrop lock
            await self.send("-ERR [IN-USE] the mailbox is already in use")
            return
        self.server.locked.add(account.address)
        self.account = account
        self.state = State.TRANSACTION
        await self.load(account.address)
        log.info("pop.%s: %s logged in", self.server.domain, account.address.masked)
        await self.send(f"+OK {len(self.messages)} message(s)")

    async def transaction(self, command: str, arg: str) -> None:
        live = [(i, m) for i, m in enumerate(self.messages, start=1) if not m.deleted]
        if command == "STAT":
            await self.send(f"+OK {len(live)} {sum(m.size for _, m in live)}")
        elif command in ("LIST", "UIDL"):
            field = "size" if command == "LIST" else "uid"
            if arg:
                msg = self.message(arg)
                await self.send(f"+OK {arg} {getattr(msg, field)}" if msg
                                else "-ERR no such message")
                return
            await self.send(f"+OK {len(live)} message(s)")
            for i, m in live:
                await self.send(f"{i} {getattr(m, field)}")
            await self.send(".")
        elif command == "RETR":
            msg = self.message(arg)
            if msg is None:
                await self.send("-ERR no such message")
                return
            assert self.account is not None
            data = await asyncio.to_thread(self.server.store.read, self.account.address, msg.key)
            await self.send(f"+OK {msg.size} octets")
            self.writer.write(_wire(data))
            await self.writer.drain()
        elif command == "TOP":  # RFC 1939 §7: the header, a blank line, n lines of the body
            number, _, count = arg.partition(" ")
            msg = self.message(number)
            if msg is None or not count.strip().isdigit():
                await self.send("-ERR no such message" if msg is None else "-ERR TOP msg n")
                return
            assert self.account is not None
            data = await asyncio.to_thread(self.server.store.read, self.account.address, msg.key)
            head, blank, body = data.partition(b"\n\n")
            lines = body.split(b"\n")[:int(count)] if blank else []
            await self.send("+OK top of message follows")
            self.writer.write(_wire(head + b"\n\n" + b"\n".join(lines)
                                    + (b"\n" if lines else b"")))
            await self.writer.drain()
        elif command == "DELE":
            msg = self.message(arg)
            if msg is None:
                await self.send("-ERR no such message")
                return
            msg.deleted = True
            await self.send(f"+OK message {arg} deleted")
        elif command == "RSET":
            for m in self.messages:
                m.deleted = False
            await self.send(f"+OK {len(self.messages)} message(s)")
        else:
            await self.send("-ERR unknown command")

    async def quit(self) -> None:
        gone = [m for m in self.messages if m.deleted]
        if self.account is not None and gone:  # the UPDATE state (RFC 1939 §6)
            address, store = self.account.address, self.server.store

            def update() -> None:
                for m in gone:
                    store.remove(address, m.key)

            await asyncio.to_thread(update)
        await self.send(f"+OK bye ({len(gone)} message(s) deleted)")

    def release(self) -> None:
        if self.account is not None:
            self.server.locked.discard(self.account.address)


class Pop3Server:
    """POP3 over implicit TLS for one domain's mailboxes."""

    def __init__(self, domain: str, store: MailStore,
                 authenticate: Callable[[str, str], Account | None],
                 context: ssl.SSLContext, *, idle_timeout: float = 600.0) -> None:
        self.domain = domain
        self.store = store
        self.authenticate = authenticate
        self.context = context
        self.idle_timeout = idle_timeout  # RFC 1939 §3: at least 10 minutes
        self.locked: set[Address] = set()
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._sessions: set[asyncio.Task[None]] = set()

    async def start(self, host: str, port: int) -> int:
        """Listen; the bound port."""
        self._server = await asyncio.start_server(self._serve, host, port, ssl=self.context,
                                                  ssl_handshake_timeout=10, limit=4096)
        return int(self._server.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        """Stop listening and close open sessions (no UPDATE without QUIT)."""
        if self._server is not None:
            self._server.close()
            for writer in list(self._writers):
                writer.close()
            # Let each session see its closed connection and end by itself rather than be
            # cancelled with the loop.
            if self._sessions:
                await asyncio.wait(list(self._sessions), timeout=5)
            await self._server.wait_closed()
            self._server = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        task = asyncio.current_task()
        if task is not None:
            self._sessions.add(task)
        session = _Session(self, reader, writer)
        try:
            await session.run()
        except (ConnectionError, ssl.SSLError):
            pass
        except asyncio.CancelledError:
            # Only the loop's teardown cancels a session (nobody awaits this task): end it
            # quietly, since Python 3.11's streams report a cancelled connection task as
            # "Exception in callback ... CancelledError" (fixed in 3.12).
            pass
        finally:
            session.release()
            self._writers.discard(writer)
            if task is not None:
                self._sessions.discard(task)
            writer.close()
            with contextlib.suppress(ConnectionError, ssl.SSLError):
                await writer.wait_closed()
