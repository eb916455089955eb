"""The review's mismatches (docs/protocol.md against the wire), each through a real daemon."""

from __future__ import annotations

import asyncio
import json

import pytest
import websockets

from bifente.client import Client, RemoteError, RequestTooLarge
from bifente.edged.api.contract import all_reasons

pytestmark = pytest.mark.asyncio


async def _raw(client: Client) -> websockets.ClientConnection:
    """The socket with the SDK's reader stopped, to read answers as they come."""
    client._reader.cancel()
    await asyncio.sleep(0)
    return client.ws


async def _answer(ws: websockets.ClientConnection) -> dict:
    return json.loads(await asyncio.wait_for(ws.recv(), 5))


async def _no_reply_then(ws: websockets.ClientConnection, marker: int) -> None:
    """The next message is the answer to the marker call: nothing was sent before it."""
    await ws.send(json.dumps({"jsonrpc": "2.0", "id": marker, "method": "rpc.discover"}))
    answer = await _answer(ws)
    assert answer.get("id") == marker, f"an unexpected message came first: {answer}"


NOTIFICATIONS = [
    {"jsonrpc": "2.0", "method": "no.such.method"},
    {"jsonrpc": "2.0", "method": "system.info", "params": {"unexpected": 1}},
    {"jsonrpc": "2.0", "method": "system.info", "params": ["a", "b"]},
    {"jsonrpc": "2.0", "method": "readers.list"},
]


async def test_notifications_are_never_answered_unpaired(edged) -> None:
    bench = await edged()
    ws = await _raw(await bench.unpaired())
    for message in NOTIFICATIONS:  # -32000, -32601, -32602 would have been the errors
        await ws.send(json.dumps(message))
    await _no_reply_then(ws, 1)


async def test_notifications_are_never_answered_paired(edged) -> None:
    bench = await edged()
    ws = await _raw(await bench.client("desk", "identity:read"))
    for message in NOTIFICATIONS:
        await ws.send(json.dumps(message))
    await _no_reply_then(ws, 2)


async def test_errors_carry_the_request_id_when_readable(edged) -> None:
    bench = await edged(max_message_bytes=4096)
    ws = await _raw(await bench.client("desk", "identity:read"))
    cases = [
        ({"jsonrpc": "2.0", "id": 31, "method": "system.info", "params": ["a", "b"]}, -32602),
        ({"jsonrpc": "1.0", "id": "x-9", "method": "system.info"}, -32600),
        ({"jsonrpc": "2.0", "id": 33, "method": ""}, -32600),
        ({"jsonrpc": "2.0", "id": 34, "method": "system.info", "params": {"x": "y" * 5000}},
         -32004),
    ]
    for message, code in cases:
        await ws.send(json.dumps(message))
        answer = await _answer(ws)
        assert answer["id"] == message["id"] and answer["error"]["code"] == code, answer
    await ws.send("{not json")
    assert (await _answer(ws))["id"] is None  # JSON-RPC 2.0 §5: unreadable id
    await ws.send(json.dumps({"jsonrpc": "2.0", "id": 1.5, "method": "system.info"}))
    answer = await _answer(ws)
    assert answer["id"] is None and answer["error"]["code"] == -32600


async def test_system_info_names_the_caller_and_its_scopes(edged) -> None:
    bench = await edged()
    async with await bench.client("Front desk", "identity:read", "cps:sign") as client:
        info = await client.call("system.info")
    assert info["client"] == "Front desk"
    assert info["scopes"] == ["cps:sign", "identity:read"]
    assert info["limits"]["max_message_bytes"] == bench.daemon.config.max_message_bytes


async def test_unknown_client_reason_is_in_the_table(edged) -> None:
    bench = await edged()
    async with await bench.client("admin", "admin") as client:
        with pytest.raises(RemoteError) as exc:
            await client.call("clients.revoke", {"name": "nobody"})
    assert exc.value.code == -32602 and exc.value.reason == "unknown_client"
    assert "unknown_client" in all_reasons()


async def test_too_many_connections_gets_the_documented_error_and_close(edged) -> None:
    bench = await edged(max_connections_per_client=1)
    credentials = await bench.pair("tablet", "identity:read")
    first = await credentials.connect()
    second = await credentials.connect()
    ws = await _raw(second)
    answer = await _answer(ws)
    assert answer["id"] is None and answer["error"]["code"] == -32003
    assert answer["error"]["data"]["reason"] == "too_many_connections"
    with pytest.raises(websockets.ConnectionClosed) as closed:
        await asyncio.wait_for(ws.recv(), 5)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1008
    await first.close()
    await second.close()


async def test_oversized_call_fails_at_once_never_hangs(edged) -> None:
    bench = await edged(max_message_bytes=8192)
    async with await bench.client("signer", "cps:sign") as client:
        with pytest.raises(RequestTooLarge, match="at most 8192 bytes"):
            await asyncio.wait_for(client.call("cps.sign", {"data": "A" * 20000}), 5)
        client._limit_known, client.max_request = True, 1 << 30  # an SDK that does not know
        with pytest.raises(RemoteError) as exc:
            await asyncio.wait_for(client.call("cps.sign", {"data": "A" * 12000}), 5)
        assert exc.value.reason == "too_large" and exc.value.data["limit"] == 8192
        # Beyond twice the limit the daemon closes with 1009 (RFC 6455 §7.4.1): the SDK says
        # so at once, pointing at uploads, and never hangs.
        with pytest.raises(RemoteError) as exc:
            await asyncio.wait_for(client.call("cps.sign", {"data": "A" * 20000}), 5)
        assert exc.value.reason == "too_large" and "upload" in exc.value.message


async def test_rpc_discover_serves_docs_openrpc_json(edged) -> None:
    from bifente.edged.api.openrpc import TARGET

    bench = await edged()
    async with await bench.unpaired() as client:
        served = await client.call("rpc.discover")
    assert served == json.loads(TARGET.read_text())


async def test_events_carry_consecutive_sequence_numbers(edged) -> None:
    bench = await edged()
    async with await bench.client("watcher", "identity:read") as client:
        await client.subscribe(["terminal.cancel"])
        for _ in range(3):
            bench.daemon.bus.publish("terminal.cancel")
        seqs = [(await client.next_event())["seq"] for _ in range(3)]
    assert seqs == [seqs[0], seqs[0] + 1, seqs[0] + 2]


async def test_a_named_client_gets_higher_limits(edged) -> None:
    bench = await edged(rate_per_second=1.0, rate_burst=4, max_connections_per_client=1,
                        limits={"Practice server": {"rate_burst": 30, "max_connections": 3}})
    proxy = await bench.pair("Practice server", "identity:read")
    connections = [await proxy.connect() for _ in range(3)]
    info = await connections[2].call("system.info")
    assert info["limits"]["rate_burst"] == 30 and info["limits"]["max_connections_per_client"] == 3
    results = await asyncio.gather(*(connections[0].call("system.info") for _ in range(20)))
    assert len(results) == 20
    async with await bench.client("desk", "identity:read") as desk:
        limited = await asyncio.gather(*(desk.call("system.info") for _ in range(10)),
                                       return_exceptions=True)
    assert any(isinstance(r, RemoteError) and r.reason == "rate_limited" for r in limited)
    for c in connections:
        await c.close()
