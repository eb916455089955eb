"""The announcer: probe for our name at RFC 6762 §8.1's pace, announce, defend it against
rivals, say goodbye at stop."""

from __future__ import annotations

import asyncio
import enum
import logging
import time
from typing import Any

import zeroconf._core as _zeroconf_core
from zeroconf import (
    DNSQuestionType,
    InterfaceChoice,
    IPVersion,
    RecordUpdate,
    RecordUpdateListener,
    Zeroconf,
)
from zeroconf._dns import DNSService  # not re-exported by name from zeroconf itself
from zeroconf.asyncio import AsyncServiceBrowser, AsyncServiceInfo, AsyncZeroconf

from bifente.contracts.mdns import SERVICE_TYPE
from bifente.edged.discovery.advert import Advert, Interfaces

log = logging.getLogger("bifente.edged.discovery")  # one logger for the package's warnings

_DEFEND_INTERVAL = 5.0  # s between two re-announcements against rivals for our name
PROBE_INTERVAL_MS = 250  # RFC 6762 §8.1: three probes 250 ms apart, then announce
PROBE_DELAY_MS = (0, 250)  # RFC 6762 §8.1: first a random delay "in the range 0-250 ms"


def _probe_at_rfc_pace() -> None:
    """Make python-zeroconf probe at RFC 6762 §8.1's pace: 0-250 ms, then every 250 ms.

    Its probe loop reads the module constants _CHECK_TIME (500 ms in 0.154) and
    _PROBE_RANDOM_DELAY_INTERVAL (150-250 ms) each time; at its pace start to discoverable
    took 1.5 s instead of about 1 s. Left alone if a release renames them (the test checks
    the values, so an upgrade that does shows up).
    """
    if isinstance(getattr(_zeroconf_core, "_CHECK_TIME", None), int):
        setattr(_zeroconf_core, "_CHECK_TIME", PROBE_INTERVAL_MS)  # noqa: B010 - private
    if isinstance(getattr(_zeroconf_core, "_PROBE_RANDOM_DELAY_INTERVAL", None), tuple):
        _zeroconf_core._PROBE_RANDOM_DELAY_INTERVAL = PROBE_DELAY_MS


class AnnouncerState(enum.Enum):
    """NEW -> STARTING -> ANNOUNCED -> CLOSED; a failed start also ends CLOSED."""

    NEW = "new"
    STARTING = "starting"
    ANNOUNCED = "announced"
    CLOSED = "closed"


def _ignore(**_: Any) -> None:
    """A browser handler for a browser that only fills the cache."""


class _ConflictGuard(RecordUpdateListener):
    """Passes every record update to the announcer, which looks for a rival SRV (RFC 6762 §9)."""

    def __init__(self, announcer: Announcer) -> None:
        self._announcer = announcer

    def async_update_records(self, zc: Zeroconf, now: float, records: list[RecordUpdate]) -> None:
        """Called by zeroconf in the loop for each packet's records."""
        self._announcer._check_records(now, records)

    def async_update_records_complete(self) -> None:
        """Nothing to do once the cache holds the records."""


class Announcer:
    """Registers one Advert with its own AsyncZeroconf; `close()` says goodbye (idempotent)."""

    # ip_version: zeroconf's IPVersion; None means IPv4 with all interfaces, else what the
    # given addresses imply.
    def __init__(self, advert: Advert, *, interfaces: Interfaces = None,
                 ip_version: IPVersion | None = None) -> None:
        self._advert = advert
        self._interfaces = InterfaceChoice.All if interfaces is None else interfaces
        self._ip_version = ip_version
        self._zc: AsyncZeroconf | None = None
        self._server = ""  # our SRV target, fixed at start()
        self._info: AsyncServiceInfo | None = None
        self._announcing: asyncio.Future[Any] | None = None
        self._guard: _ConflictGuard | None = None
        self._resolving: asyncio.Task[None] | None = None  # a rename or a defence under way
        self._defended_at = -_DEFEND_INTERVAL
        self._lock = asyncio.Lock()
        self.state = AnnouncerState.NEW
        self.started_at: float | None = None  # time.monotonic() when start() began
        self.registered_at: float | None = None  # ... when the name was won and announced

    @property
    def advert(self) -> Advert:
        """The advert currently announced (the latest update)."""
        return self._advert

    @property
    def name(self) -> str:
        """The instance name on the network: the advert's, or `name-N` after a conflict."""
        return self._info.get_name() if self._info is not None else self._advert.name

    @property
    def service_name(self) -> str:
        """The full DNS-SD service name, `<instance>._bifente._tcp.local.`."""
        return f"{self.name}.{SERVICE_TYPE}"

    @property
    def time_to_discoverable(self) -> float | None:
        """Seconds from start() to the first announcement (probing takes most of it)."""
        if self.started_at is None or self.registered_at is None:
            return None
        return self.registered_at - self.started_at

    async def __aenter__(self) -> Announcer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def start(self) -> None:
        """Probe for the name (renaming on conflict), register and announce (RFC 6762 §8)."""
        async with self._lock:
            if self.state is not AnnouncerState.NEW:
                raise RuntimeError(f"announcer is {self.state.value}; start() runs once")
            if not self._advert.addresses:
                raise ValueError("no address to announce: the host has no non-loopback address "
                                 "(start after the network is up, or give addresses)")
            self.state = AnnouncerState.STARTING
            self.started_at = time.monotonic()
            _probe_at_rfc_pace()
            # Our own SRV target, unique per certificate: two Pis both called "raspberrypi"
            # must not publish competing address records for one host name.
            self._server = f"bifente-{self._advert.fingerprint[:12]}.local."
            info = self._service_info(self._advert, self._advert.name)
            try:
                self._zc = AsyncZeroconf(interfaces=self._interfaces, ip_version=self._ip_version)
                self._announcing = await self._register(info)
            except BaseException:
                self.state = AnnouncerState.CLOSED
                if self._zc is not None:
                    await self._zc.async_close()
                raise
            self._info = info
            self.registered_at = time.monotonic()
            self.state = AnnouncerState.ANNOUNCED
            self._guard = _ConflictGuard(self)
            self._zc.zeroconf.async_add_listener(self._guard, None)
            if self.name != self._advert.name:
                log.warning("mDNS name %r is taken on this network; announcing as %r",
                            self._advert.name, self.name)
            log.info("announced %s on port %d after %.2f s", self.service_name,
                     self._advert.port, self.time_to_discoverable)

    async def update(self, advert: Advert) -> None:
        """Announce new records (a new certificate, port or addresses) under the same name."""
        async with self._lock:
            if self.state is not AnnouncerState.ANNOUNCED:
                raise RuntimeError(f"announcer is {self.state.value}; update() needs it announced")
            if advert.name != self._advert.name:
                raise ValueError("the instance name cannot change while announced; close this "
                                 "announcer and start another")
            assert self._zc is not None
            info = self._service_info(advert, self.name)  # keep the name won at probing
            await self._stop_announcing()
            self._announcing = asyncio.ensure_future(await self._zc.async_update_service(info))
            self._info, self._advert = info, advert
            log.info("updated %s", self.service_name)

    async def close(self) -> None:
        """Send goodbyes (RFC 6762 §10.1, TTL 0) and close the sockets; safe to call again."""
        async with self._lock:
            if self.state is AnnouncerState.CLOSED:
                return
            was = self.state
            self.state = AnnouncerState.CLOSED
            if was is AnnouncerState.NEW:
                return
            assert self._zc is not None and self._info is not None
            try:
                # A rename or defence waiting for the lock must not run after the goodbyes.
                if self._resolving is not None and not self._resolving.done():
                    self._resolving.cancel()
                    await asyncio.wait([self._resolving])
                if self._guard is not None:
                    self._zc.zeroconf.async_remove_listener(self._guard)
                    self._guard = None
                await self._stop_announcing()  # no announcement may follow a goodbye
                goodbyes = await self._zc.async_unregister_service(self._info)
                await goodbyes
                log.info("said goodbye for %s", self.service_name)
            finally:
                await self._zc.async_close()

    async def _register(self, info: AsyncServiceInfo) -> asyncio.Future[Any]:
        """Probe, rename if taken, register; the future repeats the announcement."""
        assert self._zc is not None
        # A defender answers our QU probes by unicast, which another mDNS socket on the same
        # host (avahi, a second daemon) may receive instead (RFC 6762 §15.1). A QM browse while
        # probing makes it answer by multicast, so the conflict is seen in time, mostly: a
        # defender that multicast its records in the last second answers a second later
        # (RFC 6762 §6), and _check_records catches that case after we announce.
        watch = AsyncServiceBrowser(self._zc.zeroconf, SERVICE_TYPE, handlers=[_ignore],
                                    question_type=DNSQuestionType.QM)
        try:
            return asyncio.ensure_future(
                await self._zc.async_register_service(info, allow_name_change=True))
        finally:
            await watch.async_cancel()

    def _check_records(self, now: float, records: list[RecordUpdate]) -> None:
        """Start a rename or a defence when another host claims our instance name."""
        info = self._info
        if info is None or self.state is not AnnouncerState.ANNOUNCED:
            return
        if self._resolving is not None and not self._resolving.done():
            return
        for update in records:
            record = update.new
            if (isinstance(record, DNSService) and record.key == info.key
                    and record.server_key != info.server_key and not record.is_expired(now)):
                break
        else:
            return
        loop = asyncio.get_running_loop()
        # RFC 6762 §8.2 tie-break, on the SRV target: the later one keeps the name and
        # re-announces so the other hears it; the earlier one renames. Exactly one gives way.
        if record.server_key > (info.server_key or ""):
            self._resolving = loop.create_task(self._rename(record.server_key))
        elif time.monotonic() - self._defended_at >= _DEFEND_INTERVAL:
            self._defended_at = time.monotonic()
            self._resolving = loop.create_task(self._defend(record.server_key))

    async def _rename(self, rival: str) -> None:
        async with self._lock:
            if self.state is not AnnouncerState.ANNOUNCED:
                return
            assert self._zc is not None and self._info is not None
            old = self.name
            await self._stop_announcing()
            # RFC 6762 §9: stop using the name at once. No goodbye: a TTL-0 PTR would also
            # erase the other host's identical PTR from every cache.
            self._zc.zeroconf.registry.async_remove(self._info)
            info = self._service_info(self._advert, self._advert.name)
            try:
                self._announcing = await self._register(info)  # the library skips taken names
            except Exception as exc:  # a background task: say it, do not lose it
                log.error("could not announce again after a name conflict: %s: %s",
                          type(exc).__name__, exc)
                return
            self._info = info
            log.warning("mDNS name %r is also announced by %s; announcing as %r", old, rival,
                        self.name)

    async def _defend(self, rival: str) -> None:
        async with self._lock:
            if self.state is not AnnouncerState.ANNOUNCED:
                return
            assert self._zc is not None and self._info is not None
            log.warning("mDNS name %r is also announced by %s; keeping it (RFC 6762 §8.2 "
                        "tie-break) and announcing again", self.name, rival)
            await self._stop_announcing()
            self._announcing = asyncio.ensure_future(
                await self._zc.async_update_service(self._info))

    def _service_info(self, advert: Advert, instance: str) -> AsyncServiceInfo:
        return AsyncServiceInfo(SERVICE_TYPE, f"{instance}.{SERVICE_TYPE}", port=advert.port,
                                properties=advert.txt(), server=self._server,
                                parsed_addresses=list(advert.addresses))

    async def _stop_announcing(self) -> None:
        task, self._announcing = self._announcing, None
        if task is not None and not task.done():
            task.cancel()
            await asyncio.wait([task])


