"""The daemon: wires the parts together and runs them in a fixed order (STYLE.md habit 9).

Start: state (keys, clients, audit) -> readers -> secure socket -> mDNS -> READY=1.
Stop:  STOPPING=1 -> mDNS goodbye -> stop accepting and close clients -> cards finished and
       reset -> readers -> audit closed.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import socket
import time
from collections.abc import Callable, Coroutine, Mapping
from typing import Any

from bifente.apdu.transport import Transport
from bifente.edged import systemd
from bifente.edged.api.server import Connection, RpcServer
from bifente.edged.config import Config
from bifente.edged.early import EarlyAdvert, capabilities
from bifente.edged.events import EventBus
from bifente.edged.readers.manager import PcscWatcher, SlotRegistry
from bifente.edged.readers.ui import PAIRING_SCREEN_S, TerminalUI, fit_lines
from bifente.edged.services.container import Extension, Services
from bifente.edged.services.context import EDGED, audit_actor
from bifente.edged.services.signing import SignatureGate
from bifente.edged.state.clients import scope_labels
from bifente.edged.version import VERSION

__all__ = ["VERSION", "Daemon"]

log = logging.getLogger(__name__)

# The most one step of Daemon.stop may take, and the whole stop before its durable records
# (the audit's daemon.stop); SIGTERM-to-exit is bounded by edged/shutdown.py, far below
# systemd's default TimeoutStopSec of 90 s. A step is a client's close handshake
# (websockets' close_timeout, 5 s), a card job or a service's loop.
STOP_STEP_S = 6.0
STOP_BUDGET_S = 20.0


class Daemon:
    """Everything edged runs; `await start()`, then `await stop()`."""

    def __init__(self, config: Config, *, ui: TerminalUI | None = None,
                 wrap_transport: Callable[[str, Transport], Transport] | None = None) -> None:
        from bifente.edged.api.pairing import PairingManager
        from bifente.edged.state.audit import AuditLog, load_or_create_anchor_key
        from bifente.edged.state.clients import ClientRegistry
        from bifente.edged.state.keystore import Keystore
        from bifente.edged.state.sqlite import state_file

        self.config = config
        from bifente.edged.state.keywrap import load_key_wrapper
        from bifente.edged.state.space import SpaceGuard

        state = config.state_dir
        with state_file(state):
            state.mkdir(parents=True, exist_ok=True, mode=0o700)
            if state.stat().st_mode & 0o077:
                log.warning("tightening the state directory %s to 0700", state)
                state.chmod(0o700)
        self.hostname = socket.gethostname()
        # Secrets at rest are sealed with a key kept elsewhere (edged/state/keywrap.py, M8).
        self.key_wrapper = load_key_wrapper(state, config.state_key_file)
        # New durable work is refused before it is written when the disk runs low.
        self.space = SpaceGuard(state, config.min_free_mb)
        # Each state file opened under its own name: a full disk, a read-only directory or a
        # corrupted file stops the start with one line naming the file (D7).
        with state_file(state / "keys"):
            self.keystore = Keystore(state / "keys", hostname=self.hostname,
                                     wrapper=self.key_wrapper)
        with state_file(state / "clients.db"):
            self.clients = ClientRegistry(state / "clients.db")
        with state_file(state / "audit.db"):
            self.audit = AuditLog(state / "audit.db", anchor_key=load_or_create_anchor_key(
                state / "audit.key", self.key_wrapper))
        from bifente.edged.state.audit_budget import AuditBudget

        self.audit_budget = AuditBudget(self.audit.submit)
        self._budget_flusher: asyncio.Task[None] | None = None
        self._window_watch: asyncio.Task[None] | None = None
        self.bus = EventBus()
        self.slots = SlotRegistry(self.bus)
        self.ui = ui
        self.wrap_transport = wrap_transport
        self.pairing = PairingManager(self.keystore, self.clients, show_code=self._show_code,
                                      on_event=self._pairing_event,
                                      window_seconds=config.pairing_window_seconds)
        self.server = RpcServer(self)
        self.signatures = SignatureGate(batch_count=config.sign_batch_count,
                                        batch_minutes=config.sign_batch_minutes)
        self.services = Services.build(self)
        self.announcer: Any = None
        self.watcher: PcscWatcher | None = None
        self.terminal: Any = None
        self.started_at = time.monotonic()
        self.discoverable_at: float | None = None
        self._watchdog: asyncio.Task[None] | None = None
        self._stopped = asyncio.Event()
        self._stop_deadline = 0.0

    @property
    def extensions(self) -> list[Extension]:
        """The configured services, in start order."""
        return self.services.running()

    # -- what clients see --------------------------------------------------------------------
    def capabilities(self) -> list[str]:
        """What this terminal can do (also in the mDNS TXT record)."""
        return capabilities(self.ui is not None)

    def info(self) -> dict[str, Any]:
        """system.info."""
        from bifente.edged.api.methods import PROTOCOL_VERSION

        return {"protocol": PROTOCOL_VERSION, "version": VERSION,
                "fingerprint": self.keystore.fingerprint, "model": self.config.model,
                "capabilities": self.capabilities()}

    def audit_event(self, event: str, conn: Connection | None, **fields: Any) -> None:
        """Append to the audit chain off the event loop; the actor is the paired client's
        name. An unpaired peer's records are aggregated (edged/state/audit_budget.py)."""
        if conn is not None and not conn.paired:
            self.audit_budget.record(event, conn.peer, **fields)
            return
        actor = audit_actor(conn.client_name, conn.peer) if conn else EDGED
        self.audit.submit(event, actor=actor, **fields)

    async def audit_intent(self, event: str, conn: Connection | None, **fields: Any) -> None:
        """Record what is about to happen and wait until it is durable: the trace exists
        even if the action then fails or the daemon dies (review L3)."""
        actor = audit_actor(conn.client_name, conn.peer) if conn else EDGED
        await self.audit.aappend(event, actor=actor, **fields)  # at once, not grouped

    async def _show_code(self, code: str, client_name: str, scopes: tuple[str, ...]) -> None:
        if self.ui is not None:
            # The holder sees what the code grants before reading it out (M9).
            await self.ui.show(["Appairage", client_name[:16], *fit_lines(scope_labels(scopes),
                                                                       lines=4),
                                f"Code: {code}"], secret_s=PAIRING_SCREEN_S)
        else:
            # Headless PC/SC setups: the operator reads the code on the console (journald).
            log.warning("pairing code for %r: %s (no terminal display)", client_name, code)

    def _pairing_event(self, name: str, fields: Mapping[str, Any]) -> None:
        if name in ("pair.window_opened", "pair.window_closed"):
            # A person's action on the terminal or on this machine: always written, in full.
            self.audit.submit(name, actor="edged", **fields)
            seconds = int(fields.get("seconds", 0)) if name == "pair.window_opened" else 0
            asyncio.get_running_loop().create_task(self._show_window(seconds))
            return
        if name == "pair.complete":  # a new client: always written, in full
            self.audit.submit(name, actor=audit_actor(str(fields.get("client_name") or ""),
                                                      str(fields.get("peer") or "")),
                              **{k: v for k, v in fields.items() if k != "client_name"})
            if self.ui is not None:
                # The code was used: it leaves the shared screen now (review M3).
                asyncio.get_running_loop().create_task(
                    self._show_quietly(["Appairage", "terminé",
                                        str(fields.get("client_name", ""))[:21]]))
            return
        # Anyone on the LAN can cause the others: aggregated per peer (review M6).
        self.audit_budget.record(name, str(fields.get("peer", "")), **fields)

    async def _show_window(self, seconds: int) -> None:
        """The pairing window on the terminal: it counts the seconds down itself."""
        try:
            if self.terminal is not None and self.terminal.connected:
                await asyncio.to_thread(self.terminal.pair_window, seconds)
            elif self.ui is not None and seconds:
                await self.ui.show(["Appairage ouvert", f"pendant {seconds} s"])
            elif seconds:
                log.warning("pairing window open for %d s (no terminal display)", seconds)
        except Exception as exc:  # the terminal may be gone; the window stands
            log.debug("pairing window on the terminal: %s", exc)

    def terminal_pair_request(self) -> None:
        """F1 on the terminal's fingerprint screen: a person at the terminal opens pairing."""
        asyncio.get_running_loop().create_task(self.pairing.open_window("terminal"))

    async def _watch_window_requests(self) -> None:
        """`bifente admin open-pairing` on this machine: the same window as the terminal's."""
        from bifente.edged.state.pairing_window import REQUEST_FILE, take_request

        path = self.config.state_dir / REQUEST_FILE
        while True:
            await asyncio.sleep(1.0)
            if path.exists() and await asyncio.to_thread(take_request, self.config.state_dir):
                await self.pairing.open_window("cli")

    async def _show_quietly(self, lines: list[str]) -> None:
        if self.ui is None:
            return
        try:
            await self.ui.show(lines)
        except Exception as exc:  # the terminal may be gone; the pairing stands
            log.debug("display after pairing: %s", exc)

    async def _flush_audit_budget(self) -> None:
        while True:
            await asyncio.sleep(10.0)
            self.audit_budget.flush()

    # -- lifecycle ---------------------------------------------------------------------------
    async def start(self, early: EarlyAdvert | None = None) -> None:
        """Bring everything up; READY=1 once clients can find and call us. With `early`, the
        socket is bound and the mDNS name is being probed already (edged/early.py)."""
        loop = asyncio.get_running_loop()
        from bifente.edged.memory import return_large_buffers
        from bifente.edged.state.sqlite import state_file

        return_large_buffers()  # a 25 MB mail's buffers do not stay resident (edged/memory.py)
        with state_file(self.audit.path):  # the first write: a full disk is named here (D7)
            self.audit.append("daemon.start", actor=EDGED, version=VERSION)
        if self.config.pcsc:
            self.watcher = PcscWatcher(self.slots, loop, wrap=self.wrap_transport)
            self.watcher.start()
        if self.config.terminal:
            self._start_terminal(loop)
        try:
            await self.server.start(early.sock if early is not None else None)
            for extension in self.extensions:
                await extension.start()
        except BaseException:
            if early is not None:
                await early.cancel()
            raise
        if early is not None:
            await self._adopt(early)
        elif self.config.mdns:
            await self._announce()
        self.discoverable_at = time.monotonic()
        systemd.notify("READY=1", f"STATUS=serving on port {self.server.port}")
        self._budget_flusher = loop.create_task(self._flush_audit_budget())
        self._window_watch = loop.create_task(self._watch_window_requests())
        interval = systemd.watchdog_interval()
        if interval:
            self._watchdog = loop.create_task(self._keepalive(interval))
        log.info("edged %s ready on port %d, fingerprint %s", VERSION, self.server.port,
                 self.keystore.fingerprint)

    def _start_terminal(self, loop: asyncio.AbstractEventLoop) -> None:
        """The bifente terminal: two slots with a keypad, and its display for prompts."""
        from bifente.edged.readers.manager import Slot, SlotSource
        from bifente.edged.readers.terminal import TerminalReader

        def on_card(slot: int, present: bool, atr: bytes) -> None:
            slot_id = f"terminal:{slot}"
            if present:
                view = Slot(slot_id, f"bifente terminal slot {slot}", SlotSource.TERMINAL,
                            pin_pad=True)
                coro = self.slots.card_inserted(view, atr,
                                                lambda: self.terminal.transport(slot))
            else:
                coro = self.slots.card_removed(slot_id)
            loop.call_soon_threadsafe(lambda: loop.create_task(coro))

        seen = {"connected": False}

        def on_state(connected: bool) -> None:
            log.info("terminal %s %s", self.config.terminal,
                     "connected" if connected else "disconnected")
            if connected and seen["connected"]:  # not the first connection: a recovery
                loop.call_soon_threadsafe(self.bus.publish, "terminal.restored")
            elif not connected:
                loop.call_soon_threadsafe(lambda: self.bus.publish(
                    "terminal.lost", reason="the link to the terminal was lost"))
            seen["connected"] = seen["connected"] or connected

        def on_cancel() -> None:
            loop.call_soon_threadsafe(self.terminal_cancel)

        def on_pair_request() -> None:
            loop.call_soon_threadsafe(self.terminal_pair_request)

        self.terminal = TerminalReader(self.config.terminal, on_card=on_card, on_state=on_state,
                                       on_cancel=on_cancel, on_pair_request=on_pair_request,
                                       fingerprint=lambda: self.keystore.fingerprint).start()
        if self.ui is None:
            self.ui = self.terminal.ui()

    def terminal_cancel(self) -> None:
        """Cancel pressed outside a prompt: it wins at once over open batches and emergency
        accesses (docs/security.md), and clients hear of it."""
        self.signatures.end_batches()
        if self.services.dmp is not None:
            self.services.dmp.end_emergencies()
        if self.pairing.window_left():  # "Annuler: fermer" on the window's screen
            asyncio.get_running_loop().create_task(self.pairing.close_window("cancelled"))
        self.bus.publish("terminal.cancel")

    def _advert(self) -> Any:
        from bifente.edged.discovery import Advert, default_name

        name = self.config.name or default_name()
        advert = Advert(name=name, port=self.server.port, fingerprint=self.keystore.fingerprint,
                        capabilities=tuple(self.capabilities()), model=self.config.model)
        if self.config.mdns_interfaces:  # announce only the addresses we were told to use
            advert = dataclasses.replace(advert, addresses=tuple(self.config.mdns_interfaces))
        return advert

    async def _announce(self) -> None:
        from bifente.edged.discovery import Announcer

        self.announcer = Announcer(self._advert(),
                                   interfaces=list(self.config.mdns_interfaces) or None)
        await self.announcer.start()

    async def _adopt(self, early: EarlyAdvert) -> None:
        """The name probed during the start; its records corrected if the start changed any."""
        self.announcer = early.announcer
        await early.probing
        advert = self._advert()
        if advert != self.announcer.advert:
            await self.announcer.update(advert)

    async def _keepalive(self, interval: float) -> None:
        while True:
            systemd.notify("WATCHDOG=1")
            await asyncio.sleep(interval)

    async def stop(self) -> None:
        """Shut down in order; idempotent."""
        if self._stopped.is_set():
            return
        self._stopped.set()
        systemd.notify("STOPPING=1")
        self._stop_deadline = time.monotonic() + STOP_BUDGET_S
        if self._watchdog is not None:
            self._watchdog.cancel()
        # Each step is bounded, so that the whole stop stays well under systemd's
        # TimeoutStopSec (docs/reliability.md); the durable records at the end always run.
        if self.announcer is not None:  # goodbye packets first (RFC 6762 §10.1)
            await self._bounded("mDNS goodbye", self.announcer.close())
        await self._bounded("closing the clients' connections", self.server.close())
        for extension in reversed(self.extensions):
            await self._bounded(f"stopping {type(extension).__name__}", extension.stop())
        if self.terminal is not None:
            # A prompt waiting for someone at the keypad would hold its card job for up to
            # pin_timeout: nobody can use its answer any more.
            await self._bounded("ending the terminal's prompt",
                                asyncio.to_thread(self.terminal.abort_prompt))
        # Running card jobs finish; cards are reset.
        await self.slots.close(grace=max(self._step_time() / 2, 0.1))
        if self.terminal is not None:
            await asyncio.get_running_loop().run_in_executor(None, self.terminal.stop)
        if self.watcher is not None:
            await asyncio.get_running_loop().run_in_executor(None, self.watcher.stop)
            await self.watcher.settle()
        if self._budget_flusher is not None:
            self._budget_flusher.cancel()
        if self._window_watch is not None:
            self._window_watch.cancel()
        self.audit_budget.flush(everything=True)
        self.audit.flush()  # what was submitted comes before daemon.stop
        self.audit.append("daemon.stop", actor=EDGED)
        self.audit.close()
        self.clients.close()
        log.info("edged stopped")

    def _step_time(self) -> float:
        """What one step of stop() may take now."""
        return max(0.0, min(STOP_STEP_S, self._stop_deadline - time.monotonic()))

    async def _bounded(self, what: str, step: Coroutine[Any, Any, Any]) -> None:
        """One step of stop(), given at most STOP_STEP_S (less near the budget's end); past
        it, the stop goes on."""
        limit = self._step_time()
        try:
            await asyncio.wait_for(step, limit)
        except TimeoutError:
            log.warning("stop: %s took more than %.1f s; going on", what, limit)
        except Exception:  # the rest of the stop (the audit's daemon.stop) must still run
            log.exception("stop: %s failed", what)

    async def wait_stopped(self) -> None:
        """Until stop() has run."""
        await self._stopped.wait()
