"""mDNS / DNS-SD discovery: edged announces `_bifente._tcp`, clients browse and pin fingerprints."""

from __future__ import annotations

import asyncio
import enum
import ipaddress
import logging
import re
import socket
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import ifaddr
import zeroconf._core as _zeroconf_core
from zeroconf import (
    DNSQuestionType,
    InterfaceChoice,
    IPVersion,
    RecordUpdate,
    RecordUpdateListener,
    ServiceStateChange,
    Zeroconf,
)
from zeroconf._dns import DNSService  # not re-exported by name from zeroconf itself
from zeroconf.asyncio import AsyncServiceBrowser, AsyncServiceInfo, AsyncZeroconf

from bifente_client.identity import fingerprint_of
from contracts.mdns import FINGERPRINT_PREFIX, PROTOCOL_VERSION, SERVICE_TYPE, TXT_KEYS

__all__ = [
    "PROTOCOL_VERSION",
    "SERVICE_TYPE",
    "TXT_KEYS",
    "Advert",
    "Announcer",
    "AnnouncerState",
    "Interfaces",
    "MalformedAdvert",
    "Terminal",
    "browse",
    "default_name",
    "format_fingerprint",
    "host_addresses",
    "parse_static",
]

log = logging.getLogger(__name__)

# Where to listen and send: None for all interfaces, or IP addresses (IPv6 also by index).
Interfaces = InterfaceChoice | Sequence[str | int] | None

# The advert's names are a contract with every client: contracts/mdns.py.
_FP_PREFIX = FINGERPRINT_PREFIX
_FP_HEX = re.compile(r"[0-9a-f]{64}")
_CAPABILITY = re.compile(r"[a-z0-9][a-z0-9._-]{0,31}")
_TXT_STRING_MAX = 255  # RFC 6763 §6.1: one length byte per key=value string
_TXT_TOTAL_MAX = 1300  # RFC 6763 §6.2: the whole TXT record should fit one packet
_INSTANCE_MAX = 63  # RFC 6763 §4.1.1: instance name <= 63 UTF-8 octets
_RENAME_ROOM = 4  # python-zeroconf renames a taken "name" to "name-2", "name-3"...
_MAX_TERMINALS = 1024  # a hospital runs hundreds; a flood of fake adverts stops here
_MAX_CAPS = 32
_MAX_TEXT = 64  # longest version / capability token we accept from the network
_RESOLVE_GRACE = 1.0  # s a browse waits after its window for resolutions under way
_MAX_BROWSE = 60.0  # s
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


def format_fingerprint(fingerprint: str) -> str:
    """A fingerprint in 4-digit groups for people to compare ("ab12 cd34 ...")."""
    return " ".join(fingerprint[i:i + 4] for i in range(0, len(fingerprint), 4))


def default_name() -> str:
    """The default instance name, `bifente-<hostname>`, short enough to leave room for a rename."""
    host = socket.gethostname().split(".")[0] or "edged"
    name = f"bifente-{host}"
    limit = _INSTANCE_MAX - _RENAME_ROOM
    return name.encode()[:limit].decode(errors="ignore")


def host_addresses(ip_version: IPVersion = IPVersion.All) -> tuple[str, ...]:
    """This host's addresses worth announcing: no loopback, no IPv6 link-local (it needs a zone)."""
    found: list[str] = []
    for adapter in ifaddr.get_adapters():
        for ip in adapter.ips:
            text = ip.ip if isinstance(ip.ip, str) else ip.ip[0]
            addr = ipaddress.ip_address(text)
            if addr.is_loopback or (addr.version == 6 and addr.is_link_local):
                continue
            if (ip_version is IPVersion.V4Only and addr.version != 4) or (
                    ip_version is IPVersion.V6Only and addr.version != 6):
                continue
            if str(addr) not in found:
                found.append(str(addr))
    return tuple(sorted(found, key=lambda a: (ipaddress.ip_address(a).version, a)))


def _check_instance_name(name: str) -> None:
    size = len(name.encode())
    if not name or size > _INSTANCE_MAX - _RENAME_ROOM:
        raise ValueError(f"instance name must be 1 to {_INSTANCE_MAX - _RENAME_ROOM} UTF-8 bytes "
                         f"(RFC 6763 §4.1.1, with room for a '-N' rename), got {size}")
    if not name.isprintable():
        raise ValueError(f"instance name {name!r} has control characters")


def _check_txt(txt: Mapping[str, str]) -> None:
    total = 0
    for key, value in txt.items():
        size = len(f"{key}={value}".encode())
        if size > _TXT_STRING_MAX:
            raise ValueError(f"TXT entry {key!r} is {size} bytes; RFC 6763 §6.1 allows "
                             f"{_TXT_STRING_MAX} for key=value")
        total += 1 + size
    if total > _TXT_TOTAL_MAX:
        raise ValueError(f"TXT record is {total} bytes; keep it under {_TXT_TOTAL_MAX} "
                         "(RFC 6763 §6.2)")


@dataclass(frozen=True, kw_only=True)
class Advert:
    """What edged announces: where to connect and which certificate to pin, no personal data."""

    name: str
    port: int
    addresses: tuple[str, ...] = field(default_factory=host_addresses)
    fingerprint: str
    capabilities: tuple[str, ...] = ()
    model: str

    def __post_init__(self) -> None:
        object.__setattr__(self, "addresses", tuple(str(ipaddress.ip_address(a))
                                                    for a in self.addresses))
        object.__setattr__(self, "capabilities", tuple(self.capabilities))
        _check_instance_name(self.name)
        if not 1 <= self.port <= 0xFFFF:
            raise ValueError(f"port must be 1 to 65535, got {self.port}")
        if not _FP_HEX.fullmatch(self.fingerprint):
            raise ValueError("fingerprint must be 64 lower-case hex digits (SHA-256 of the "
                             "certificate DER)")
        for cap in self.capabilities:
            if not _CAPABILITY.fullmatch(cap):
                raise ValueError(f"capability {cap!r} must match {_CAPABILITY.pattern}")
        if not self.model or not self.model.isascii() or not self.model.isprintable():
            raise ValueError(f"model {self.model!r} must be printable ASCII")
        _check_txt(self.txt())

    @classmethod
    def for_certificate(cls, certificate_der: bytes, **fields: Any) -> Advert:
        """An advert pinning this DER certificate; other fields by keyword."""
        return cls(fingerprint=fingerprint_of(certificate_der), **fields)

    def txt(self) -> dict[str, str]:
        """The TXT record, exactly the keys in TXT_KEYS."""
        return {"v": PROTOCOL_VERSION, "fp": _FP_PREFIX + self.fingerprint,
                "caps": ",".join(self.capabilities), "model": self.model}


class MalformedAdvert(ValueError):
    """A service of our type whose records cannot describe a terminal (it is skipped)."""


@dataclass(frozen=True, kw_only=True)
class Terminal:
    """A terminal found by mDNS or given as a static address; `fingerprint` is what to pin."""

    name: str
    host: str
    addresses: tuple[str, ...]
    port: int
    fingerprint: str
    version: str = ""
    capabilities: tuple[str, ...] = ()
    model: str = ""
    source: str = "mdns"

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict; the fingerprint in the `sha256:<hex>` form of TXT and --static."""
        return {"name": self.name, "host": self.host, "addresses": list(self.addresses),
                "port": self.port, "fingerprint": _FP_PREFIX + self.fingerprint,
                "version": self.version, "capabilities": list(self.capabilities),
                "model": self.model, "source": self.source}


def _parse_fingerprint(text: str) -> str | None:
    if text[:len(_FP_PREFIX)].lower() != _FP_PREFIX:
        return None
    digits = text[len(_FP_PREFIX):].lower()
    return digits if _FP_HEX.fullmatch(digits) else None


def _decode_txt(properties: Mapping[bytes, bytes | None]) -> dict[str, str | None]:
    txt: dict[str, str | None] = {}
    for raw_key, raw_value in properties.items():
        try:
            key = raw_key.decode("ascii").lower()  # RFC 6763 §6.4: keys are case-insensitive
            value = None if raw_value is None else raw_value.decode("utf-8")
        except UnicodeDecodeError:
            raise MalformedAdvert("TXT entry is not text") from None
        txt.setdefault(key, value)
    return txt


def _printable(text: str, what: str, limit: int) -> str:
    if len(text) > limit or not text.isprintable():
        raise MalformedAdvert(f"{what} is not printable text of at most {limit} characters")
    return text


def _terminal_from_info(info: AsyncServiceInfo) -> Terminal:
    """Check the records of one resolved service (peer-controlled) and make a Terminal."""
    txt = _decode_txt(info.properties)
    version = txt.get("v")
    if not version:
        raise MalformedAdvert("no protocol version (v)")
    raw_fp = txt.get("fp")
    if raw_fp is None:
        raise MalformedAdvert("no certificate fingerprint (fp)")
    fingerprint = _parse_fingerprint(raw_fp)
    if fingerprint is None:
        raise MalformedAdvert(f"fingerprint is not sha256:<64 hex digits> ({len(raw_fp)} "
                              "characters)")
    caps = tuple(c for c in (txt.get("caps") or "").split(",") if c)
    if len(caps) > _MAX_CAPS:
        raise MalformedAdvert(f"more than {_MAX_CAPS} capabilities")
    for cap in caps:
        _printable(cap, "a capability", _MAX_TEXT)
    if info.port is None or not info.server:
        raise MalformedAdvert("no SRV record")
    return Terminal(
        name=_printable(info.get_name(), "the instance name", _INSTANCE_MAX),
        host=_printable(info.server, "the host name", 255),
        addresses=tuple(info.parsed_scoped_addresses()),
        port=info.port,
        fingerprint=fingerprint,
        version=_printable(version, "the protocol version", _MAX_TEXT),
        capabilities=caps,
        model=_printable(txt.get("model") or "", "the model", _TXT_STRING_MAX),
    )


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


async def browse(timeout: float = 3.0, *, interfaces: Interfaces = None,
                 ip_version: IPVersion | None = None) -> list[Terminal]:
    """Terminals that answer within `timeout` s, by name; malformed adverts skipped, logged."""
    if not 0 < timeout <= _MAX_BROWSE:
        raise ValueError(f"browse timeout must be more than 0 and at most {_MAX_BROWSE:.0f} s")
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    present: set[str] = set()
    found: dict[str, Terminal] = {}
    resolving: dict[str, asyncio.Task[None]] = {}
    aiozc = AsyncZeroconf(interfaces=InterfaceChoice.All if interfaces is None else interfaces,
                          ip_version=ip_version)

    async def resolve(name: str) -> None:
        info = AsyncServiceInfo(SERVICE_TYPE, name)
        wait_ms = max(deadline + _RESOLVE_GRACE - loop.time(), 0.1) * 1000
        try:
            # QM: answers by multicast reach us even when another mDNS stack shares port 5353
            if not await info.async_request(aiozc.zeroconf, wait_ms,
                                            question_type=DNSQuestionType.QM):
                log.warning("skipping %r: it did not answer with its records", name)
                return
            terminal = _terminal_from_info(info)
        except MalformedAdvert as exc:
            log.warning("skipping %r: %s", name, exc)
            return
        except Exception as exc:  # a peer's records must never crash a browse
            log.warning("skipping %r: %s: %s", name, type(exc).__name__, exc)
            return
        if name in present:
            found[name] = terminal

    def on_change(zeroconf: Zeroconf, service_type: str, name: str,
                  state_change: ServiceStateChange) -> None:
        if state_change is ServiceStateChange.Removed:
            present.discard(name)
            found.pop(name, None)
            return
        if name not in present and len(present) >= _MAX_TERMINALS:
            log.warning("more than %d terminals answered; ignoring %r", _MAX_TERMINALS, name)
            return
        present.add(name)
        task = resolving.get(name)
        if task is None or task.done():
            resolving[name] = loop.create_task(resolve(name))

    try:
        browser = AsyncServiceBrowser(aiozc.zeroconf, SERVICE_TYPE, handlers=[on_change],
                                      question_type=DNSQuestionType.QM)
        try:
            await asyncio.sleep(timeout)
        finally:
            await browser.async_cancel()
        pending = [t for t in resolving.values() if not t.done()]
        if pending:
            await asyncio.wait(pending, timeout=_RESOLVE_GRACE)
    finally:
        for task in resolving.values():
            task.cancel()
        if resolving:
            await asyncio.wait(list(resolving.values()))
        await aiozc.async_close()
    return sorted((found[n] for n in present if n in found),
                  key=lambda t: (t.name.lower(), t.name, t.host, t.port))


_STATIC = re.compile(r"(?P<host>\[[^\]]*\]|[^\[\]:#]+):(?P<port>[^#]*)#(?P<fp>.*)")
_HOSTNAME = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)(\.(?!-)[A-Za-z0-9-]{1,63}(?<!-))*\.?")


def parse_static(address: str) -> Terminal:
    """A Terminal to pin from `HOST:PORT#sha256:FINGERPRINT`; ValueError names what is wrong."""
    # HOST: IPv4, host name or [IPv6]; the 64 hex digits may be grouped with ':' or spaces,
    # as `openssl x509 -fingerprint -sha256` and `bifente discover` print them.
    def bad(problem: str) -> ValueError:
        return ValueError(f"static address {address!r}: {problem}; expected "
                          "HOST:PORT#sha256:FINGERPRINT (64 hex digits)")

    if "#" not in address:
        raise bad("no certificate fingerprint to pin")
    endpoint = address.split("#", 1)[0]
    if endpoint.count(":") > 1 and not endpoint.startswith("["):
        raise bad("put an IPv6 address in brackets, [ADDRESS]:PORT")
    match = _STATIC.fullmatch(address.strip())
    if match is None:
        raise bad("no HOST:PORT before '#'")
    host, port_text = match["host"], match["port"]
    addresses: tuple[str, ...] = ()  # a host name is resolved by the client
    if host.startswith("["):
        try:
            ip = ipaddress.IPv6Address(host[1:-1])
        except ValueError:
            raise bad(f"{host} is not an IPv6 address") from None
        host, addresses = str(ip), (str(ip),)
    else:
        try:
            host = str(ipaddress.IPv4Address(host))
            addresses = (host,)
        except ValueError:
            if not _HOSTNAME.fullmatch(host) or len(host) > 253:
                raise bad(f"{host!r} is not an IPv4 address or a host name") from None
    if not port_text.isdigit() or not 1 <= int(port_text) <= 0xFFFF:
        raise bad(f"port {port_text!r} is not 1 to 65535")
    prefix, digits = match["fp"][:len(_FP_PREFIX)], match["fp"][len(_FP_PREFIX):]
    fingerprint = _parse_fingerprint(prefix + re.sub(r"[\s:]", "", digits))
    if fingerprint is None:
        raise bad("the fingerprint is not sha256: followed by 64 hex digits")
    port = int(port_text)
    name = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    return Terminal(name=name, host=host, addresses=addresses, port=port,
                    fingerprint=fingerprint, source="static")
