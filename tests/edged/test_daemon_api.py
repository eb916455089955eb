"""edged over real TLS 1.3 WebSockets: pairing, scopes, revocation, limits, malformed input."""

from __future__ import annotations

import asyncio
import json
import logging
import shutil
import ssl
import subprocess

import pytest
import websockets

from bifente.client import Client, RemoteError
from bifente.edged.state.audit import AuditLog, read_anchor_key

pytestmark = pytest.mark.asyncio


async def test_unpaired_client_may_only_pair(edged) -> None:
    bench = await edged()
    async with await bench.unpaired() as client:
        for method in ("system.info", "readers.list", "vitale.read", "cps.sign"):
            with pytest.raises(RemoteError) as exc:
                await client.call(method, {"data": "AA=="} if method == "cps.sign" else {})
            assert exc.value.reason == "not_paired" and exc.value.code == -32000


async def test_pairing_then_mutual_tls(edged) -> None:
    bench = await edged()
    credentials = await bench.pair("front desk", "identity:read")
    assert credentials.scopes == ("identity:read",)
    assert "BEGIN CERTIFICATE" in credentials.certificate_pem
    async with await credentials.connect() as client:
        info = await client.call("system.info")
        assert info["fingerprint"] == bench.fingerprint and info["protocol"] == "1.0"
    events = [r.event for r in bench.daemon.audit.records()]
    assert "pair.begin" in events and "pair.complete" in events


async def test_wrong_codes_count_down_then_lock_out(edged) -> None:
    bench = await edged()
    async with await bench.unpaired() as client:
        from bifente.client.tls import generate_client_key_and_csr

        _key, csr = generate_client_key_and_csr("guesser")
        begun = await client.call("pair.begin", {"name": "guesser", "csr": csr.decode()})
        right = bench.code_on_display()
        wrong = f"{(int(right) + 1) % 1_000_000:06d}"
        with pytest.raises(RemoteError) as exc:
            await client.call("pair.complete", {"pairing_id": begun["pairing_id"],
                                                "code": wrong})
        assert exc.value.reason == "wrong_code" and exc.value.data["attempts_left"] == 2
        reasons = []
        for _ in range(8):
            begun = await client.call("pair.begin", {"name": "guesser", "csr": csr.decode()}) \
                if not reasons or reasons[-1] != "locked_out" else begun
            try:
                await client.call("pair.complete", {"pairing_id": begun["pairing_id"],
                                                    "code": wrong})
            except RemoteError as err:
                reasons.append(err.reason)
                if err.reason == "locked_out":
                    assert err.data["retry_after"] > 0
                    break
        assert reasons[-1] == "locked_out"


async def test_missing_scope_is_refused(edged) -> None:
    bench = await edged()
    async with await bench.client("reception", "identity:read") as client:
        with pytest.raises(RemoteError) as exc:
            await client.call("cps.sign", {"data": "aGVsbG8="})
        assert exc.value.reason == "missing_scope" and exc.value.data["scopes"] == [
            "cps:authenticate", "cps:sign"]
        with pytest.raises(RemoteError) as exc:
            await client.call("clients.list")
        assert exc.value.reason == "missing_scope"


async def test_revocation_is_immediate(edged) -> None:
    bench = await edged()
    victim_credentials = await bench.pair("laptop", "identity:read")
    victim = await victim_credentials.connect()
    async with await bench.client("admin console", "admin") as admin:
        listed = await admin.call("clients.list")
        assert {c["name"] for c in listed["clients"]} == {"laptop", "admin console"}
        result = await admin.call("clients.revoke", {"name": "laptop"})
        assert result == {"revoked": "laptop", "connections_closed": 1}
    with pytest.raises(ConnectionError):
        await victim.call("system.info")
    await victim.close()
    again = await victim_credentials.connect()
    with pytest.raises(RemoteError) as exc:
        await again.call("system.info")
    assert exc.value.reason == "revoked"
    await again.close()
    assert "client.revoke" in [r.event for r in bench.daemon.audit.records()]


async def test_an_admin_revoking_itself_gets_the_answer_then_is_closed(edged) -> None:
    bench = await edged()
    async with await bench.client("admin console", "admin") as admin:
        result = await admin.call("clients.revoke", {"name": "admin console"})
        assert result["revoked"] == "admin console"
        with pytest.raises((ConnectionError, RemoteError)):
            await admin.call("system.info")


async def test_revocation_by_another_process_applies_on_the_next_call(edged) -> None:
    # The connection keeps its client between calls while the registry is unchanged; a
    # revocation written by another connection to the database (the CLI) is seen at once.
    from bifente.edged.state.clients import ClientRegistry

    bench = await edged()
    async with await bench.client("laptop", "identity:read") as client:
        await client.call("system.info")
        await client.call("system.info")
        with ClientRegistry(bench.daemon.config.state_dir / "clients.db") as other:
            other.revoke("laptop", by="cli")
        with pytest.raises(RemoteError) as exc:
            await client.call("system.info")
        assert exc.value.reason == "revoked"


async def test_malformed_and_oversized_messages(edged) -> None:
    bench = await edged(max_message_bytes=4096)
    async with await bench.client("tester", "identity:read") as client:
        ws = client.ws
        await client.send_raw("{not json")
        await client.send_raw(json.dumps({"jsonrpc": "2.0", "id": 5, "method": "system.info",
                                          "params": {"x": "y" * 5000}}))
        await client.send_raw(json.dumps({"jsonrpc": "2.0", "id": 6, "method": "nope"}))
        await client.send_raw(json.dumps({"jsonrpc": "2.0", "id": 7, "method": "system.info",
                                          "params": {"unexpected": 1}}))
        # The SDK reader only routes known ids; read the raw answers instead.
        client._reader.cancel()
        answers = [json.loads(await asyncio.wait_for(ws.recv(), 5)) for _ in range(4)]
        by_reason = {a["error"]["data"]["reason"]: a for a in answers}
        assert set(by_reason) == {"parse_error", "too_large", "method_not_found",
                                  "invalid_params"}
        assert by_reason["parse_error"]["id"] is None
        assert by_reason["too_large"]["error"]["code"] == -32004


async def test_rate_limit(edged) -> None:
    bench = await edged(rate_per_second=1.0, rate_burst=3)
    async with await bench.client("busy", "identity:read") as client:
        results = await asyncio.gather(*(client.call("system.info") for _ in range(6)),
                                       return_exceptions=True)
        limited = [r for r in results if isinstance(r, RemoteError)]
        assert limited and all(r.reason == "rate_limited" for r in limited)
        assert len(results) - len(limited) >= 3


async def test_connection_cap_per_client(edged) -> None:
    bench = await edged(max_connections_per_client=2)
    credentials = await bench.pair("tablet", "identity:read")
    first, second = await credentials.connect(), await credentials.connect()
    third = await credentials.connect()
    with pytest.raises(ConnectionError):
        await third.call("system.info")
    assert third.closed_reason and "too many connections" in third.closed_reason
    for c in (first, second, third):
        await c.close()


async def test_idle_connections_are_closed(edged) -> None:
    bench = await edged(idle_timeout=0.3)
    async with await bench.unpaired() as client:
        await asyncio.sleep(0.8)
        with pytest.raises((ConnectionError, websockets.ConnectionClosed)):
            await client.call("system.info")


async def test_idle_timeout_counts_from_the_last_message(edged) -> None:
    # The timer is moved on lazily (edged/api/server.py): calls more often than the timeout
    # keep the connection for longer than it, and silence after the last one closes it.
    bench = await edged(idle_timeout=0.4)
    client = await bench.client("busy", "identity:read")
    try:
        for _ in range(8):  # 0.8 s in all, a call every 0.1 s
            await client.call("system.info")
            await asyncio.sleep(0.1)
        await asyncio.sleep(1.0)
        with pytest.raises((ConnectionError, websockets.ConnectionClosed)):
            await client.call("system.info")
        assert client.closed_reason == "idle timeout"
    finally:
        await client.close()


async def test_a_subscribed_connection_is_not_idle(edged) -> None:
    bench = await edged(idle_timeout=0.3)
    client = await bench.client("listener", "identity:read")
    try:
        await client.subscribe()
        await asyncio.sleep(1.0)
        assert (await client.call("system.info"))["client"] == "listener"
    finally:
        await client.close()


async def test_a_failing_client_registry_is_answered_with_the_requests_id(edged) -> None:
    # The revocation check reads the registry after parsing: when it fails, the answer still
    # carries the call's id, so the caller gets its error instead of waiting out a timeout.
    bench = await edged()
    client = await bench.client("desk", "identity:read")
    try:
        bench.daemon.clients.close()  # the next calls' revocation checks raise
        # Two calls at once: the SDK gives an error with a null id to a lone pending call
        # only, so each answer must carry its own id.
        answers = await asyncio.gather(*(client.call("system.info", timeout=5)
                                         for _ in range(2)), return_exceptions=True)
        assert [getattr(a, "reason", a) for a in answers] == ["internal_error"] * 2
    finally:
        await client.close()


async def test_tls_below_1_3_fails_the_handshake(edged) -> None:
    bench = await edged()
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.maximum_version = ssl.TLSVersion.TLSv1_2
    # The server aborts the handshake: an alert (SSLError) or a reset, depending on timing.
    with pytest.raises((ssl.SSLError, ConnectionResetError)):
        await asyncio.open_connection("127.0.0.1", bench.port, ssl=context)


@pytest.mark.interop
@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl not installed")
async def test_openssl_s_client_tls12_refused_tls13_accepted(edged) -> None:
    bench = await edged()

    def s_client(version: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["openssl", "s_client", version, "-connect",
                               f"127.0.0.1:{bench.port}", "-brief"], input="",
                              capture_output=True, text=True, timeout=30, check=False)

    old = await asyncio.to_thread(s_client, "-tls1_2")
    assert old.returncode != 0
    new = await asyncio.to_thread(s_client, "-tls1_3")
    assert new.returncode == 0 and "TLSv1.3" in new.stderr + new.stdout


async def test_pinned_fingerprint_mismatch_is_refused(edged) -> None:
    bench = await edged()
    with pytest.raises(ssl.SSLError):
        await Client.connect("127.0.0.1", bench.port, "0" * 64)


async def test_audit_chain_survives_restart(edged, tmp_path) -> None:
    bench = await edged()
    await bench.pair("desk", "identity:read")
    await bench.daemon.stop()
    path = bench.daemon.config.state_dir / "audit.db"
    key = read_anchor_key(bench.daemon.config.state_dir / "audit.key", bench.daemon.key_wrapper)
    with AuditLog(path, readonly=True, anchor_key=key) as log:
        report = log.verify()
    assert report.ok and report.records >= 4


async def test_deeply_nested_json_is_a_parse_error_in_one_log_line(edged, caplog) -> None:
    # D6: 5000 "[" raised RecursionError: -32603 and an ERROR traceback per message.
    caplog.set_level(logging.INFO)
    bench = await edged()
    async with await bench.client("tester", "identity:read") as client:
        client._reader.cancel()
        for text in ("[" * 5000, '{"a":' * 3000):
            await client.send_raw(text)
            answer = json.loads(await asyncio.wait_for(client.ws.recv(), 5))
            assert answer["error"]["code"] == -32700
            assert answer["error"]["data"]["reason"] == "parse_error"
    nested = [r for r in caplog.records if "nested too deep" in r.getMessage()]
    assert len(nested) == 2 and all(r.exc_text is None and "\n" not in r.getMessage()
                                    for r in nested)
    assert not [r for r in caplog.records if r.levelname == "ERROR"]
