"""The bridge: a loopback WebSocket for web pages, forwarding to edged over the paired mTLS link.

A page connects to ws://127.0.0.1:PORT/ offering the subprotocols `bifente.v1` and
`bifente-token.<token>`. The handshake is refused (HTTP 403, no body) unless:
- the Host header names this loopback listener (a DNS-rebinding page names its own host);
- the Origin header is on the allow-list and the token is that origin's token.

Each accepted page gets its own upstream connection to edged with the bridge's pairing, so
its events and in-flight calls are its own. Requests are parsed and filtered before they
are forwarded: pairing is the bridge's business (pair.* never passes), and a method passes
only when the origin was granted one of its scopes. Answers and events come back verbatim.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import tempfile
from http import HTTPStatus
from pathlib import Path
from typing import Any

from websockets.asyncio.client import ClientConnection
from websockets.asyncio.client import connect as ws_connect
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response
from websockets.typing import Subprotocol

from bifente.client import Credentials
from bifente.client.tls import check_pinned, pinned_ssl_context
from bifente.edged.api.methods import METHODS
from bifente.edged.bridge.allowlist import Allowed, AllowList

__all__ = ["BRIDGE_PROTOCOL", "DEFAULT_PORT", "TOKEN_PREFIX", "Bridge", "method_allowed"]

log = logging.getLogger(__name__)

DEFAULT_PORT = 47443
BRIDGE_PROTOCOL = "bifente.v1"
TOKEN_PREFIX = "bifente-token."  # noqa: S105 (a prefix, not a secret)
MAX_MESSAGE = 2 << 20  # edged's own hard limit (twice max_message_bytes)
LOOPBACK = ("127.0.0.1", "::1")
FORBIDDEN, METHOD_NOT_FOUND, INVALID_REQUEST, PARSE_ERROR = -32001, -32601, -32600, -32700


def method_allowed(name: str, scopes: tuple[str, ...]) -> tuple[bool, str]:
    """May a page with these scopes call this method? (allowed, why not).

    rpc.discover and methods for any paired client (system.info) pass; pair.* and unknown
    methods never do; others need one of their scopes in the origin's grant.
    """
    if name == "rpc.discover":
        return True, ""
    method = METHODS.get(name)
    if method is None or method.unpaired:
        return False, "not available through the bridge"
    if method.scopes and not method.scopes & set(scopes):
        return False, "this web origin lacks the scope"
    return True, ""


def _error(request_id: Any, code: int, message: str, reason: str, **data: Any) -> str:
    return json.dumps({"jsonrpc": "2.0", "id": request_id, "error": {
        "code": code, "message": message, "data": {"reason": reason, **data}}})


def _tokens(headers: Headers) -> list[str]:
    offered = ",".join(headers.get_all("Sec-WebSocket-Protocol"))
    return [p.strip()[len(TOKEN_PREFIX):] for p in offered.split(",")
            if p.strip().startswith(TOKEN_PREFIX)]


class Bridge:
    """Serves pages on loopback; one upstream mTLS connection to edged per page."""

    def __init__(self, credentials: Credentials, allowlist: AllowList, *,
                 host: str = "127.0.0.1", port: int = DEFAULT_PORT) -> None:
        if host not in LOOPBACK:
            raise ValueError("the bridge listens on loopback only (127.0.0.1 or ::1)")
        self.credentials = credentials
        self.allowlist = allowlist
        self.host, self.port = host, port
        self._server: Server | None = None
        self._tmp = tempfile.TemporaryDirectory(prefix="bifente-bridge-")
        self._context = self._ssl_context()

    def _ssl_context(self) -> Any:
        # ssl loads a client certificate from files only: a private temp dir, kept while serving.
        folder = Path(self._tmp.name)
        cert, key = folder / "client.crt", folder / "client.key"
        cert.write_text(self.credentials.certificate_pem)
        key.touch(mode=0o600)
        key.write_text(self.credentials.key_pem)
        return pinned_ssl_context(self.credentials.fingerprint, client_cert=cert, client_key=key)

    async def start(self) -> int:
        """Listen; returns the port actually bound."""
        self._server = await serve(
            self._serve_page, self.host, self.port, process_request=self._check,
            select_subprotocol=lambda _conn, offered: Subprotocol(BRIDGE_PROTOCOL)
            if BRIDGE_PROTOCOL in offered else None,
            max_size=MAX_MESSAGE, server_header=None, ping_interval=20, ping_timeout=20)
        self.port = self._server.sockets[0].getsockname()[1]
        return self.port

    async def close(self) -> None:
        """Stop listening and close every page (idempotent)."""
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        self._tmp.cleanup()

    def _refuse(self, conn: ServerConnection, why: str, origin: str | None) -> Response:
        log.warning("refused a page from %s: %s", origin or "no origin", why)
        return conn.respond(HTTPStatus.FORBIDDEN, "")

    def _check(self, conn: ServerConnection, request: Request) -> Response | None:
        """The handshake gate: Host, Origin, token. None lets the handshake go on."""
        headers = request.headers
        origins, hosts = headers.get_all("Origin"), headers.get_all("Host")
        origin = origins[0] if len(origins) == 1 else None
        host = hosts[0].lower() if len(hosts) == 1 else ""
        if host not in {f"{name}:{self.port}" for name in ("127.0.0.1", "localhost", "[::1]")}:
            return self._refuse(conn, f"Host {host!r} is not this bridge", ", ".join(origins))
        if not origin:
            return self._refuse(conn, "not exactly one Origin header", origin)
        tokens = _tokens(headers)
        try:
            entry = self.allowlist.check(origin, tokens[0] if len(tokens) == 1 else None)
        except ValueError as exc:  # a damaged allow-list allows nobody
            return self._refuse(conn, str(exc), origin)
        if entry is None:
            return self._refuse(conn, "origin not allowed, or wrong token", origin)
        if BRIDGE_PROTOCOL not in {p.strip() for p in
                                   ",".join(headers.get_all("Sec-WebSocket-Protocol")).split(",")}:
            return self._refuse(conn, f"subprotocol {BRIDGE_PROTOCOL} not offered", origin)
        return None

    async def _open_upstream(self) -> ClientConnection:
        c = self.credentials
        host = f"[{c.host}]" if ":" in c.host else c.host
        ws = await asyncio.wait_for(ws_connect(
            f"wss://{host}:{c.port}/", ssl=self._context, server_hostname=c.host,
            max_size=MAX_MESSAGE * 2, ping_interval=20, ping_timeout=20), 10)
        check_pinned(ws.transport.get_extra_info("ssl_object"), c.fingerprint)
        return ws

    async def _serve_page(self, page: ServerConnection) -> None:
        origin = page.request.headers.get("Origin", "") if page.request else ""
        try:
            entry = self.allowlist.check(origin, (_tokens(page.request.headers) or [""])[0]
                                         if page.request else None)
        except ValueError:
            entry = None
        if entry is None:  # revoked (or the allow-list damaged) between the gate and here
            await page.close(1008, "origin not allowed")
            return
        try:
            upstream = await self._open_upstream()
        except (OSError, TimeoutError) as exc:
            log.warning("cannot reach the terminal for %s: %s", origin, exc)
            await page.close(1011, "terminal unreachable")
            return
        log.info("page from %s connected (scopes %s)", entry.origin, ", ".join(entry.scopes))
        down = asyncio.ensure_future(self._downstream(upstream, page))
        try:
            await self._upstream(page, upstream, entry)
        finally:
            down.cancel()
            with contextlib.suppress(asyncio.CancelledError, ConnectionClosed):
                await down
            await upstream.close()
            log.info("page from %s left", entry.origin)

    async def _upstream(self, page: ServerConnection, upstream: ClientConnection,
                        entry: Allowed) -> None:
        """Page -> edged: parse, filter by the origin's scopes, forward the original text."""
        with contextlib.suppress(ConnectionClosed):
            async for raw in page:
                try:
                    current = self.allowlist.entries().get(entry.origin)
                except ValueError:
                    current = None
                if current is None or current.token_sha256 != entry.token_sha256:
                    await page.close(1008, "origin no longer allowed")  # revoked or re-keyed
                    return
                answer = self._filter(raw, entry)
                if answer is None:
                    await upstream.send(raw)
                elif answer:
                    await page.send(answer)

    def _filter(self, raw: str | bytes, entry: Allowed) -> str | None:
        """None to forward; else the error to answer ('' to drop a refused notification)."""
        if isinstance(raw, bytes):
            return _error(None, INVALID_REQUEST, "text messages only", "invalid_request")
        try:
            message = json.loads(raw)
        except ValueError:
            return _error(None, PARSE_ERROR, "parse error: the message is not JSON",
                          "parse_error")
        if not isinstance(message, dict) or not isinstance(message.get("method"), str):
            return _error(message.get("id") if isinstance(message, dict) else None,
                          INVALID_REQUEST, "not a JSON-RPC 2.0 request", "invalid_request")
        allowed, why = method_allowed(message["method"], entry.scopes)
        if allowed:
            return None
        if "id" not in message:
            return ""
        method = METHODS.get(message["method"])
        if method is None or method.unpaired:
            return _error(message["id"], METHOD_NOT_FOUND, f"{message['method']}: {why}",
                          "method_not_found")
        return _error(message["id"], FORBIDDEN, f"{message['method']}: {why}", "missing_scope",
                      scopes=sorted(method.scopes))

    async def _downstream(self, upstream: ClientConnection, page: ServerConnection) -> None:
        """edged -> page, verbatim; edged's close code is passed on (4403 revoked, 1008 ...)."""
        try:
            async for raw in upstream:
                await page.send(raw)
        except ConnectionClosed:
            pass
        rcvd = upstream.close_code
        code = rcvd if rcvd in (1000, 1001, 1008, 1009, 1011) or (rcvd and rcvd >= 4000) \
            else 1011
        await page.close(code, upstream.close_reason or "terminal connection closed")
