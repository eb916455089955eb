"""Put a simulated card into a vpcd virtual reader, as if it were inserted in that slot.

vpcd (vsmartcard) listens on TCP 35963 for reader "Virtual PCD 00 00" and 35964 for
"Virtual PCD 00 01". The card connects as a client; every message is a 2-byte big-endian
length and a payload. A 1-byte payload is a control code (00 power off, 01 power on,
02 reset, 04 get ATR, the only one answered); anything else is an APDU (TOOLCHAIN.md).
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
from typing import Protocol

__all__ = ["SLOT_PORTS", "VpcdBridge"]

log = logging.getLogger(__name__)

SLOT_PORTS = (35963, 35964)
_POWER_OFF, _POWER_ON, _RESET, _GET_ATR = 0x00, 0x01, 0x02, 0x04
MAX_APDU = 65535 + 9  # vpcd drops the card beyond 65535 bytes of data anyway


class PoweredCard(Protocol):
    """What the bridge needs from a simulated card."""

    atr: bytes

    def transmit(self, raw: bytes) -> bytes: ...
    def power_on(self) -> bytes: ...
    def power_off(self) -> None: ...


class VpcdBridge:
    """One simulated card in one vpcd slot; `insert()` and `remove()` as often as needed."""

    def __init__(self, card: PoweredCard, *, slot: int = 0, host: str = "127.0.0.1",
                 port: int | None = None) -> None:
        self.card = card
        self.host = host
        self.port = port if port is not None else SLOT_PORTS[slot]
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        # Fault injection for tests: vanish (close without answering) at this APDU number.
        self.vanish_at_apdu: int | None = None
        self.apdus = 0

    @property
    def inserted(self) -> bool:
        """True while the card is connected to vpcd."""
        return self._sock is not None

    def insert(self, timeout: float = 5.0) -> None:
        """Connect to vpcd: pcscd then sees a card in the slot (within its ~0.4 s poll)."""
        if self._sock is not None:
            return
        sock = socket.create_connection((self.host, self.port), timeout=timeout)
        sock.settimeout(None)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._sock = sock
        self._thread = threading.Thread(target=self._serve, args=(sock,), daemon=True,
                                        name=f"vpcd-{self.port}")
        self._thread.start()

    def remove(self) -> None:
        """Pull the card: close the connection; the card loses power (and its PIN state)."""
        sock, self._sock = self._sock, None
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)
        self._thread = None
        with self._lock:
            self.card.power_off()

    close = remove

    def _recv_exact(self, sock: socket.socket, n: int) -> bytes | None:
        buf = bytearray()
        while len(buf) < n:
            # vpcd sends the length and the payload in two segments; without QUICKACK the
            # delayed ACK costs ~44 ms per APDU (TOOLCHAIN.md, latency trap).
            if hasattr(socket, "TCP_QUICKACK"):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)
            chunk = sock.recv(n - len(buf))
            if not chunk:
                return None
            buf += chunk
        return bytes(buf)

    def _serve(self, sock: socket.socket) -> None:
        try:
            while True:
                head = self._recv_exact(sock, 2)
                if head is None:
                    return
                size = int.from_bytes(head, "big")
                if size > MAX_APDU:
                    log.warning("vpcd sent an oversized message (%d bytes); dropping", size)
                    return
                payload = self._recv_exact(sock, size) if size else b""
                if payload is None:
                    return
                answer = self._handle(payload)
                if answer is None:
                    continue
                if answer is _VANISH:
                    log.info("slot %d: card vanishes mid-command (fault injection)", self.port)
                    # Gone before pcscd can report it gone: else an insert() in that window
                    # still finds this socket, keeps it, and the card never comes back.
                    if self._sock is sock:
                        self._sock = None
                    sock.shutdown(socket.SHUT_RDWR)
                    return
                sock.sendall(len(answer).to_bytes(2, "big") + answer)
        except OSError:
            return
        finally:
            if self._sock is sock:
                self._sock = None
            sock.close()

    def _handle(self, payload: bytes) -> bytes | None:
        with self._lock:
            if len(payload) == 1:
                code = payload[0]
                if code == _POWER_OFF:
                    self.card.power_off()
                elif code in (_POWER_ON, _RESET):
                    self.card.power_on()
                elif code == _GET_ATR:
                    return self.card.atr
                return None
            self.apdus += 1
            if self.vanish_at_apdu is not None and self.apdus >= self.vanish_at_apdu:
                self.vanish_at_apdu = None
                return _VANISH
            return self.card.transmit(payload)


_VANISH = b"\x00vanish"
