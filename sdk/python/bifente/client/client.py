"""A connection to edged: JSON-RPC calls over WSS with the daemon's certificate pinned."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import itertools
import json
import ssl
import tempfile
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from types import TracebackType
from typing import Any, ClassVar

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

import bifente.client.contract as contract
from bifente.client.codes import TOO_LARGE
from bifente.client.tls import check_pinned, pinned_ssl_context

__all__ = ["DEFAULT_MAX_REQUEST", "Client", "RemoteError", "RequestTooLarge"]

MAX_MESSAGE = 4 << 20
MESSAGE_TOO_BIG = 1009  # RFC 6455 §7.4.1 close code
DEFAULT_MAX_REQUEST = 1 << 20  # edged's default max_message_bytes (system.info limits)
_ASK_LIMIT_ABOVE = 4096  # a larger request first learns the daemon's limit (once)


class RequestTooLarge(ValueError):
    """A request larger than the daemon accepts: refused here, before anything is sent."""

    def __init__(self, method: str, size: int, limit: int) -> None:
        super().__init__(f"{method}: the request is {size} bytes, the terminal accepts at most "
                         f"{limit} bytes per message (max_message_bytes)")
        self.size = size
        self.limit = limit


class RemoteError(Exception):
    """An error answered by the daemon: code, message and the machine-readable reason."""

    def __init__(self, code: int, message: str, data: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.data = data or {}
        self.reason = str(self.data.get("reason", ""))


class Client:
    """One connection; concurrent calls are matched to their answers by id."""

    # Called with (method, result) for every successful call (the CLI's --json uses it).
    on_result: ClassVar[Callable[[str, Any], None] | None] = None

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[Any]] = {}
        self._events: asyncio.Queue[dict[str, Any]] = asyncio.Queue(1024)
        self._methods: dict[int, str] = {}
        self._reader = asyncio.get_running_loop().create_task(self._read())
        self.closed_reason: str | None = None
        self.max_request = DEFAULT_MAX_REQUEST
        self._limit_known = False
        self.check = contract.enabled()  # validate answers against docs/openrpc.json

    @classmethod
    async def connect(cls, host: str, port: int, fingerprint: str, *,
                      cert_pem: bytes | None = None, key_pem: bytes | None = None,
                      timeout: float = 10.0) -> Client:
        """Open WSS to host:port, check the pinned fingerprint, optionally with a client cert."""
        context = _context(fingerprint, cert_pem, key_pem)
        ws = await asyncio.wait_for(connect(
            f"wss://{_bracket(host)}:{port}/", ssl=context, max_size=MAX_MESSAGE,
            server_hostname=host, open_timeout=timeout, ping_interval=20, ping_timeout=20),
            timeout)
        ssl_object = ws.transport.get_extra_info("ssl_object")
        try:
            check_pinned(ssl_object, fingerprint)
        except Exception:
            await ws.close()
            raise
        return cls(ws)

    async def _read(self) -> None:
        try:
            async for raw in self.ws:
                message = json.loads(raw)
                if "id" in message and ("result" in message or "error" in message):
                    self._answer(message)
                elif "method" in message:
                    if self.check:
                        contract.check_event(message["method"], message.get("params"))
                    if self._events.full():
                        self._events.get_nowait()
                    self._events.put_nowait({"event": message["method"],
                                             **message.get("params", {})})
        except ConnectionClosed as exc:
            self.closed_reason = self.closed_reason or (exc.rcvd.reason if exc.rcvd else None)
        finally:
            # A normal close (1000, 1001 such as "idle timeout") ends the loop without an
            # exception: its reason is on the connection.
            self.closed_reason = self.closed_reason or self.ws.close_reason or None
            why = f": {self.closed_reason}" if self.closed_reason else ""
            for future in self._pending.values():
                if not future.done():
                    future.set_exception(self._too_large() or
                                         ConnectionError(f"connection closed{why}"))
            self._pending.clear()

    def _too_large(self) -> RemoteError | None:
        """The daemon closed the socket on a message over twice its limit (1009, RFC 6455)."""
        if self.ws.close_code != MESSAGE_TOO_BIG:
            return None
        return RemoteError(TOO_LARGE, "message too large for the daemon: send large data with "
                           "Client.upload (upload.begin / chunk / commit)",
                           {"reason": "too_large"})

    def _answer(self, message: dict[str, Any]) -> None:
        """Route a response to its call; an error with id null fails the only pending call."""
        request_id = message["id"]
        if request_id is None and "error" in message:
            err = message["error"]
            if self.check:
                contract.check_error(err)
            if len(self._pending) == 1 and (err.get("data") or {}).get("reason") \
                    != "too_many_connections":
                request_id = next(iter(self._pending))
            else:  # connection-level (too many connections): the close follows
                self.closed_reason = err.get("message")
                return
        future = self._pending.pop(request_id, None)
        method = self._methods.pop(request_id, "")
        if future is None or future.done():
            return
        if "error" in message:
            err = message["error"]
            if self.check:
                contract.check_error(err)
            future.set_exception(RemoteError(err["code"], err["message"], err.get("data")))
            return
        try:
            if self.check:
                contract.check_result(method, message["result"])
        except contract.ContractViolation as exc:
            future.set_exception(exc)
            return
        future.set_result(message["result"])

    async def call(self, method: str, params: dict[str, Any] | None = None, *,
                   timeout: float = 120.0) -> Any:
        """Call a method and return its result; RemoteError for an error answer.

        RequestTooLarge, at once, for a request over the daemon's message limit.
        """
        request_id = next(self._ids)
        text = json.dumps({"jsonrpc": "2.0", "id": request_id, "method": method,
                           "params": params or {}})
        size = len(text.encode())
        if size > _ASK_LIMIT_ABOVE and not self._limit_known and method != "system.info":
            with contextlib.suppress(RemoteError):  # unpaired: keep the default
                info = await self.call("system.info", timeout=timeout)
                self.max_request = int(info["limits"]["max_message_bytes"])
            self._limit_known = True
        if size > self.max_request:
            raise RequestTooLarge(method, size, self.max_request)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[request_id] = future
        self._methods[request_id] = method
        try:
            await self.ws.send(text)
        except ConnectionClosed as exc:
            self._pending.pop(request_id, None)
            self._methods.pop(request_id, None)
            raise self._too_large() or ConnectionError(f"connection closed: {exc}") from exc
        try:
            result = await asyncio.wait_for(future, timeout)
        finally:
            self._pending.pop(request_id, None)
            self._methods.pop(request_id, None)
        if Client.on_result is not None:
            Client.on_result(method, result)
        return result

    async def upload(self, data: bytes | Path, *, timeout: float = 120.0) -> str:
        """Send a payload larger than one message in chunks; the committed upload's id.

        upload.begin (size, SHA-256), upload.chunk in order, upload.commit (docs/protocol.md);
        a file is read a chunk at a time. Pass the id as `upload_id` to mail.send (an
        attachment) or dmp.feed.
        """
        size, digest = _size_and_digest(data)
        begun = await self._call_paced("upload.begin", {"size": size, "sha256": digest},
                                       timeout)
        upload_id, chunk = begun["upload_id"], int(begun["chunk_size"])
        try:
            offset = 0
            for piece in _chunks(data, chunk):
                await self._call_paced("upload.chunk", {
                    "upload_id": upload_id, "offset": offset,
                    "data": base64.b64encode(piece).decode()}, timeout)
                offset += len(piece)
            await self._call_paced("upload.commit", {"upload_id": upload_id}, timeout)
        except BaseException:
            with contextlib.suppress(Exception):
                await self.call("upload.cancel", {"upload_id": upload_id}, timeout=10)
            raise
        return str(upload_id)

    async def _call_paced(self, method: str, params: dict[str, Any], timeout: float) -> Any:
        """call(), waiting as told (data.retry_after) when the daemon's rate limit refuses it."""
        while True:
            try:
                return await self.call(method, params, timeout=timeout)
            except RemoteError as exc:
                if exc.reason != "rate_limited" or "retry_after" not in exc.data:
                    raise
                await asyncio.sleep(float(exc.data["retry_after"]))

    async def send_raw(self, text: str | bytes) -> None:
        """Send bytes as they are (tests of malformed input)."""
        await self.ws.send(text)

    async def subscribe(self, events: list[str] | None = None) -> list[str]:
        """Ask for event notifications; read them with next_event() or events()."""
        result = await self.call("events.subscribe", {"events": events} if events else {})
        return list(result["subscribed"])

    async def next_event(self, timeout: float = 10.0) -> dict[str, Any]:
        """The next notification ({'event': name, ...params})."""
        return await asyncio.wait_for(self._events.get(), timeout)

    async def events(self) -> AsyncIterator[dict[str, Any]]:
        """Notifications as they come."""
        while True:
            yield await self._events.get()

    async def close(self) -> None:
        """Close the connection (idempotent)."""
        await self.ws.close()
        self._reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reader

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.close()


def _size_and_digest(data: bytes | Path) -> tuple[int, str]:
    digest = hashlib.sha256()
    size = 0
    for piece in _chunks(data, 1 << 20):
        digest.update(piece)
        size += len(piece)
    return size, digest.hexdigest()


def _chunks(data: bytes | Path, size: int) -> Iterator[bytes | memoryview]:
    if isinstance(data, Path):
        with data.open("rb") as source:
            while piece := source.read(size):
                yield piece
        return
    view = memoryview(data)
    for offset in range(0, len(view), size):
        yield view[offset:offset + size]


def _bracket(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def _context(fingerprint: str, cert_pem: bytes | None, key_pem: bytes | None) -> ssl.SSLContext:
    if cert_pem is None or key_pem is None:
        return pinned_ssl_context(fingerprint)
    # ssl loads a client certificate from files only: write them to a private temp dir.
    with tempfile.TemporaryDirectory(prefix="bifente-") as tmp:
        cert, key = Path(tmp) / "client.crt", Path(tmp) / "client.key"
        cert.write_bytes(cert_pem)
        key.touch(mode=0o600)
        key.write_bytes(key_pem)
        return pinned_ssl_context(fingerprint, client_cert=cert, client_key=key)
