"""A TCP proxy in front of an HTTPS host that misbehaves on demand (TEST ONLY).

Each new connection takes the proxy's `mode` at the moment it is accepted:

- `pass`: bytes forwarded both ways, untouched;
- `reset`: closed at once with a TCP reset (the host is down);
- `stall`: accepted and read, never answered (a host that hangs: the client times out);
- `gateway_503`: TLS ended here with the host's own certificate (a load balancer in front of
  the host) and `503 Service Unavailable` answered with an HTML page, as a gateway does when
  the host behind it is down (RFC 9110 §15.6.4);
- `wrong_cert`: TLS ended here with a certificate no client trusts (someone else's server,
  or a man in the middle);
- `abort_handshake`: the client's hello read, then the connection closed mid-handshake.

`seen` counts the connections per mode. Threads only; `close()` ends every connection.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import socket
import ssl
import struct
import threading
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

__all__ = ["MODES", "FaultProxy"]

MODES = ("pass", "reset", "stall", "gateway_503", "wrong_cert", "abort_handshake")
_PAGE = b"<html><body><h1>503 Service Temporarily Unavailable</h1></body></html>\n"


def _untrusted_context(folder: Path) -> ssl.SSLContext:
    """A server context with a self-signed certificate for 127.0.0.1 / dmp.test."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "dmp.test")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(hours=1))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([
                x509.DNSName("dmp.test"), x509.DNSName("localhost")]), critical=False)
            .sign(key, hashes.SHA256()))
    folder.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = folder / "untrusted.crt.pem", folder / "untrusted.key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert_path, key_path)
    return ctx


class FaultProxy:
    """Listens on 127.0.0.1; forwards to `upstream` or misbehaves as `mode` says."""

    def __init__(self, upstream: tuple[str, int], *, host_chain: Path, host_key: Path,
                 workdir: Path, mode: str = "pass") -> None:
        self.upstream = upstream
        self.mode = mode
        self.seen: Counter[str] = Counter()
        self._gateway = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self._gateway.load_cert_chain(host_chain, host_key)
        self._untrusted = _untrusted_context(workdir)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._open: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._threads: list[threading.Thread] = []
        self._spawn(self._accept, "fault-proxy")

    @property
    def port(self) -> int:
        """The port clients connect to."""
        return int(self._listener.getsockname()[1])

    @property
    def url(self) -> str:
        """https://127.0.0.1:PORT."""
        return f"https://127.0.0.1:{self.port}"

    def set_mode(self, mode: str) -> None:
        """The fault for the connections accepted from now on."""
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}")
        self.mode = mode

    def close(self) -> None:
        """Stop accepting, end every connection, and wait for the threads."""
        self._closed.set()
        # shutdown() wakes a thread blocked in accept() or recv(); close() alone does not.
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)
        with self._lock:
            for sock in list(self._open):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
        for thread in list(self._threads):
            thread.join(timeout=5)
        with contextlib.suppress(OSError):
            self._listener.close()

    def _spawn(self, target: Callable[..., None], name: str, *args: object) -> None:
        thread = threading.Thread(target=target, args=args, name=name, daemon=True)
        self._threads.append(thread)
        thread.start()

    # -- connections ---------------------------------------------------------------------
    def _track(self, sock: socket.socket) -> socket.socket:
        with self._lock:
            self._open.add(sock)
        return sock

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            mode = self.mode
            self.seen[mode] += 1
            self._spawn(self._serve, f"fault-proxy {mode}", self._track(conn), mode)

    def _serve(self, conn: socket.socket, mode: str) -> None:
        try:
            if mode == "pass":
                self._forward(conn)
            elif mode == "reset":
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            elif mode == "stall":
                while not self._closed.is_set() and conn.recv(65536):
                    pass
            elif mode == "abort_handshake":
                conn.recv(65536)  # the ClientHello, then nothing
            elif mode == "wrong_cert":
                with contextlib.suppress(ssl.SSLError, OSError):
                    self._untrusted.wrap_socket(conn, server_side=True).close()
            elif mode == "gateway_503":
                self._answer_503(conn)
        except OSError:
            pass
        finally:
            with self._lock:
                self._open.discard(conn)
            with contextlib.suppress(OSError):
                conn.close()

    def _answer_503(self, conn: socket.socket) -> None:
        tls = self._gateway.wrap_socket(conn, server_side=True)
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = tls.recv(65536)
            if not chunk:
                return
            head += chunk
        # The whole request is read first: closing on unread bytes would reset the answer.
        head, _, body = head.partition(b"\r\n\r\n")
        length = next((int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                       if line.lower().startswith(b"content-length:")), 0)
        while len(body) < length:
            chunk = tls.recv(65536)
            if not chunk:
                return
            body += chunk
        tls.sendall(b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/html\r\n"
                    b"Retry-After: 1\r\nConnection: close\r\n"
                    b"Content-Length: " + str(len(_PAGE)).encode() + b"\r\n\r\n" + _PAGE)
        with contextlib.suppress(ssl.SSLError, OSError):
            tls.unwrap()

    def _forward(self, conn: socket.socket) -> None:
        up = self._track(socket.create_connection(self.upstream, timeout=10))
        up.settimeout(None)

        def pipe(src: socket.socket, dst: socket.socket) -> None:
            with contextlib.suppress(OSError):
                while data := src.recv(65536):
                    dst.sendall(data)
            with contextlib.suppress(OSError):
                dst.shutdown(socket.SHUT_WR)

        back = threading.Thread(target=pipe, args=(up, conn), name="fault-proxy back",
                                daemon=True)
        back.start()
        pipe(conn, up)
        back.join(timeout=10)
        with self._lock:
            self._open.discard(up)
        up.close()
