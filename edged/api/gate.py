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
import logging
import socket
import ssl
import struct
import time
from asyncio import sslproto
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from bifente.edged.peers import prefix_of

__all__ = ["Acceptor", "Admission", "Gate", "GateLimits", "SmallBufferSSLProtocol", "prefix_of",
           "start_tls"]

log = logging.getLogger(__name__)

TLS_RECORD_BYTES = (1 << 14) + 256 + 5  # RFC 8446 §5.2: the largest TLSCiphertext
_PAIRED_MEMORY = 256  # addresses remembered as paired (least recently used dropped first)
_PAIRED_MEMORY_SECONDS = 24 * 3600.0
_REFUSAL_LOG_INTERVAL = 60.0  # one summary line per minute, however many refusals
_ACCEPT_BATCH = 128  # sockets accepted per wake-up (asyncio's default backlog is 100)


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
            self._refuse("max_connections")
            return None
        if self._is_known_paired(address):
            if self._per_paired_address.get(address, 0) >= lim.max_per_paired_address:
                self._refuse("per_paired_address")
                return None
            self._per_paired_address[address] = self._per_paired_address.get(address, 0) + 1
            self.total += 1
            self.paired_handshakes += 1
            return Admission(address, prefix_of(address), known_paired=True)
        prefix = prefix_of(address)
        if self.handshakes >= lim.max_handshakes:
            self._refuse("max_handshakes")
            return None
        if self.unpaired >= lim.max_unpaired:
            self._refuse("max_unpaired")
            return None
        if self._per_prefix.get(prefix, 0) >= lim.max_unpaired_per_prefix:
            self._refuse("max_unpaired_per_prefix")
            return None
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


class Acceptor:
    """Accepts on the listening socket itself: a refused socket is reset before asyncio or
    websockets build anything for it (a flood of refusals stays cheap)."""

    def __init__(self, sock: socket.socket, gate: Gate,
                 on_admitted: Callable[[socket.socket, Admission], None]) -> None:
        self.sock = sock
        self.gate = gate
        self.on_admitted = on_admitted
        self._loop: asyncio.AbstractEventLoop | None = None
        self._reading = False
        self._resume: asyncio.TimerHandle | None = None

    def start(self) -> None:
        """Start accepting (on the running loop)."""
        self._resume = None
        self._loop = asyncio.get_running_loop()
        self.sock.setblocking(False)
        self._loop.add_reader(self.sock.fileno(), self._ready)
        self._reading = True

    def stop(self) -> None:
        """Stop accepting (the socket itself is closed by its owner); idempotent."""
        if self._resume is not None:
            self._resume.cancel()
            self._resume = None
        if self._reading and self._loop is not None:
            self._loop.remove_reader(self.sock.fileno())
        self._reading = False

    def _ready(self) -> None:
        for _ in range(_ACCEPT_BATCH):
            try:
                conn, peer = self.sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                # Out of descriptors or buffers: pause a second instead of spinning.
                log.warning("accept failed (%s); pausing for a second", exc.strerror or exc)
                self.stop()
                assert self._loop is not None
                self._resume = self._loop.call_later(1.0, self.start)
                return
            adm = self.gate.admit(str(peer[0]))
            if adm is None:
                # SO_LINGER 0: close sends a RST and frees the socket now, no TIME_WAIT.
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                conn.close()
                continue
            conn.setblocking(False)
            self.on_admitted(conn, adm)


def start_tls(gate: Gate, adm: Admission, transport: asyncio.Transport,
              app_protocol: asyncio.Protocol, context: ssl.SSLContext) -> None:
    """Put TLS between an admitted socket's transport and `app_protocol`."""
    loop = asyncio.get_running_loop()
    tls = SmallBufferSSLProtocol(
        loop, app_protocol, context, None, server_side=True,
        ssl_handshake_timeout=gate.limits.handshake_timeout, ssl_shutdown_timeout=5.0,
        on_lost=lambda: gate.release(adm))
    # What loop.start_tls does, before any byte was read (the reader starts on the next tick).
    transport.set_protocol(tls)
    tls.connection_made(transport)
