"""One simulated world: the cards, the reference mail operator and the reference DMP host.

`edged --simulate`, `bifente sim ...`, the test fixtures and the benches all run some of the
same parts: simulated cards (in the virtual terminal, or in pcscd's vpcd readers), the mail
operator (simulators/mail) and the DMP host (simulators/dmp). `SimulatedWorld` starts the
parts asked for in that order, stops them in the reverse order (also when a later one fails to
start), and gives edged the configuration that points at them (`edged_overrides()`). A test
can take the mail operator or the DMP host down and back mid-run (stop_mail, start_dmp, ...).

    with SimulatedWorld("gp", "family", cards=CardsOn.TERMINAL) as world:
        config = config.with_overrides(**world.edged_overrides())
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol

from bifente.simulators.dmp import DmpHost
from bifente.simulators.mail import (
    DEFAULT_DOMAINS,
    DEFAULT_MAX_MESSAGE_BYTES,
    TEST_PASSWORD,
    MailOperator,
    mail_table,
)
from bifente.simulators.pki import DATA
from bifente.simulators.slots import SimulatedSlots
from bifente.simulators.terminal import VirtualTerminal
from bifente.simulators.terminal.card_io import LineCard
from bifente.simulators.terminal.control import read_state, remove_state, write_state

__all__ = ["CardsOn", "DmpFront", "DmpOptions", "MailOptions", "SimulatedWorld",
           "TerminalOptions"]

# The test PKI's intermediate CAs: edged's mail table names them so the signatures of
# simulated mail verify up to the test root (RFC 5652 §5.1 certificates are optional in a
# signed message, so the receiver may need the chain).
_INTERMEDIATES = ("personnes", "organisations")


class CardsOn(enum.Enum):
    """Where the simulated cards are inserted."""

    TERMINAL = "terminal"  # the virtual terminal: the firmware on MicroPython, a pty
    PCSC = "pcsc"  # pcscd's vpcd readers
    NONE = "none"  # no cards


@dataclass(frozen=True)
class TerminalOptions:
    """The virtual terminal's options (with `cards=CardsOn.TERMINAL`)."""

    heap: str = "192K"
    # Serve the control socket for other processes (simulators/terminal/control.py):
    # control_address, or a UNIX socket in a temporary folder of the world's when it is None.
    control: bool = False
    control_address: str | None = None
    # Write the state file that `bifente sim press | screen | insert` read (docs/terminal.md);
    # removed at stop if it is still this process's.
    record: bool = False


@dataclass(frozen=True)
class MailOptions:
    """The mail operator's options; data_dir None: a temporary folder removed at stop."""

    data_dir: Path | None = None
    domains: tuple[str, ...] = DEFAULT_DOMAINS
    host: str = "127.0.0.1"
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
    require_smime: bool = True
    base_port: int | None = None
    # Serve the directory (HTTPS) from a second operator, in a folder beside data_dir, that
    # stop_mail leaves running: during an outage of the operator, edged still finds the
    # recipients' certificates (it looks them up before it queues a message).
    directory_apart: bool = False


class DmpFront(Protocol):
    """Something edged talks to in front of the DMP host (a test's fault proxy)."""

    @property
    def url(self) -> str:
        """The base URL edged is given instead of the host's."""
        ...

    def close(self) -> None:
        """Stop serving (called before the host stops)."""
        ...


@dataclass(frozen=True)
class DmpOptions:
    """The DMP host's options; data_dir None: a temporary folder removed at stop."""

    data_dir: Path | None = None
    port: int = 0  # 0: any free port; a restart (SimulatedWorld.start_dmp) keeps the first
    host: str = "127.0.0.1"
    test_mode: bool = True
    admin_token: str | None = None
    clock: Callable[[], float] | None = None
    # Put something between edged and the host: called with the running host once, its url
    # goes into edged's [dmp] table; it outlives a restart of the host behind it.
    front: Callable[[DmpHost], DmpFront] | None = None


class SimulatedWorld:
    """Simulated cards, mail operator and DMP host, started and stopped together."""

    def __init__(self, cps: str | LineCard | None = "gp",
                 vitale: str | LineCard | None = "family", *,
                 cards: CardsOn = CardsOn.TERMINAL, mail: bool | MailOptions = True,
                 dmp: bool | DmpOptions = True, terminal: TerminalOptions | None = None,
                 pcscd: bool = True) -> None:
        if cards is CardsOn.PCSC and not all(c is None or isinstance(c, str)
                                             for c in (cps, vitale)):
            raise TypeError("cards in the vpcd readers are named by profile")
        self.cps, self.vitale, self.cards_on = cps, vitale, cards
        self.mail_options = MailOptions() if mail is True else mail or None
        self.dmp_options = DmpOptions() if dmp is True else dmp or None
        self.terminal_options = terminal or TerminalOptions()
        self.own_pcscd = pcscd  # False: the caller runs pcscd (the test session does)
        self.terminal: VirtualTerminal | None = None
        self.slots: SimulatedSlots | None = None
        self.mail: MailOperator | None = None
        self.dmp: DmpHost | None = None
        self.control_address: str | None = None
        self.state_file: Path | None = None
        self.mail_password = TEST_PASSWORD  # every simulated mailbox's (TEST DATA)
        self.dmp_front: DmpFront | None = None
        # Kept while a part is stopped mid-run (stop_mail, stop_dmp): its folder and port, so
        # it comes back as the same server, and edged's configuration still points at it.
        self._mail_dir: Path | None = None
        self._directory: MailOperator | None = None
        self._mail_table: dict[str, object] | None = None
        self._dmp_dir: Path | None = None
        self._dmp_port = 0
        self._dmp_url: str | None = None
        self._dmp_cafile: Path | None = None
        self._dmp_token: str | None = None
        self._stack: contextlib.ExitStack | None = None

    # -- lifecycle -----------------------------------------------------------------------

    def start(self) -> SimulatedWorld:
        """Start the parts (cards, mail, DMP); what started is stopped if a later part fails."""
        if self._stack is not None:
            return self
        stack = contextlib.ExitStack()
        try:
            if self.cards_on is CardsOn.TERMINAL:
                self._start_terminal(stack)
            elif self.cards_on is CardsOn.PCSC:
                self._start_slots(stack)
            if self.mail_options is not None:
                self._start_mail(stack, self.mail_options)
            if self.dmp_options is not None:
                self._start_dmp(stack, self.dmp_options)
        except BaseException:
            stack.close()
            self._forget()
            raise
        self._stack = stack
        return self

    def stop(self) -> None:
        """Stop every part, the last started first (idempotent)."""
        stack, self._stack = self._stack, None
        if stack is not None:
            try:
                stack.close()
            finally:
                self._forget()

    def __enter__(self) -> SimulatedWorld:
        return self.start()

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    async def __aenter__(self) -> SimulatedWorld:
        # The parts start and stop blocking (a firmware boot, pcscd): off the caller's loop.
        return await asyncio.to_thread(self.start)

    async def __aexit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await asyncio.to_thread(self.stop)

    def _forget(self) -> None:
        self.terminal = self.slots = self.mail = self.dmp = self.dmp_front = None
        self.control_address = self.state_file = self._mail_table = self._mail_dir = None
        self._directory = None
        self._dmp_dir = self._dmp_url = self._dmp_cafile = self._dmp_token = None
        self._dmp_port = 0

    # -- a part down mid-run ---------------------------------------------------------------

    def stop_mail(self) -> None:
        """Stop the mail operator mid-run (an outage); start_mail brings it back."""
        operator, self.mail = self.mail, None
        if operator is not None:
            operator.close()

    def start_mail(self) -> MailOperator:
        """Start the mail operator again after stop_mail: same folder, so the same ports
        (its operator.json), mailboxes and certificates."""
        if self.mail is None:
            assert self.mail_options is not None and self._mail_dir is not None, "not started"
            self.mail = self._serve_mail(self._mail_dir, self.mail_options)
        return self.mail

    def stop_dmp(self) -> None:
        """Stop the DMP host mid-run (the network goes; its sessions, in memory, are lost);
        a front, if any, stays. start_dmp brings it back."""
        host, self.dmp = self.dmp, None
        if host is not None:
            host.stop()

    def start_dmp(self) -> DmpHost:
        """Start the DMP host again after stop_dmp: same folder, port and admin token."""
        if self.dmp is None:
            assert self.dmp_options is not None and self._dmp_dir is not None, "not started"
            self.dmp = self._serve_dmp(self._dmp_dir, self.dmp_options, self._dmp_port,
                                       self._dmp_token)
        return self.dmp

    # -- what edged needs ----------------------------------------------------------------

    def edged_overrides(self) -> dict[str, Any]:
        """edged's configuration for this running world (Config.with_overrides): the
        terminal's pty (and no PC/SC readers), the [mail] table, the [dmp] table; nothing for
        vpcd cards, which edged finds through PC/SC as on a real install."""
        overrides: dict[str, Any] = {}
        if self.terminal is not None:
            overrides["terminal"] = self.terminal.pty_path
            overrides["pcsc"] = False
        if self._mail_dir is not None:
            overrides["mail"] = self._edged_mail_table(self._mail_dir)
        if self._dmp_url is not None:
            overrides["dmp"] = {"url": self._dmp_url, "ca_file": str(self._dmp_cafile),
                                "admin_token": self._dmp_token}
        return overrides

    def proxy_table(self, domain: str) -> dict[str, Any]:
        """edged's [proxy] table for a structure mailbox of `domain` at this world's mail
        operator (docs/messaging.md, the proxy): its submission port and directory, and the
        [mail] table's password file (every simulated mailbox has the test password)."""
        assert self.mail is not None and self._mail_dir is not None, "the mail operator runs"
        info = self.mail.info
        return {"domain": domain, "smtp_host": info.host,
                "smtp_port": info.domains[domain].submission,
                "smtp_server_name": info.domains[domain].server_name,
                "ca_file": info.ca_file, "directory_url": info.directory_url,
                "account_password_file": self._edged_mail_table(self._mail_dir)["password_file"],
                "trust_intermediates": [str(path) for path in _intermediate_files()]}

    # -- the parts -----------------------------------------------------------------------

    def _start_terminal(self, stack: contextlib.ExitStack) -> None:
        options = self.terminal_options
        terminal = VirtualTerminal(cps=self.cps, vitale=self.vitale, heap=options.heap)
        terminal.start()
        stack.callback(terminal.stop)
        self.terminal = terminal
        if options.control:
            address = options.control_address
            if address is None:
                folder = stack.enter_context(tempfile.TemporaryDirectory(prefix="bifente-vt-"))
                address = f"unix:{folder}/control.sock"
            self.control_address = terminal.serve_control(address)
        if options.record:
            if self.control_address is None:
                raise ValueError("the terminal's state file names its control address: "
                                 "record needs control")
            self.state_file = write_state(terminal.pty_path, self.control_address)
            stack.callback(_forget_state, self.state_file)

    def _start_slots(self, stack: contextlib.ExitStack) -> None:
        cps, vitale = self.cps, self.vitale
        assert cps is None or isinstance(cps, str)  # checked in __init__
        assert vitale is None or isinstance(vitale, str)
        slots = SimulatedSlots(cps, vitale)
        stack.callback(slots.stop)  # first: pulls what start() inserted before failing
        slots.start(pcscd=self.own_pcscd)
        self.slots = slots

    def _start_mail(self, stack: contextlib.ExitStack, options: MailOptions) -> None:
        data = options.data_dir
        if data is None:
            data = Path(stack.enter_context(
                tempfile.TemporaryDirectory(prefix="bifente-mail-"))) / "operator"
        if options.directory_apart:
            # Its own ports: base_port, if any, is the mail operator's.
            directory = self._directory = self._serve_mail(
                data.with_name(f"{data.name}-directory"), replace(options, base_port=None))
            stack.callback(directory.close)
        self.mail = self._serve_mail(data, options)
        self._mail_dir = self.mail.data_dir
        stack.callback(self.stop_mail)

    @staticmethod
    def _serve_mail(data: Path, options: MailOptions) -> MailOperator:
        return MailOperator(data, domains=options.domains, host=options.host,
                            max_message_bytes=options.max_message_bytes,
                            require_smime=options.require_smime,
                            base_port=options.base_port).serve_in_thread()

    def _edged_mail_table(self, operator_dir: Path) -> dict[str, object]:
        """edged's [mail] table; written on first use (the password file in the operator's
        folder, the intermediate CAs in a temporary one): `bifente sim mail` never needs it."""
        if self._mail_table is None:
            assert self._stack is not None  # the operator runs
            scratch = Path(self._stack.enter_context(
                tempfile.TemporaryDirectory(prefix="bifente-mail-")))
            chain = scratch / "intermediates.pem"
            chain.write_bytes(b"".join(path.read_bytes() for path in _intermediate_files()))
            table = mail_table(operator_dir, intermediates_file=str(chain))
            if self._directory is not None:
                table["directory_url"] = self._directory.info.directory_url
            self._mail_table = table
        return self._mail_table

    def _start_dmp(self, stack: contextlib.ExitStack, options: DmpOptions) -> None:
        data = options.data_dir
        if data is None:
            data = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bifente-dmp-")))
        host = self.dmp = self._serve_dmp(data, options, options.port, options.admin_token)
        stack.callback(self.stop_dmp)
        self._dmp_dir, self._dmp_port = data, host.port
        self._dmp_url, self._dmp_cafile, self._dmp_token = host.url, host.cafile, host.admin_token
        if options.front is not None:
            front = self.dmp_front = options.front(host)
            stack.callback(front.close)  # before the host stops
            self._dmp_url = front.url

    @staticmethod
    def _serve_dmp(data: Path, options: DmpOptions, port: int, token: str | None) -> DmpHost:
        return DmpHost(data, port=port, host=options.host, test_mode=options.test_mode,
                       admin_token=token, clock=options.clock or time.time).start()


def _intermediate_files() -> list[Path]:
    """The test PKI's intermediate CA certificates, PEM, one file each."""
    return [DATA / "ca" / f"test-{name}.crt.pem" for name in _INTERMEDIATES]


def _forget_state(state: Path) -> None:
    """Remove the terminal's state file if it still names this process (another may have
    taken it over since)."""
    with contextlib.suppress(Exception):
        if read_state(state).get("pid") == os.getpid():
            remove_state(state)

