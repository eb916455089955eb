"""The socket tuning edged applies (docs/benchmarks.md P3, P6): it must still take effect."""

from __future__ import annotations

import asyncio
import asyncio.sslproto
import ssl

from bifente.edged.api import jsonrpc, server


def test_each_tls_connection_gets_the_smaller_read_buffer() -> None:
    # asyncio reads the class attribute when it makes a connection's protocol.
    server._size_tls_read_buffer()
    loop = asyncio.new_event_loop()
    try:
        protocol = asyncio.sslproto.SSLProtocol(
            loop, asyncio.Protocol(), ssl.create_default_context(), None, server_side=False,
            server_hostname="edged.test")
        assert len(protocol._ssl_buffer) == server.TLS_READ_BUFFER == 64 * 1024
    finally:
        loop.close()


def test_compression_is_off_and_oversized_ids_are_recovered() -> None:
    assert server.COMPRESSION is None
    assert jsonrpc.peek_id('{"jsonrpc": "2.0", "id": 7, "method": "x"}') == 7
    assert jsonrpc.peek_id(b'{"id": "a"}') == "a"
    assert jsonrpc.peek_id("{not json") is None
    assert jsonrpc.peek_id('{"id": true}') is None
    assert not server._counted("upload.chunk") and server._counted("upload.begin")
