"""HTTP plumbing of the reference DMP host: stdlib ThreadingHTTPServer + ssl, a small router.

Handlers take a `Request` and return a `Response`. The body is read only when a handler asks
for it (after authentication), capped, and in full: a transfer that ends early raises
Refused(transfer_incomplete) before anything is registered. Logs name the route pattern, never
the path (it holds the patient's INS).
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import socket
import ssl
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from bifente.simulators.dmp.codes import Reason, Refused, status_of

__all__ = ["HttpServer", "Request", "Response", "Route", "Router", "error_response",
           "json_response"]

log = logging.getLogger("bifente.simulators.dmp")

MAX_JSON_BODY = 64 * 1024
READ_TIMEOUT = 30.0


@dataclass
class Response:
    """What a handler answers."""

    status: int
    body: bytes = b""
    content_type: str = "application/json; charset=utf-8"
    headers: dict[str, str] = field(default_factory=dict)


def json_response(status: int, payload: object) -> Response:
    """A JSON response."""
    return Response(status, json.dumps(payload, ensure_ascii=False).encode("utf-8"))


def error_response(refusal: Refused) -> Response:
    """The JSON error body every refusal is answered with."""
    error: dict[str, object] = {"reason": refusal.told.value,
                                "message": refusal.message if refusal.told is refusal.reason
                                else refusal.told.value.replace("_", " ")}
    if refusal.details:
        error["details"] = refusal.details
    return json_response(status_of(refusal.told), {"error": error})


class Request:
    """One HTTP request; the body is read on demand through `body()` / `json()`."""

    def __init__(self, handler: _Handler, method: str, path: str, query: dict[str, list[str]],
                 params: dict[str, str]) -> None:
        self._handler = handler
        self.method = method
        self.path = path
        self.query = query
        self.params = params
        self.headers: Message = handler.headers
        self.peer = handler.client_address[0]
        self._body: bytes | None = None

    def header(self, name: str) -> str | None:
        """A request header, or None."""
        return self.headers.get(name)

    def arg(self, name: str, default: str | None = None) -> str | None:
        """A query parameter (the last one given)."""
        values = self.query.get(name)
        return values[-1] if values else default

    def bearer(self) -> str | None:
        """The token of an `Authorization: Bearer` header."""
        value = self.headers.get("Authorization", "")
        scheme, _, token = value.partition(" ")
        return token.strip() or None if scheme.lower() == "bearer" else None

    @property
    def body_read(self) -> bool:
        """True once the body has been consumed (the connection can be kept)."""
        return self._body is not None

    def body(self, limit: int) -> bytes:
        """The whole body (Refused too_large / length_required / transfer_incomplete)."""
        if self._body is not None:
            return self._body
        if self.headers.get("Transfer-Encoding"):
            raise Refused(Reason.LENGTH_REQUIRED, "send a Content-Length (no chunked bodies)")
        try:
            length = int(self.headers.get("Content-Length", "0"))
        except ValueError:
            raise Refused(Reason.BAD_REQUEST, "bad Content-Length") from None
        if length < 0:
            raise Refused(Reason.BAD_REQUEST, "bad Content-Length")
        if length > limit:
            raise Refused(Reason.TOO_LARGE, f"the body may be at most {limit} bytes")
        chunks, got = [], 0
        while got < length:
            try:
                chunk = self._handler.rfile.read(min(length - got, 1 << 20))
            except (OSError, ssl.SSLError):
                chunk = b""
            if not chunk:
                self._handler.close_connection = True
                raise Refused(Reason.TRANSFER_INCOMPLETE,
                              f"the body ended after {got} of {length} bytes")
            chunks.append(chunk)
            got += len(chunk)
        self._body = b"".join(chunks)
        return self._body

    def json(self, limit: int = MAX_JSON_BODY) -> dict[str, object]:
        """The body as a JSON object (Refused bad_request otherwise)."""
        raw = self.body(limit)
        try:
            value = json.loads(raw or b"{}")
        except (ValueError, UnicodeDecodeError):
            raise Refused(Reason.BAD_REQUEST, "the body is not JSON") from None
        if not isinstance(value, dict):
            raise Refused(Reason.BAD_REQUEST, "the body must be a JSON object")
        return value


Handler = Callable[[Request], Response]


@dataclass(frozen=True)
class Route:
    """A method + pattern (`/api/dmp/{ins}`, `{name:path}` for the rest) and its handler."""

    method: str
    pattern: str
    handler: Handler
    regex: re.Pattern[str]


class Router:
    """Routes in registration order; the JSON API and, later, the patient pages share it."""

    def __init__(self) -> None:
        self.routes: list[Route] = []

    def add(self, method: str, pattern: str, handler: Handler) -> None:
        """Register a handler."""
        parts = re.split(r"\{(\w+)(:path)?\}", pattern)
        regex = ""
        for i in range(0, len(parts), 3):
            regex += re.escape(parts[i])
            if i + 1 < len(parts):
                regex += f"(?P<{parts[i + 1]}>{'.+' if parts[i + 2] else '[^/]+'})"
        self.routes.append(Route(method, pattern, handler, re.compile(f"^{regex}$")))

    def match(self, method: str, path: str) -> tuple[Route, dict[str, str]]:
        """The route and its parameters (Refused not_found / method_not_allowed)."""
        allowed = False
        for route in self.routes:
            m = route.regex.match(path)
            if m:
                if route.method == method:
                    return route, m.groupdict()
                allowed = True
        raise Refused(Reason.METHOD_NOT_ALLOWED if allowed else Reason.NOT_FOUND)


class _Handler(BaseHTTPRequestHandler):
    server: HttpServer
    _headers_buffer: list[bytes]  # BaseHTTPRequestHandler's own, which typeshed leaves out
    protocol_version = "HTTP/1.1"
    server_version = "bifente-dmp-host"
    sys_version = ""
    timeout = READ_TIMEOUT

    def setup(self) -> None:
        self.request.settimeout(self.timeout)
        self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # no 40 ms stalls
        if isinstance(self.request, ssl.SSLSocket):
            self.request.do_handshake()  # here, in the connection's thread, not in accept()
        super().setup()
        self.server.track(self.request, True)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.track(self.request, False)

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass  # logged in _dispatch with the route pattern (the path holds the INS)

    def log_error(self, format: str, *args: object) -> None:
        log.debug("http: " + format, *args)

    def _dispatch(self) -> None:
        split = urlsplit(self.path)
        pattern = "?"
        request: Request | None = None
        try:
            route, params = self.server.router.match(self.command, split.path)
            pattern = route.pattern
            request = Request(self, self.command, split.path, parse_qs(split.query), params)
            response = route.handler(request)
        except Refused as refusal:
            response = error_response(refusal)
        except Exception:
            log.exception("dmp host: %s %s failed", self.command, pattern)
            response = error_response(Refused(Reason.INTERNAL_ERROR, "internal error"))
        unread = request is None or not request.body_read
        if unread and self.headers.get("Content-Length", "0") not in ("", "0"):
            self.close_connection = True  # an unread body would be taken for a request
        log.info("%s %s -> %d", self.command, pattern, response.status)
        try:
            self.send_response(response.status)
            self.send_header("Content-Type", response.content_type)
            self.send_header("Content-Length", str(len(response.body)))
            self.send_header("Cache-Control", "no-store")
            for name, value in response.headers.items():
                self.send_header(name, value)
            if self.close_connection:
                self.send_header("Connection", "close")
            self._headers_buffer.append(b"\r\n" + response.body)  # one write: headers + body
            self.flush_headers()
        except (OSError, ssl.SSLError):
            self.close_connection = True  # the client went away

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _dispatch


class HttpServer(ThreadingHTTPServer):
    """A threaded HTTPS server that can close its open connections on stop."""

    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], router: Router,
                 context: ssl.SSLContext) -> None:
        super().__init__(address, _Handler)
        self.router = router
        self.socket = context.wrap_socket(self.socket, server_side=True,
                                          do_handshake_on_connect=False)
        self._open: set[socket.socket] = set()
        self._open_lock = threading.Lock()

    def track(self, sock: socket.socket, opened: bool) -> None:
        """Remember open connections so `close_all` can end them."""
        with self._open_lock:
            (self._open.add if opened else self._open.discard)(sock)

    def close_all(self) -> None:
        """Shut every open connection down (keep-alive clients included)."""
        with self._open_lock:
            for sock in list(self._open):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
            self._open.clear()

    def process_request(self, request: Any, client_address: Any) -> None:
        """Serve one connection in its own thread, named so a leak report says whose it is."""
        threading.Thread(target=self.process_request_thread, args=(request, client_address),
                         name=f"dmp-host-conn {client_address[1]}", daemon=True).start()

    def handle_error(self, request: object, client_address: object) -> None:
        log.debug("dmp host: connection from %s dropped", client_address, exc_info=True)
