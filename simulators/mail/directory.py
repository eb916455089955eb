"""The trust space's certificate directory: who is reachable, with which encryption certificate.

HTTP contract (over HTTPS, server certificate from the test ORGANISATIONS CA):

    GET /certificate?address=<addr>
      200  application/pem-certificate-chain   the recipient's encryption certificate (PEM)
      400  application/json {"error": "bad-request", "reason": ...}        malformed query
      404  application/json {"error": "unknown-recipient", "reason": ...}  nobody at that address
    anything else: 404 {"error": "not-found"} or 405 {"error": "method-not-allowed"} (GET only)

Reasons never carry a full NIR: patient addresses are masked.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import ssl
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from http import HTTPStatus
from pathlib import Path

from cryptography import x509

from bifente.simulators.mail.addresses import Address, mask_address, parse_address

__all__ = ["DirectoryClient", "DirectoryError", "DirectoryServer", "UnknownRecipient"]

log = logging.getLogger(__name__)

PEM_TYPE = "application/pem-certificate-chain"  # RFC 8555 §9.1
MAX_REQUEST_LINE = 4096
MAX_HEADERS = 64


class UnknownRecipient(LookupError):
    """The directory has no encryption certificate for this address."""

    def __init__(self, address: str, reason: str = "") -> None:
        self.address = address
        self.reason = reason or f"no encryption certificate for {mask_address(address)}"
        super().__init__(self.reason)


class DirectoryError(RuntimeError):
    """The directory could not be asked, or answered something unexpected."""


class DirectoryClient:
    """Ask the directory for a recipient's encryption certificate (the simulator's own client)."""

    def __init__(self, url: str, cafile: str | Path, *, timeout: float = 10.0) -> None:
        if not url.startswith("https://"):
            raise ValueError("the directory URL must be https://host:port")
        self.url = url.rstrip("/")
        self.context = ssl.create_default_context(cafile=str(cafile))
        self.timeout = timeout

    def certificate(self, address: str) -> x509.Certificate:
        """The certificate for `address`; UnknownRecipient on 404, ValueError on 400."""
        query = urllib.parse.urlencode({"address": address})
        try:
            with urllib.request.urlopen(f"{self.url}/certificate?{query}",  # noqa: S310 https only
                                        context=self.context, timeout=self.timeout) as response:
                return x509.load_pem_x509_certificate(response.read(1 << 20))
        except urllib.error.HTTPError as exc:
            reason = _reason(exc)
            if exc.code == HTTPStatus.NOT_FOUND:
                raise UnknownRecipient(address, reason) from None
            if exc.code == HTTPStatus.BAD_REQUEST:
                raise ValueError(f"directory: {reason}") from None
            raise DirectoryError(f"directory answered {exc.code}: {reason}") from None
        except (urllib.error.URLError, OSError) as exc:
            raise DirectoryError(f"cannot reach the directory at {self.url}: {exc}") from exc


def _reason(exc: urllib.error.HTTPError) -> str:
    try:
        return str(json.loads(exc.read(65536)).get("reason", ""))
    except (ValueError, AttributeError, OSError):
        return ""


class DirectoryServer:
    """The directory over HTTPS on asyncio; `lookup` returns PEM or raises UnknownRecipient."""

    def __init__(self, lookup: Callable[[Address], bytes], context: ssl.SSLContext) -> None:
        self.lookup = lookup
        self.context = context
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def start(self, host: str, port: int) -> int:
        """Listen; the bound port."""
        self._server = await asyncio.start_server(self._serve, host, port, ssl=self.context,
                                                  ssl_handshake_timeout=10,
                                                  limit=MAX_REQUEST_LINE)
        return int(self._server.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        """Stop listening and close open connections."""
        if self._server is not None:
            self._server.close()
            for writer in list(self._writers):
                writer.close()
            await self._server.wait_closed()
            self._server = None

    def answer(self, method: str, target: str) -> tuple[HTTPStatus, str, bytes]:
        """(status, content type, body) for one request."""
        url = urllib.parse.urlsplit(target)
        if url.path != "/certificate":
            return _error(HTTPStatus.NOT_FOUND, "not-found", "the only resource is /certificate")
        if method != "GET":
            return _error(HTTPStatus.METHOD_NOT_ALLOWED, "method-not-allowed", "GET only")
        try:
            query = urllib.parse.parse_qs(url.query, keep_blank_values=True, strict_parsing=True,
                                          max_num_fields=4)
            values = query.get("address", [])
            if set(query) != {"address"} or len(values) != 1:
                raise ValueError("give exactly one address parameter")
            address = parse_address(values[0])
        except ValueError as exc:
            return _error(HTTPStatus.BAD_REQUEST, "bad-request", str(exc))
        try:
            return HTTPStatus.OK, PEM_TYPE, self.lookup(address)
        except UnknownRecipient as exc:
            return _error(HTTPStatus.NOT_FOUND, "unknown-recipient", exc.reason)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        try:
            status, ctype, body = await asyncio.wait_for(self._request(reader), 10)
            head = (f"HTTP/1.1 {status.value} {status.phrase}\r\nContent-Type: {ctype}\r\n"
                    f"Content-Length: {len(body)}\r\nConnection: close\r\n")
            if status is HTTPStatus.METHOD_NOT_ALLOWED:
                head += "Allow: GET\r\n"
            writer.write(head.encode() + b"\r\n" + body)
            await writer.drain()
        except (TimeoutError, ConnectionError, ssl.SSLError, asyncio.IncompleteReadError):
            pass
        finally:
            self._writers.discard(writer)
            writer.close()
            with contextlib.suppress(ConnectionError, ssl.SSLError):
                await writer.wait_closed()

    async def _request(self, reader: asyncio.StreamReader) -> tuple[HTTPStatus, str, bytes]:
        try:
            request_line = (await reader.readline()).decode("latin-1").rstrip("\r\n")
            for _ in range(MAX_HEADERS):
                if (await reader.readline()) in (b"\r\n", b"\n", b""):
                    break
            else:
                return _error(HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE, "bad-request",
                              "too many header lines")
        except (ValueError, asyncio.LimitOverrunError):
            return _error(HTTPStatus.REQUEST_URI_TOO_LONG, "bad-request", "line too long")
        parts = request_line.split(" ")
        if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
            return _error(HTTPStatus.BAD_REQUEST, "bad-request", "not an HTTP/1.x request line")
        # off the loop: a structure's certificate may be made (RSA key generation) on first use
        status, ctype, body = await asyncio.to_thread(self.answer, parts[0], parts[1])
        log.info("directory: %s /certificate -> %d", parts[0], status.value)  # no address
        return status, ctype, body


def _error(status: HTTPStatus, error: str, reason: str) -> tuple[HTTPStatus, str, bytes]:
    return status, "application/json", json.dumps({"error": error, "reason": reason}).encode()
