"""The secure socket: WebSocket over TLS 1.3, JSON-RPC 2.0, per-client limits, events.

A client is unpaired (no certificate, or one we do not know) or paired (its certificate's
fingerprint is an active client in the registry): CONNECTED -> PAIRED (STYLE.md habit 7).
"""

from __future__ import annotations

import asyncio
import asyncio.sslproto
import contextlib
import logging
import socket
import ssl
import time
from typing import TYPE_CHECKING, Any

from websockets.asyncio.server import Server as WsServer
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.extensions.permessage_deflate import enable_server_permessage_deflate
from websockets.server import ServerProtocol

from bifente.client.codes import RATE_LIMITED, REVOKED, TOO_LARGE
from bifente.client.identity import fingerprint_of
from bifente.edged.api import jsonrpc
from bifente.edged.api.errors import to_rpc_error
from bifente.edged.api.gate import Acceptor, Admission, Gate, GateLimits, prefix_of, start_tls
from bifente.edged.api.listen import listen
from bifente.edged.api.methods import dispatch, inline
from bifente.edged.api.uploads import release_connection
from bifente.edged.events import Subscription
from bifente.edged.limits import MAX_IN_FLIGHT, limits_for

if TYPE_CHECKING:
    from bifente.edged.api.context import ApiContext
    from bifente.edged.state.clients import Client

__all__ = ["Connection", "RpcServer", "TokenBucket"]

log = logging.getLogger(__name__)
# asyncio reads TLS into a 256 KiB buffer per connection; a TLS record carries at most 16 KiB
# (RFC 8446 §5.1), so 64 KiB still takes several records per read at a quarter of the memory
# (100 clients: about 19 MB less, docs/benchmarks.md P6).
TLS_READ_BUFFER = 64 * 1024
# permessage-deflate (RFC 7692) off: our frames are small JSON or base64 chunks, and it cost
# CPU per message and a zlib context per connection (docs/benchmarks.md P3, P6).
COMPRESSION: str | None = None


def _counted(method: str) -> bool:
    """Whether a call takes a token from the client's rate limit.

    The chunks of an upload are parts of one transfer, bounded by the size announced at
    upload.begin (which is counted): counting each would make a 25 MB upload use up the
    client's calls for seconds (edged/api/uploads.py).
    """
    return method != "upload.chunk"


def _size_tls_read_buffer() -> None:
    """Give each TLS connection a TLS_READ_BUFFER read buffer (asyncio's is a class attribute)."""
    asyncio.sslproto.SSLProtocol.max_size = TLS_READ_BUFFER


MAX_BUCKETS = 1024  # rate-limit buckets kept before the idle (full) ones are dropped
# Until a connection proves a paired certificate it may only pair: a CSR fits in 64 KiB, and
# two frames waiting is plenty (websockets pauses reading beyond the high-water mark).
UNPAIRED_MAX_FRAME = 64 * 1024
UNPAIRED_MAX_QUEUE = 2
PAIRED_MAX_QUEUE = 16  # websockets' default
PEEK_MAX_BYTES = 4096  # a refused message this small is parsed for its id only
MALFORMED_LOG_INTERVAL = 10.0  # at most one line per this many seconds about bad messages


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

    def refund(self) -> None:
        """Give back one token (a call that turned out not to count)."""
        self.tokens = min(float(self.burst), self.tokens + 1)


class Connection:
    """One client connection: who it is, its limits, its subscription."""

    def __init__(self, server: RpcServer, ws: ServerConnection) -> None:
        self.server = server
        self.ws = ws
        address = ws.remote_address
        self.peer = f"{address[0]}" if address else "unknown"
        ssl_object = ws.transport.get_extra_info("ssl_object") if ws.transport else None
        der = ssl_object.getpeercert(binary_form=True) if ssl_object else None
        self.fingerprint = fingerprint_of(der) if der else None
        self._generation = server.daemon.clients.generation()
        self._client: Client | None = None
        self._paired, self._scopes = False, frozenset[str]()
        self.client = server.daemon.clients.lookup(self.fingerprint) if self.fingerprint else None
        self.subscription: Subscription | None = None
        self._send_lock = asyncio.Lock()
        self._tasks: set[asyncio.Task[None]] = set()
        self._last_heard = 0.0  # loop time of the last message received
        self._idle_timer: asyncio.TimerHandle | None = None
        self._closing: asyncio.Task[None] | None = None  # the idle timeout's close

    def refresh_client(self, *, local_only: bool = False) -> bool:
        """Re-read the client if the registry changed since it was read; True if it did.

        The registry's generation moves with every write (this process or another), so a
        revocation is seen on the next call while an unchanged registry costs one PRAGMA.
        `local_only`: look only for writes by this process (no query at all), enough after
        a call to know whether that call revoked its own client.
        """
        if not self.fingerprint or self.client is None:
            return False
        registry = self.server.daemon.clients
        if local_only and registry.local_changes() == self._generation[1]:
            return False
        generation = registry.generation()
        if generation == self._generation:
            return False
        self._generation = generation
        self.client = registry.lookup(self.fingerprint)
        return True

    @property
    def client(self) -> Client | None:
        """The registry's record of this connection's certificate (None: not paired)."""
        return self._client

    @client.setter
    def client(self, client: Client | None) -> None:
        # What each call asks (paired? which scopes?) is derived here, once per change of
        # the record, not on every call (docs/benchmarks.md P3).
        self._client = client
        self._paired = client is not None and client.active
        self._scopes = frozenset(client.scopes) if self._paired and client else frozenset()

    @property
    def revoked(self) -> bool:
        """A known certificate that was revoked."""
        return self._client is not None and not self._paired

    @property
    def paired(self) -> bool:
        """An active paired client."""
        return self._paired

    @property
    def scopes(self) -> frozenset[str]:
        """The scopes granted at pairing."""
        return self._scopes

    @property
    def client_name(self) -> str | None:
        """The paired client's name."""
        return self._client.name if self._client else None

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

    def admit(self, raw: str | bytes) -> jsonrpc.Request:
        """Size, rate limit, parse and revocation of one incoming message (nothing waits).

        Raises the refusal, with the request's id when it could be read (JSON-RPC 2.0 §5).
        """
        limit = self.server.daemon.config.max_message_bytes
        if len(raw) > limit:
            error = jsonrpc.RpcError(TOO_LARGE, f"message larger than {limit} bytes",
                                     "too_large", limit=limit)
            error.request_id = jsonrpc.peek_id(raw)  # §5: answer with the id when readable
            raise error
        # The rate limit comes before parsing: a parse costs more than a refusal (L2).
        bucket = self.server.bucket_for(self)
        wait = bucket.take()
        if wait:
            error = jsonrpc.RpcError(RATE_LIMITED, "too many calls", "rate_limited",
                                     retry_after=round(wait, 3))
            error.request_id = self.server.peek_id(raw)
            raise error
        request = self.server.parse(raw, self.peer)
        try:
            self.refresh_client()  # a revocation applies at once
        except Exception as exc:  # the registry failed: answered with the request's id
            error = to_rpc_error(exc)
            error.request_id, error.notification = request.id, request.is_notification
            raise error from exc
        if self.revoked:
            error = jsonrpc.RpcError(REVOKED, "this client's certificate was revoked", "revoked")
            error.request_id, error.notification = request.id, request.is_notification
            raise error
        if not _counted(request.method):
            # Chunks are parts of one counted transfer (upload.begin): the token taken
            # before parsing goes back (edged/api/uploads.py).
            bucket.refund()
        return request

    async def answer(self, request: jsonrpc.Request) -> None:
        """Run one admitted call and send its response (none for notifications, §4.1)."""
        try:
            result = await dispatch(self.server.daemon, self, request.method, request.params)
            if not request.is_notification:
                await self.send(jsonrpc.result_response(request.id, result))
            if self.refresh_client(local_only=True) and self.revoked:  # it revoked itself
                await self.ws.close(4403, "revoked")
        except (ConnectionClosed, asyncio.CancelledError):
            raise
        except Exception as exc:
            await self.refuse(exc, request.id, request.is_notification)

    async def refuse(self, exc: Exception, request_id: int | str | None,
                     notification: bool = False) -> None:
        """Send the error response for `exc` (none for a notification); a revoked client's
        connection is closed after it."""
        error = to_rpc_error(exc)
        if isinstance(exc, jsonrpc.RpcError) and exc.request_id is not None:
            request_id = exc.request_id  # refused while parsing, but the id was readable
        if not (notification or getattr(exc, "notification", False)):
            await self.send(jsonrpc.error_response(request_id, error))
        if error.code == REVOKED:
            await self.ws.close(4403, "revoked")

    def _idle_limit(self) -> float | None:
        """How long this connection may stay silent: none while it takes events; an
        unpaired one only long enough to pair."""
        config = self.server.daemon.config
        if not self.paired:
            return min(config.idle_timeout, config.unpaired_idle_timeout)
        return None if self.subscription else config.idle_timeout

    def _check_idle(self) -> None:
        # One timer per idle period, not one per message: it is moved on lazily, from the
        # time of the last message, when it fires early (edged/api/server.py serve()).
        loop = asyncio.get_running_loop()
        limit = self._idle_limit()
        if limit is None:  # taking events: look again later (the subscription may end)
            self._idle_timer = loop.call_later(self.server.daemon.config.idle_timeout,
                                               self._check_idle)
            return
        due = self._last_heard + limit
        if loop.time() < due:
            self._idle_timer = loop.call_at(due, self._check_idle)
            return
        self._idle_timer = None
        # Not one of the connection's tasks: close() cancels those, and this one ends it.
        self._closing = loop.create_task(self.ws.close(1001, "idle timeout"))

    async def serve(self) -> None:
        """Read messages until the client leaves or stays idle too long.

        A call whose method answers without waiting (`Method.inline`, such as system.info)
        is answered here, in order; any other call runs in its own task, at most
        MAX_IN_FLIGHT at once per connection, so that a card call does not hold up the
        connection's other calls.
        """
        loop = asyncio.get_running_loop()
        in_flight = asyncio.Semaphore(MAX_IN_FLIGHT)
        self._last_heard = loop.time()
        self._check_idle()
        try:
            while True:
                raw = await self.ws.recv()
                self._last_heard = loop.time()
                try:
                    request = self.admit(raw)
                except Exception as exc:
                    await self.refuse(exc, None)
                    continue
                if inline(request.method):
                    await self.answer(request)
                    continue
                await in_flight.acquire()

                async def run(request: jsonrpc.Request = request) -> None:
                    try:
                        await self.answer(request)
                    except ConnectionClosed:
                        pass
                    finally:
                        in_flight.release()

                self._spawn(run())
        except ConnectionClosed:
            return
        finally:
            if self._idle_timer is not None:
                self._idle_timer.cancel()
                self._idle_timer = None
            try:
                if self._closing is not None:
                    await self._closing
            finally:  # even if cancelled while the idle close was under way
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
        await release_connection(self.server.daemon, self)  # its unused uploads go with it


class RpcServer:
    """Accepts clients on the secure socket and keeps track of them."""

    def __init__(self, daemon: ApiContext) -> None:
        self.daemon = daemon
        self.connections: set[Connection] = set()
        self._buckets: dict[str, TokenBucket] = {}
        self._server: WsServer | None = None
        cfg = daemon.config
        self.gate = Gate(GateLimits(
            max_connections=cfg.max_connections, max_handshakes=cfg.max_handshakes,
            max_unpaired=cfg.max_unpaired, max_unpaired_per_prefix=cfg.max_unpaired_per_prefix,
            max_per_paired_address=cfg.max_per_paired_address,
            handshake_timeout=cfg.handshake_timeout))
        self._malformed = 0
        self._malformed_logged = 0.0
        self._acceptor: Acceptor | None = None
        self._accepting: set[asyncio.Task[Any]] = set()

    def bucket_for(self, conn: Connection) -> TokenBucket:
        """The rate limiter shared by every connection of one client, with the limits of its
        paired name (unpaired: one per /24 or /64, the unit of the accept caps)."""
        key = conn.client_id if conn.paired else f"prefix:{prefix_of(conn.peer)}"
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= MAX_BUCKETS:
                self._prune_buckets()
            limits = limits_for(self.daemon.config, conn.client_name if conn.paired else None)
            bucket = self._buckets[key] = TokenBucket(limits.rate_per_second, limits.rate_burst)
        return bucket

    def _prune_buckets(self) -> None:
        # A bucket that has refilled is the same as a new one: dropping it loses nothing.
        for key, bucket in list(self._buckets.items()):
            bucket.take()
            bucket.tokens += 1
            if bucket.tokens >= bucket.burst:
                del self._buckets[key]

    def peek_id(self, raw: str | bytes) -> int | str | None:
        """The id of a refused message, so the caller can match the refusal: parsed only
        when small (a large message over the rate is refused unread)."""
        return None if len(raw) > PEEK_MAX_BYTES else jsonrpc.peek_id(raw)

    def parse(self, raw: str | bytes, peer: str) -> jsonrpc.Request:
        """Parse one message; a malformed one is logged in one line, at most every 10 s."""
        try:
            try:
                return jsonrpc.parse_message(raw)
            except RecursionError:  # json.loads on deep nesting: a parse error, not a bug
                raise jsonrpc.RpcError(jsonrpc.PARSE_ERROR, "parse error: nested too deeply",
                                       "parse_error") from None
        except jsonrpc.RpcError as exc:
            self._malformed += 1
            now = time.monotonic()
            if now - self._malformed_logged >= MALFORMED_LOG_INTERVAL:
                log.info("malformed message from %s: %s (%d malformed since the last line)",
                         prefix_of(peer), exc.data.get("reason"), self._malformed)
                self._malformed, self._malformed_logged = 0, now
            raise

    @property
    def port(self) -> int:
        """The port actually bound (useful with port 0)."""
        assert self._server is not None
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    async def start(self, sock: socket.socket | None = None) -> None:
        """Listen on the configured address (or on `sock`, bound already) with TLS 1.3, each
        socket admitted by the gate."""
        cfg = self.daemon.config
        _size_tls_read_buffer()
        context = self.daemon.keystore.server_ssl_context()
        sock = sock if sock is not None else listen(cfg.host, cfg.port)
        # websockets runs the handshakes and connections; accepting is ours, so that the caps
        # apply before TLS (edged/api/gate.py): the acceptor replaces asyncio's reader on the
        # socket right after, and a socket asyncio accepts in between is dropped.
        self._server = await serve(
            self._handler, sock=sock, create_connection=_NotAdmitted,
            max_size=cfg.max_message_bytes * 2,  # beyond this the socket is closed (1009)
            compression=COMPRESSION,
            open_timeout=cfg.handshake_timeout,  # the WebSocket upgrade, after TLS
            ping_interval=20, ping_timeout=20, close_timeout=5, server_header=None)
        ws_server, loop = self._server, asyncio.get_running_loop()
        extensions = (enable_server_permessage_deflate(None) if COMPRESSION == "deflate"
                      else None)

        def admitted(conn: socket.socket, admission: Admission) -> None:
            protocol = ServerProtocol(extensions=extensions, max_size=UNPAIRED_MAX_FRAME)
            connection = _GatedConnection(self.gate, context, admission, protocol, ws_server,
                                          ping_interval=20, ping_timeout=20, close_timeout=5,
                                          max_queue=UNPAIRED_MAX_QUEUE)
            task = loop.create_task(loop.connect_accepted_socket(lambda: connection, conn))
            self._accepting.add(task)
            task.add_done_callback(lambda t: self._accepted(t, conn, admission))

        self._acceptor = Acceptor(sock, self.gate, admitted)
        self._acceptor.start()
        log.info("listening on %s:%d (TLS 1.3)", cfg.host, self.port)

    def _accepted(self, task: asyncio.Task[Any], conn: socket.socket,
                  admission: Admission) -> None:
        self._accepting.discard(task)
        if task.cancelled() or task.exception() is not None:
            conn.close()
            self.gate.release(admission)

    async def _handler(self, ws: ServerConnection) -> None:
        conn = Connection(self, ws)
        admission = getattr(ws, "admission", None)
        if isinstance(admission, Admission):
            if conn.paired:
                self.gate.paired(admission)
                _paired_limits(ws, self.daemon.config.max_message_bytes * 2)
            else:
                self.gate.handshake_done(admission)
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
        if self._acceptor is not None:
            self._acceptor.stop()
            self._acceptor = None
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None


class _NotAdmitted(ServerConnection):
    """A socket accepted by asyncio itself rather than the gate: closed at once."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Never admitted: reset it."""
        assert isinstance(transport, asyncio.Transport)
        transport.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        """Nothing was started."""


def _paired_limits(ws: ServerConnection, max_frame: int) -> None:
    """Raise a connection's limits once its certificate is a paired client's (the parser reads
    the frame limit per frame; no frame has been read yet)."""
    ws.protocol.max_message_size = max_frame
    ws.recv_messages.high, ws.recv_messages.low = PAIRED_MAX_QUEUE, PAIRED_MAX_QUEUE // 4


class _GatedConnection(ServerConnection):
    """A WebSocket connection on an admitted socket, with TLS put under it by the gate.

    asyncio calls `connection_made` twice: with the TCP transport (TLS is started), then with
    the TLS transport once the handshake is done (the WebSocket starts).
    """

    def __init__(self, gate: Gate, context: ssl.SSLContext, admission: Admission,
                 *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._gate, self._context = gate, context
        self.admission = admission
        self._tls_started = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """First the raw socket (TLS starts), then the TLS transport (the WebSocket starts)."""
        if not self._tls_started:
            self._tls_started = True
            assert isinstance(transport, asyncio.Transport)
            start_tls(self._gate, self.admission, transport, self, self._context)
            return
        super().connection_made(transport)
