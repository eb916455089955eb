"""Review H2 and L2 against the real daemon: a LAN peer cannot starve it.

Loopback only: the "LAN hosts" are 127.0.x.y source addresses (x picks the /24). The load here
is small on purpose; the 3,000-connection memory and latency figures are in `make bench`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import ssl

import pytest
import websockets

from bifente.edged.api.gate import TLS_RECORD_BYTES, SmallBufferSSLProtocol, prefix_of

pytestmark = pytest.mark.asyncio

FLOOD_PREFIXES = 5  # 127.0.1.0/24 .. 127.0.5.0/24
ADDRESSES_PER_PREFIX = 2
SOCKETS_PER_ADDRESS = 4


async def _silent_socket(port: int, source: str) -> tuple[asyncio.StreamReader,
                                                          asyncio.StreamWriter] | None:
    """A connected socket that says nothing, or None when the daemon reset it at once."""
    try:
        return await asyncio.open_connection("127.0.0.1", port, local_addr=(source, 0))
    except ConnectionResetError:
        return None


async def _closed_by_server(reader: asyncio.StreamReader, limit: float) -> bool:
    """True when the daemon closed (EOF or reset) the silent socket before `limit` seconds."""
    try:
        data = await asyncio.wait_for(reader.read(1), limit)
    except TimeoutError:
        return False
    except ConnectionError:
        return True
    return data == b""


async def test_caps_at_accept_keep_a_paired_client_served(edged) -> None:
    bench = await edged(max_unpaired=6, max_unpaired_per_prefix=2, max_handshakes=6,
                        handshake_timeout=2.0)
    gate = bench.daemon.server.gate
    credentials = await bench.pair("desk", "identity:read")
    async with await credentials.connect() as client:  # 127.0.0.1 is now a paired address
        await client.call("system.info")
        attempts = [await _silent_socket(bench.port, f"127.0.{x}.{y}")
                    for x in range(1, FLOOD_PREFIXES + 1)
                    for y in range(1, ADDRESSES_PER_PREFIX + 1)
                    for _ in range(SOCKETS_PER_ADDRESS)]
        sockets = [s for s in attempts if s is not None]
        await asyncio.sleep(0.2)  # let the loop accept them all
        stats = gate.stats()
        # Beyond the caps sockets were closed at accept: never more unpaired than allowed,
        # never more than 2 from one /24, and the table holds only what is open.
        assert stats["unpaired"] == 6
        assert stats["prefixes"] <= FLOOD_PREFIXES
        assert all(n <= 2 for n in gate._per_prefix.values())
        closed_at_once = [await _closed_by_server(r, 1.0) for r, _ in sockets]
        assert sum(closed_at_once) + len(attempts) - len(sockets) >= len(attempts) - 6

        # The paired client is still served, on a new connection too, during the flood.
        assert (await client.call("system.info"))["fingerprint"] == bench.fingerprint
        # Its TLS layer reads into one TLS record's worth of buffer, not 256 KiB.
        [served] = bench.daemon.server.connections
        tls = served.ws.transport._ssl_protocol  # asyncio's app transport -> its protocol
        assert isinstance(tls, SmallBufferSSLProtocol)
        assert len(tls._ssl_buffer) == TLS_RECORD_BYTES < 17 * 1024
        async with await credentials.connect() as second:
            assert "protocol" in await second.call("system.info")

        # The silent ones that were admitted are dropped by the handshake timeout.
        assert all([await _closed_by_server(r, 15.0) for r, _ in sockets])
        for _, writer in sockets:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()
        await asyncio.sleep(0.1)
        assert gate.stats()["unpaired"] == 0 and gate.stats()["prefixes"] == 0
        assert gate.stats()["open"] == 1  # the paired client


async def test_ipv6_style_prefix_caps() -> None:
    # One host owns its /64: every address in it shares one budget; IPv4 counts per /24.
    assert prefix_of("2001:db8:1:2::1") == prefix_of("2001:db8:1:2:ffff::9") == \
        "2001:db8:1:2::/64"
    assert prefix_of("127.0.3.7") == prefix_of("127.0.3.250") == "127.0.3.0/24"
    assert prefix_of("::ffff:10.0.0.5") == "10.0.0.0/24"


async def test_deep_nesting_is_a_parse_error_logged_in_one_line(edged, caplog) -> None:
    bench = await edged(rate_per_second=5.0, rate_burst=10)
    caplog.set_level(logging.INFO)
    async with await bench.unpaired() as client:
        client._reader.cancel()  # read the raw answers
        for _ in range(30):
            await client.send_raw("[" * 60_000)  # under the unpaired frame limit
        answers = []
        for _ in range(30):
            answers.append(json.loads(await asyncio.wait_for(client.ws.recv(), 5)))
    reasons = [a["error"]["data"]["reason"] for a in answers]
    # 10 parsed (the burst) and answered parse_error; the rest refused before parsing.
    assert reasons.count("parse_error") <= 11
    assert "rate_limited" in reasons
    assert set(reasons) <= {"parse_error", "rate_limited"}
    assert not [r for r in caplog.records if r.exc_info]  # no traceback at all
    lines = [r for r in caplog.records if "malformed message" in r.getMessage()]
    assert len(lines) == 1


async def test_tls_still_works_for_plain_clients_after_gate(edged) -> None:
    bench = await edged()
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    _reader, writer = await asyncio.open_connection("127.0.0.1", bench.port, ssl=context)
    assert writer.get_extra_info("ssl_object").version() == "TLSv1.3"
    writer.close()
    with contextlib.suppress(ConnectionError, ssl.SSLError):
        await writer.wait_closed()


async def test_unpaired_frames_are_small_until_the_certificate_is_paired(edged) -> None:
    # An unpaired peer may only pair: 64 KiB frames, two queued. Paired: max_message_bytes.
    bench = await edged()
    big = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "system.info",
                      "params": {"x": "y" * 500_000}})
    async with await bench.unpaired() as client:
        client._reader.cancel()
        await client.send_raw(big)
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await asyncio.wait_for(client.ws.recv(), 5)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009
    async with await bench.client("desk", "identity:read") as paired:
        paired._reader.cancel()
        await paired.send_raw(big)
        answer = json.loads(await asyncio.wait_for(paired.ws.recv(), 5))
        assert answer["error"]["data"]["reason"] == "invalid_params"  # read, then refused
