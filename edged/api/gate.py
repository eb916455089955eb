"""Admission at accept, before TLS: caps that keep a LAN peer from starving the daemon.

Review H2: every accepted socket used to get asyncio's TLS layer (a 256 KiB read buffer) and a
WebSocket handshake before any limit applied, so 3,000 silent sockets took 1 GB. Here a raw
TCP connection is admitted (or closed at once, no TLS state allocated) by counting, per state:

- every connection, against `max_connections`;
- connections still in their TLS or WebSocket handshake, against `max_handshakes`;
- connections not (yet) known to be a paired client, against `max_unpaired` in total and
  `max_unpaired_per_prefix` per /24 (IPv4) or /64 (IPv6: one host owns a whole /64,
  RFC 4291 §2.5.4, so a per-address cap would be free to multiply).

An address that held a paired connection recently is admitted on its own small allowance, so a
flood from the rest of the LAN does not lock the clinic's own software out. The TLS layer
itself is asyncio's, with a read buffer sized for one TLS record (RFC 8446 §5.1: 2^14 bytes of
plaintext plus at most 256 of expansion and a 5-byte header) instead of 256 KiB.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import ssl
import time
from asyncio import sslproto
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Admission", "Gate", "GateLimits", "SmallBufferSSLProtocol", "prefix_of"]

log = logging.getLogger(__name__)

TLS_RECORD_BYTES = (1 << 14) + 256 + 5  # RFC 8446 §5.2: the largest TLSCiphertext
_PAIRED_MEMORY = 256  # addresses remembered as paired (least recently used dropped first)
_PAIRED_MEMORY_SECONDS = 24 * 3600.0
_REFUSAL_LOG_INTERVAL = 60.0  # one summary line per minute, however many refusals


class SmallBufferSSLProtocol(sslproto.SSLProtocol):
    """asyncio's TLS protocol with a read buffer of one TLS record instead of 256 KiB."""

    max_size = TLS_RECORD_BYTES

    def __init__(self, *args: Any, on_lost: Callable[[], None], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._on_lost = on_lost

    def connection_lost(self, exc: BaseException | None) -> None:
        """The socket is gone, whether or not the handshake finished: free the admission."""
        try:
            super().connection_lost(exc)
        finally:
            self._on_lost()


def prefix_of(address: str) -> str:
    """The unit the per-peer caps count: an IPv4 /24 or an IPv6 /64."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    bits = 24 if ip.version == 4 else 64
    return str(ipaddress.ip_network(f"{ip}/{bits}", strict=False))


@dataclass(frozen=True)
class GateLimits:
    """The caps (the [server] section of the config)."""

    max_connections: int = 256
    max_handshakes: int = 32
    max_unpaired: int = 64
    max_unpaired_per_prefix: int = 8
    max_per_paired_address: int = 16
    handshake_timeout: float = 10.0


@dataclass
class Admission:
    """One admitted socket: its address, and which budgets it currently takes."""

    address: str
    prefix: str
    known_paired: bool  # admitted on the paired-address allowance
    handshaking: bool = True
    unpaired: bool = True
    released: bool = False


@dataclass
class _Refusals:
    counts: dict[str, int] = field(default_factory=dict)
    since: float = 0.0


class Gate:
    """Counts admissions and refuses beyond the caps; every method runs on the event loop."""

    def __init__(self, limits: GateLimits, clock: Callable[[], float] = time.monotonic) -> None:
        self.limits = limits
        self.clock = clock
        self.total = 0
        self.handshakes = 0
        self.unpaired = 0
        self.paired_handshakes = 0
        self._per_prefix: dict[str, int] = {}
        self._per_paired_address: dict[str, int] = {}
        self._paired_addresses: OrderedDict[str, float] = OrderedDict()
        self._refusals = _Refusals(since=clock())

    # -- the decisions -----------------------------------------------------------------------
    def admit(self, address: str) -> Admission | None:
        """An admission for a new socket from `address`, or None (close it now, no TLS)."""
        lim = self.limits
        if self.total >= lim.max_connections:
            return self._refuse("max_connections")
        if self._is_known_paired(address):
            if self._per_paired_address.get(address, 0) >= lim.max_per_paired_address:
                return self._refuse("per_paired_address")
            self._per_paired_address[address] = self._per_paired_address.get(address, 0) + 1
            self.total += 1
            self.paired_handshakes += 1
            return Admission(address, prefix_of(address), known_paired=True)
        prefix = prefix_of(address)
        if self.handshakes >= lim.max_handshakes:
            return self._refuse("max_handshakes")
        if self.unpaired >= lim.max_unpaired:
            return self._refuse("max_unpaired")
        if self._per_prefix.get(prefix, 0) >= lim.max_unpaired_per_prefix:
            return self._refuse("max_unpaired_per_prefix")
        self.total += 1
        self.handshakes += 1
        self.unpaired += 1
        self._per_prefix[prefix] = self._per_prefix.get(prefix, 0) + 1
        return Admission(address, prefix, known_paired=False)

    def handshake_done(self, adm: Admission) -> None:
        """TLS and WebSocket handshakes finished: the socket no longer takes a handshake slot."""
        if adm.released or not adm.handshaking:
            return
        adm.handshaking = False
        if adm.known_paired:
            self.paired_handshakes -= 1
        else:
            self.handshakes -= 1

    def paired(self, adm: Admission) -> None:
        """The peer proved a paired certificate: leave the unpaired budgets, remember it."""
        self.handshake_done(adm)
        self._paired_addresses[adm.address] = self.clock()
        self._paired_addresses.move_to_end(adm.address)
        while len(self._paired_addresses) > _PAIRED_MEMORY:
            self._paired_addresses.popitem(last=False)
        if adm.released or not adm.unpaired:
            return
        adm.unpaired = False
        if not adm.known_paired:
            self._leave_unpaired(adm)

    def release(self, adm: Admission) -> None:
        """The socket closed (idempotent)."""
        if adm.released:
            return
        self.handshake_done(adm)
        adm.released = True
        self.total -= 1
        if adm.known_paired:
            left = self._per_paired_address.get(adm.address, 1) - 1
            if left:
                self._per_paired_address[adm.address] = left
            else:
                self._per_paired_address.pop(adm.address, None)
        elif adm.unpaired:
            self._leave_unpaired(adm)

    def _leave_unpaired(self, adm: Admission) -> None:
        self.unpaired -= 1
        left = self._per_prefix.get(adm.prefix, 1) - 1
        if left:
            self._per_prefix[adm.prefix] = left
        else:
            self._per_prefix.pop(adm.prefix, None)  # the table never outgrows the sockets

    def _is_known_paired(self, address: str) -> bool:
        seen = self._paired_addresses.get(address)
        if seen is None:
            return False
        if self.clock() - seen > _PAIRED_MEMORY_SECONDS:
            del self._paired_addresses[address]
            return False
        return True

    def _refuse(self, why: str) -> None:
        # The first refusal of a burst, then one summary line a minute with counts: a flood
        # must not become a log flood (review L2).
        refusals, now = self._refusals, self.clock()
        if not refusals.counts:
            log.warning("refusing connections at accept (%s): open %d, handshaking %d, "
                        "unpaired %d", why, self.total, self.handshakes, self.unpaired)
            refusals.since = now
        refusals.counts[why] = refusals.counts.get(why, 0) + 1
        if now - refusals.since >= _REFUSAL_LOG_INTERVAL:
            log.warning("connections refused at accept in the last %.0f s: %s", now -
                        refusals.since, ", ".join(f"{k} {v}" for k, v in
                                                  sorted(refusals.counts.items())))
            refusals.counts.clear()
        return None

    def stats(self) -> dict[str, int]:
        """The counters (for tests, benchmarks and logs)."""
        return {"open": self.total, "handshaking": self.handshakes + self.paired_handshakes,
                "unpaired": self.unpaired, "prefixes": len(self._per_prefix)}


def start_tls(gate: Gate, transport: asyncio.Transport, app_protocol: asyncio.Protocol,
              context: ssl.SSLContext) -> Admission | None:
    """Admit the raw socket and put TLS under `app_protocol`, or close it (None)."""
    peer = transport.get_extra_info("peername")
    address = str(peer[0]) if peer else "unknown"
    adm = gate.admit(address)
    if adm is None:
        transport.abort()  # RST, no TLS state ever allocated
        return None
    loop = asyncio.get_running_loop()
    tls = SmallBufferSSLProtocol(
        loop, app_protocol, context, None, server_side=True,
        ssl_handshake_timeout=gate.limits.handshake_timeout, ssl_shutdown_timeout=5.0,
        on_lost=lambda: gate.release(adm))
    # What loop.start_tls does, before any byte was read (the reader starts on the next tick).
    transport.set_protocol(tls)
    tls.connection_made(transport)
    return adm
