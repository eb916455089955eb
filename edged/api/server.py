"""The secure socket: WebSocket over TLS 1.3, JSON-RPC 2.0, per-client limits, events.

A client is unpaired (no certificate, or one we do not know) or paired (its certificate's
fingerprint is an active client in the registry): CONNECTED -> PAIRED (STYLE.md habit 7).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
from typing import TYPE_CHECKING, Any

from websockets.asyncio.server import Server as WsServer
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from edged.api import jsonrpc
from edged.api.errors import RATE_LIMITED, REVOKED, TOO_LARGE, to_rpc_error
from edged.api.limits import limits_for
from edged.api.methods import dispatch
from edged.events import Subscription

if TYPE_CHECKING:
    from edged.daemon import Daemon

__all__ = ["Connection", "RpcServer", "TokenBucket"]

log = logging.getLogger(__name__)
MAX_IN_FLIGHT = 8  # concurrent calls per connection


class TokenBucket:
    """Rate limit: `rate` calls per second with bursts of `burst`."""

    def __init__(self, rate: float, burst: int, clock: Any = time.monotonic) -> None:
        self.rate, self.burst, self.clock = rate, burst, clock
        self.tokens = float(burst)
        self.updated = clock()

    def take(self) -> float:
        """0 when a call may go now, else the seconds to wait."""
        now = self.clock()
        self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        if self.tokens >= 1:
            self.tokens -= 1
            return 0.0
        return (1 - self.tokens) / self.rate


class Connection:
    """One client connection: who it is, its limits, its subscription."""

    def __init__(self, server: RpcServer, ws: ServerConnection) -> None:
        self.server = server
        self.ws = ws
        address = ws.remote_address
        self.peer = f"{address[0]}" if address else "unknown"
        ssl_object = ws.transport.get_extra_info("ssl_object") if ws.transport else None
        der = ssl_object.getpeercert(binary_form=True) if ssl_object else None
        self.fingerprint = hashlib.sha256(der).hexdigest() if der else None
        self.client = server.daemon.clients.lookup(self.fingerprint) if self.fingerprint else None
        self.subscription: Subscription | None = None
        self._send_lock = asyncio.Lock()
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def revoked(self) -> bool:
        """A known certificate that was revoked."""
        return self.client is not None and not self.client.active

    @property
    def paired(self) -> bool:
        """An active paired client."""
        return self.client is not None and self.client.active

    @property
    def scopes(self) -> frozenset[str]:
        """The scopes granted at pairing."""
        return frozenset(self.client.scopes) if self.paired and self.client else frozenset()

    @property
    def client_name(self) -> str | None:
        """The paired client's name."""
        return self.client.name if self.client else None

    @property
    def client_id(self) -> str:
        """Who to be fair to in card queues: the certificate, else the peer address."""
        return self.fingerprint or f"peer:{self.peer}"

    def subscribe(self, names: frozenset[str] | None) -> None:
        """Start forwarding events (replaces an earlier subscription)."""
        if self.subscription is not None:
            self.subscription.close()
        self.subscription = self.server.daemon.bus.subscribe(names)
        self._spawn(self._forward(self.subscription))

    async def _forward(self, sub: Subscription) -> None:
        while True:
            event = await sub.get()
            params = {**event.params, "time": event.time, "seq": event.seq}
            if sub.dropped:  # lost since the last event this connection received
                params["dropped"] = sub.dropped
                sub.dropped = 0
            await self.send(jsonrpc.notification(event.name, params))

    async def send(self, text: str) -> None:
        """Send one message (serialised with the other senders on this connection)."""
        async with self._send_lock:
            await self.ws.send(text)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def handle(self, raw: str | bytes) -> None:
        """One incoming message -> one response (none for notifications, JSON-RPC 2.0 §4.1)."""
        request_id = None
        notification = False
        try:
            if len(raw) > self.server.daemon.config.max_message_bytes:
                request_id = jsonrpc.peek_id(raw)  # §5: answer with the id when readable
                raise jsonrpc.RpcError(TOO_LARGE, "message larger than "
                                       f"{self.server.daemon.config.max_message_bytes} bytes",
                                       "too_large",
                                       limit=self.server.daemon.config.max_message_bytes)
            request = jsonrpc.parse_message(raw)
            request_id, notification = request.id, request.is_notification
            if self.fingerprint and self.client is not None:
                # Re-read on every call: a revocation applies at once (one indexed lookup).
                self.client = self.server.daemon.clients.lookup(self.fingerprint)
            if self.revoked:
                raise jsonrpc.RpcError(REVOKED, "this client's certificate was revoked",
                                       "revoked")
            wait = self.server.bucket_for(self.client_id, self.client_name).take()
            if wait:
                raise jsonrpc.RpcError(RATE_LIMITED, "too many calls", "rate_limited",
                                       retry_after=round(wait, 3))
            result = await dispatch(self.server.daemon, self, request.method, request.params)
            if not request.is_notification:
                await self.send(jsonrpc.result_response(request_id, result))
            if self.fingerprint and self.client is not None:
                self.client = self.server.daemon.clients.lookup(self.fingerprint)
                if self.revoked:  # it revoked itself
                    await self.ws.close(4403, "revoked")
        except ConnectionClosed:
            raise
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            error = to_rpc_error(exc)
            if isinstance(exc, jsonrpc.RpcError) and exc.request_id is not None:
                request_id = exc.request_id  # refused while parsing, but the id was readable
            if not (notification or getattr(exc, "notification", False)):
                await self.send(jsonrpc.error_response(request_id, error))
            if error.code == REVOKED:
                await self.ws.close(4403, "revoked")

    async def serve(self) -> None:
        """Read messages until the client leaves or stays idle too long."""
        config = self.server.daemon.config
        in_flight = asyncio.Semaphore(MAX_IN_FLIGHT)
        try:
            while True:
                idle = None if self.subscription else config.idle_timeout
                try:
                    raw = await asyncio.wait_for(self.ws.recv(), idle)
                except TimeoutError:
                    await self.ws.close(1001, "idle timeout")
                    return
                await in_flight.acquire()

                async def run(raw: str | bytes = raw) -> None:
                    try:
                        await self.handle(raw)
                    except ConnectionClosed:
                        pass
                    finally:
                        in_flight.release()

                self._spawn(run())
        except ConnectionClosed:
            return
        finally:
            await self.close()

    async def close(self) -> None:
        """Cancel in-flight work (card jobs not started are dropped) and the subscription."""
        if self.subscription is not None:
            self.subscription.close()
            self.subscription = None
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)


class RpcServer:
    """Accepts clients on the secure socket and keeps track of them."""

    def __init__(self, daemon: Daemon) -> None:
        self.daemon = daemon
        self.connections: set[Connection] = set()
        self._buckets: dict[str, TokenBucket] = {}
        self._server: WsServer | None = None

    def bucket_for(self, client_id: str, client_name: str | None = None) -> TokenBucket:
        """The rate limiter shared by every connection of one client."""
        bucket = self._buckets.get(client_id)
        if bucket is None:
            limits = limits_for(self.daemon.config, client_name)
            bucket = self._buckets[client_id] = TokenBucket(limits.rate_per_second,
                                                            limits.rate_burst)
        return bucket

    @property
    def port(self) -> int:
        """The port actually bound (useful with port 0)."""
        assert self._server is not None
        return self._server.sockets[0].getsockname()[1]

    async def start(self) -> None:
        """Listen on the configured address with TLS 1.3."""
        cfg = self.daemon.config
        self._server = await serve(
            self._handler, cfg.host, cfg.port, ssl=self.daemon.keystore.server_ssl_context(),
            max_size=cfg.max_message_bytes * 2,  # beyond this the socket is closed (1009)
            ping_interval=20, ping_timeout=20, close_timeout=5, server_header=None)
        log.info("listening on %s:%d (TLS 1.3)", cfg.host, self.port)

    async def _handler(self, ws: ServerConnection) -> None:
        conn = Connection(self, ws)
        same = [c for c in self.connections if c.client_id == conn.client_id]
        if len(same) >= limits_for(self.daemon.config, conn.client_name).max_connections:
            await ws.send(jsonrpc.error_response(None, jsonrpc.RpcError(
                RATE_LIMITED, "too many connections for this client", "too_many_connections")))
            await ws.close(1008, "too many connections")
            return
        self.connections.add(conn)
        if conn.paired and conn.fingerprint:
            self.daemon.clients.touch(conn.fingerprint)
        try:
            await conn.serve()
        finally:
            self.connections.discard(conn)

    async def disconnect_fingerprint(self, fingerprint: str, keep: object = None) -> int:
        """Close every connection using this certificate (after a revocation).

        `keep` (the revoking connection itself) is closed by its handler once it has answered.
        """
        victims = [c for c in self.connections if c.fingerprint == fingerprint and c is not keep]
        for conn in victims:
            if conn.client is not None:
                conn.client = self.daemon.clients.lookup(fingerprint)
            with contextlib.suppress(ConnectionClosed):
                await conn.ws.close(4403, "revoked")
        return len(victims)

    async def close(self) -> None:
        """Stop accepting, then close every connection (idempotent)."""
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
