"""The browser path: a web page in headless Chromium uses the terminal through `bifente bridge`.

edged --simulate runs with the virtual terminal; the bridge is paired with it through the
Python SDK (the code read off the virtual display) and allows one web origin; the page and the
compiled SDK are served over HTTPS; sdk/js/test/browser/bridge.test.ts drives Chromium
(playwright-core, Debian's /usr/bin/chromium) and the keypad. Here, without a browser, the
bridge's handshake gate is also checked header by header.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from bifente.edged.api.methods import METHODS
from bifente.edged.bridge import AllowList, Bridge
from tests.needs import missing
from tests.sdk_js.jsrun import Edged, pair_on_display, run_node
from tests.sdk_js.pages import PageServer

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")
SHOTS = ROOT / "artifacts" / "web"


@dataclass(frozen=True)
class RunningBridge:
    """A `bifente bridge serve` process and what the test needs to reach it."""

    url: str
    port: int
    token: str
    clinic_origin: str
    process: subprocess.Popen[str]


def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "bifente.edged.cli.main", *args], env=env,
                          capture_output=True, text=True, timeout=60, check=False)


@pytest.fixture(scope="module")
def pages(js_build: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[PageServer]:
    """The clinic page and the compiled SDK over HTTPS (clinic.test and evil.test)."""
    with PageServer(js_build / "test" / "browser" / "page", js_build / "dist",
                    tmp_path_factory.mktemp("pages")) as server:
        yield server


@pytest.fixture(scope="module")
def bridge(edged_sim: Edged, pages: PageServer,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningBridge]:
    """The bridge, paired with edged (identity:read, cps:sign, dmp:read), allowing the clinic."""
    tmp = tmp_path_factory.mktemp("bridge")
    env = {**os.environ, "BIFENTE_CLIENT_DIR": str(tmp / "terminals"),
           "BIFENTE_BRIDGE_ALLOWLIST": str(tmp / "bridge.json"), "PYTHONPATH": str(ROOT)}
    credentials = asyncio.run(pair_on_display(edged_sim, "Bridge front desk",
                                    ["identity:read", "cps:sign", "dmp:read"]))
    credentials.save(tmp / "terminals")
    clinic = f"https://clinic.test:{pages.port}"
    allowed = _cli(env, "bridge", "allow", clinic, "--scope", "identity:read",
                   "--scope", "cps:sign")
    assert allowed.returncode == 0, allowed.stderr
    token = allowed.stdout.strip()
    assert re.fullmatch(r"[A-Za-z0-9_-]{43}", token), allowed.stdout
    assert token not in (tmp / "bridge.json").read_text()  # only its digest is kept
    process = subprocess.Popen([sys.executable, "-m", "bifente.edged.cli.main",
                                "-v", "bridge", "serve",
                                "--port", "0"], env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        line = process.stdout.readline()  # type: ignore[union-attr]
        match = re.search(r"ws://127\.0\.0\.1:(\d+)/", line)
        assert match, line + process.stderr.read()  # type: ignore[union-attr]
        assert clinic in line
        yield RunningBridge(match.group(0), int(match.group(1)), token, clinic, process)
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)


@pytest.mark.timeout(360)
def test_web_page_reads_vitale_and_signs_through_the_bridge(
        js_build: Path, edged_sim: Edged, pages: PageServer, bridge: RunningBridge) -> None:
    if not CHROMIUM.exists():
        missing("/usr/bin/chromium is missing (make setup installs the chromium package)")
    SHOTS.mkdir(parents=True, exist_ok=True)
    run = run_node(js_build, "test/browser/*.test.js", {
        "BRIDGE_URL": bridge.url, "BRIDGE_TOKEN": bridge.token,
        "CLINIC_URL": f"{bridge.clinic_origin}/", "FOREIGN_URL": f"https://evil.test:{pages.port}/",
        "PAGES_SPKI": pages.spki_sha256, "EDGED_CONTROL": edged_sim.control,
        "CHROMIUM": str(CHROMIUM), "SCREENSHOTS": str(SHOTS)})
    assert run.returncode == 0 and run.failed == 0, run.output[-8000:]
    assert run.passed == 4, run.output[-8000:]


async def _raw_handshake(port: int, headers: list[tuple[str, str]]) -> str:
    """A WebSocket upgrade written by hand (repeated or odd headers included): the status line."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    lines = ["GET / HTTP/1.1", "Upgrade: websocket", "Connection: Upgrade",
             "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==", "Sec-WebSocket-Version: 13",
             *(f"{name}: {value}" for name, value in headers)]
    writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
    await writer.drain()
    status = (await asyncio.wait_for(reader.readline(), 10)).decode().strip()
    writer.close()
    return status


@pytest.mark.timeout(120)
def test_bridge_handshake_gate(bridge: RunningBridge) -> None:
    """Only one Host naming the bridge, one allowed Origin, its token and bifente.v1 pass."""
    here, clinic = f"127.0.0.1:{bridge.port}", bridge.clinic_origin
    good = f"bifente.v1, bifente-token.{bridge.token}"
    cases: dict[str, list[tuple[str, str]]] = {
        "allowed": [("Host", here), ("Origin", clinic), ("Sec-WebSocket-Protocol", good)],
        "localhost": [("Host", f"localhost:{bridge.port}"), ("Origin", clinic),
                      ("Sec-WebSocket-Protocol", good)],
        "no origin": [("Host", here), ("Sec-WebSocket-Protocol", good)],
        "foreign origin": [("Host", here), ("Origin", "https://evil.test"),
                           ("Sec-WebSocket-Protocol", good)],
        "two origins": [("Host", here), ("Origin", "https://evil.test"), ("Origin", clinic),
                        ("Sec-WebSocket-Protocol", good)],
        "http instead of https": [("Host", here), ("Origin", clinic.replace("https:", "http:")),
                                  ("Sec-WebSocket-Protocol", good)],
        "no token": [("Host", here), ("Origin", clinic), ("Sec-WebSocket-Protocol", "bifente.v1")],
        "wrong token": [("Host", here), ("Origin", clinic),
                        ("Sec-WebSocket-Protocol", f"bifente.v1, bifente-token.{'A' * 43}")],
        "two tokens": [("Host", here), ("Origin", clinic), ("Sec-WebSocket-Protocol",
                                                             f"{good}, bifente-token.{'A' * 43}")],
        "no subprotocol": [("Host", here), ("Origin", clinic),
                           ("Sec-WebSocket-Protocol", f"bifente-token.{bridge.token}")],
        "DNS rebinding": [("Host", f"evil.test:{bridge.port}"), ("Origin", clinic),
                          ("Sec-WebSocket-Protocol", good)],
        "two Host headers": [("Host", here), ("Host", f"evil.test:{bridge.port}"),
                             ("Origin", clinic), ("Sec-WebSocket-Protocol", good)],
    }
    outcomes = {name: asyncio.run(_raw_handshake(bridge.port, h)) for name, h in cases.items()}
    assert outcomes.pop("allowed") == "HTTP/1.1 101 Switching Protocols"
    assert outcomes.pop("localhost") == "HTTP/1.1 101 Switching Protocols"
    assert outcomes == dict.fromkeys(outcomes, "HTTP/1.1 403 Forbidden")


@pytest.mark.timeout(120)
def test_bridge_forwards_and_filters(bridge: RunningBridge) -> None:
    """Answers come back verbatim with their ids; what the origin may not call never leaves."""

    async def run() -> list[str]:
        async with connect(f"ws://127.0.0.1:{bridge.port}/",
                           additional_headers={"Origin": bridge.clinic_origin},
                           subprotocols=["bifente.v1", f"bifente-token.{bridge.token}"],  # type: ignore[list-item]
                           open_timeout=10) as ws:
            assert ws.subprotocol == "bifente.v1"
            out = []
            for text in ('{"jsonrpc":"2.0","id":"a","method":"system.info"}',
                         '{"jsonrpc":"2.0","id":7,"method":"dmp.find","params":{}}',
                         '{"jsonrpc":"2.0","method":"clients.list"}',  # refused notification
                         '{"jsonrpc":"2.0","id":8,"method":"pair.complete","params":{}}',
                         '[{"jsonrpc":"2.0","id":9,"method":"clients.list"}]',
                         "not json"):
                await ws.send(text)
            for _ in range(5):
                out.append(str(await asyncio.wait_for(ws.recv(), 10)))
            return out

    answers = [json.loads(a) for a in asyncio.run(run())]
    by_id = {json.dumps(a.get("id")): a for a in answers}
    assert by_id['"a"']["result"]["client"] == "Bridge front desk"
    # The bridge's pairing holds dmp:read, the origin does not: refused by the bridge itself.
    assert by_id["7"]["error"]["data"] == {"reason": "missing_scope",
                                          "scopes": sorted(METHODS["dmp.find"].scopes)}
    assert "web origin" in by_id["7"]["error"]["message"]
    assert by_id["8"]["error"]["code"] == -32601
    refused = sorted(a["error"]["data"]["reason"] for a in answers if a["id"] is None)
    assert refused == ["invalid_request", "parse_error"]


def _revoke_in_registry(edged: Edged, name: str) -> None:
    """Revoke a client in the daemon's registry, as `bifente clients revoke` would record it.

    The daemon re-reads a client on every call, so the next call through that certificate is
    refused (-32002) and its socket closed with 4403. No admin client is needed here.
    """
    from bifente.edged.state.clients import ClientRegistry

    (registry,) = (p for p in edged.state_dir.glob("clients.*") if p.suffix in (".db", ".sqlite"))
    with ClientRegistry(registry) as clients:
        clients.revoke(name, by="test")


@pytest.mark.timeout(120)
def test_revocations_close_open_pages(edged_sim: Edged, tmp_path: Path) -> None:
    """Revoking an origin closes its pages (1008); revoking the bridge on edged gives 4403."""

    async def run() -> tuple[int | None, int | None, str]:
        credentials = await pair_on_display(edged_sim, "Bridge two", ["identity:read"])
        allowlist = AllowList(tmp_path / "bridge.json")
        _, token_a = allowlist.allow("https://a.test", ["identity:read"])
        _, token_b = allowlist.allow("https://b.test", ["identity:read"])
        bridge = Bridge(credentials, allowlist, port=0)
        port = await bridge.start()
        info = '{"jsonrpc":"2.0","id":1,"method":"system.info"}'

        def page(origin: str, token: str) -> connect:
            return connect(f"ws://127.0.0.1:{port}/", additional_headers={"Origin": origin},
                           subprotocols=["bifente.v1", f"bifente-token.{token}"],  # type: ignore[list-item]
                           open_timeout=10)
        try:
            async with page("https://a.test", token_a) as a, page("https://b.test", token_b) as b:
                for ws in (a, b):
                    await ws.send(info)
                    assert '"result"' in str(await asyncio.wait_for(ws.recv(), 10))
                assert allowlist.revoke("https://a.test")
                await a.send(info)
                with pytest.raises(ConnectionClosed):
                    await asyncio.wait_for(a.recv(), 10)
                await asyncio.to_thread(_revoke_in_registry, edged_sim, "Bridge two")
                await b.send(info)
                refused = str(await asyncio.wait_for(b.recv(), 10))  # edged's answer, verbatim
                with pytest.raises(ConnectionClosed):
                    await asyncio.wait_for(b.recv(), 10)
                return a.close_code, b.close_code, refused
        finally:
            await bridge.close()

    a_code, b_code, refused = asyncio.run(run())
    assert (a_code, b_code) == (1008, 4403)
    assert json.loads(refused)["error"]["data"]["reason"] == "revoked"
