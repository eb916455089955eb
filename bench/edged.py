"""edged benchmarks: RPC latency against in-process, throughput, event fan-out, RSS, start-up."""

from __future__ import annotations

import asyncio
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.table import Row, fmt_time
from edged.api.methods import dispatch
from edged.config import Config
from edged.daemon import Daemon
from edged.sdk import Client, Credentials, pair
from simulators.pinpad import Keypad, SimulatedDisplay
from simulators.slots import SimulatedSlots

__all__ = ["run"]


def _pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p * len(ordered)))]


class _LocalConnection:
    """What dispatch needs from a connection, for the in-process side of the ratio."""

    client_id = "bench"
    client_name = "bench"
    peer = "local"
    paired = True
    scopes = frozenset({"identity:read", "admin"})

    def subscribe(self, names: Any) -> None:  # pragma: no cover - not used here
        raise NotImplementedError


async def _code(display: SimulatedDisplay) -> str:
    match = re.search(r"Code: (\d{6})", display.screen())
    assert match
    return match.group(1)


async def _latency(quick: bool) -> list[Row]:
    n = 100 if quick else 500
    keypad = Keypad()
    display = SimulatedDisplay(keypad)
    with tempfile.TemporaryDirectory() as tmp:
        daemon = Daemon(Config(host="127.0.0.1", port=0, state_dir=Path(tmp), mdns=False,
                               rate_per_second=1e6, rate_burst=10**6,
                               max_connections_per_client=500, max_connections=1024,
                               max_per_paired_address=500), ui=display)
        await daemon.start()
        try:
            deadline = time.monotonic() + 5
            while not daemon.slots.find("vitale") and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            credentials = await pair("127.0.0.1", daemon.server.port, daemon.keystore.fingerprint,
                                     "bench", ["identity:read"], lambda: _code(display))
            rows: list[Row] = []
            async with await credentials.connect() as client:
                for method, count in (("system.info", n), ("vitale.read", n // 5)):
                    remote: list[float] = []
                    local: list[float] = []
                    conn = _LocalConnection()
                    for _ in range(count):
                        t = time.perf_counter()
                        await client.call(method)
                        remote.append(time.perf_counter() - t)
                        t = time.perf_counter()
                        await dispatch(daemon, conn, method, {})  # type: ignore[arg-type]
                        local.append(time.perf_counter() - t)
                    p50r, p50l = statistics.median(remote), statistics.median(local)
                    rows.append(Row(f"{method} through the daemon (WSS)", fmt_time(p50r),
                                    f"p99 {fmt_time(_pct(remote, 0.99))}",
                                    f"{p50r / p50l:.1f}x in-process"))
                    rows.append(Row(f"{method} in-process (same handler)", fmt_time(p50l),
                                    f"p99 {fmt_time(_pct(local, 0.99))}", "1.0x"))
            rows += await _fanout(daemon, credentials, 20 if quick else 100)
        finally:
            await daemon.stop()
    return rows


async def _fanout(daemon: Daemon, credentials: Credentials, subscribers: int) -> list[Row]:
    clients = [await credentials.connect() for _ in range(subscribers)]
    try:
        for c in clients:
            await c.subscribe(["pin.state"])
        spreads: list[float] = []
        lasts: list[float] = []
        for i in range(10):
            sent = time.time()
            daemon.bus.publish("pin.state", result="bench", tries_left=i)
            arrivals = []
            for c in clients:
                await c.next_event(10)
                arrivals.append(time.time())
            lasts.append(max(arrivals) - sent)
            spreads.append(max(arrivals) - min(arrivals))
        return [Row(f"event fan-out to {subscribers} subscribers (last one)",
                    fmt_time(statistics.median(lasts)),
                    f"spread {fmt_time(statistics.median(spreads))}")]
    finally:
        for c in clients:
            await c.close()


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


async def _subprocess_daemon(quick: bool) -> list[Row]:
    from edged.discovery import browse

    rows: list[Row] = []
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "edged.toml"
        config.write_text(f'[server]\nhost = "127.0.0.1"\nport = 0\nrate_per_second = 1e6\n'
                          f'rate_burst = 1000000\nmax_connections_per_client = 500\n'
                          f'max_connections = 1024\nmax_per_paired_address = 500\n'
                          f'[state]\nstate_dir = "{tmp}/state"\n'
                          f'[discovery]\nname = "bifente-bench-{os.getpid()}"\n'
                          f'mdns_interfaces = ["127.0.0.1"]\n[log]\nlog_level = "warning"\n')
        started = time.monotonic()
        process = subprocess.Popen([sys.executable, "-m", "edged", "--config", str(config)],
                                   stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        try:
            line = await asyncio.to_thread(process.stdout.readline)  # type: ignore[union-attr]
            ready = time.monotonic() - started
            port, fingerprint = re.search(r":(\d+) fingerprint sha256:([0-9a-f]{64})",
                                          line).groups()  # type: ignore[union-attr]
            found = None
            while found is None and time.monotonic() - started < 30:
                terminals = await browse(1.0, interfaces=["127.0.0.1"])
                found = next((t for t in terminals if t.fingerprint == fingerprint), None)
            discoverable = time.monotonic() - started
            rows.append(Row("daemon start to READY (process start included)", fmt_time(ready)))
            rows.append(Row("daemon start to found by mDNS browse", fmt_time(discoverable)))
            await asyncio.sleep(1)
            idle = _rss_kib(process.pid)
            rows.append(Row("daemon RSS, idle", f"{idle / 1024:.1f} MiB"))
            # The subprocess has no display to show a pairing code: issue the load client's
            # certificate from the daemon's own state files, as pairing would.
            creds = await _issue_client(Path(tmp) / "state", int(port), fingerprint)
            for clients in (1, 10, 100):
                if quick and clients == 100:
                    clients = 30
                rate, peak = await _throughput(creds, clients, process.pid,
                                               2.0 if quick else 4.0)
                rows.append(Row(f"system.info throughput, {clients} client(s)",
                                f"{rate:,.0f}/s", f"RSS under load {peak / 1024:.1f} MiB"))
        finally:
            process.terminate()
            process.wait(timeout=15)
    return rows


async def _issue_client(state: Path, port: int, fingerprint: str) -> Credentials:
    """A client certificate from the daemon's own CA (as pairing would issue it)."""
    from edged.api.tlsclient import generate_client_key_and_csr
    from edged.state.clients import ClientRegistry
    from edged.state.keystore import Keystore, fingerprint_of

    key_pem, csr_pem = generate_client_key_and_csr("bench")
    from edged.state.keywrap import load_key_wrapper

    keystore = Keystore(state / "keys", wrapper=load_key_wrapper(state))  # as the daemon
    cert = keystore.issue_client_certificate("bench", csr_pem, ["identity:read"])
    from cryptography.hazmat.primitives.serialization import Encoding

    der = cert.public_bytes(Encoding.DER)
    with ClientRegistry(state / "clients.db") as registry:
        registry.add("bench", fingerprint_of(der), ["identity:read"])
    return Credentials("bench", "127.0.0.1", port, fingerprint,
                       cert.public_bytes(Encoding.PEM).decode(), key_pem.decode())


async def _throughput(creds: Credentials, clients: int, pid: int,
                      seconds: float) -> tuple[float, int]:
    conns: list[Client] = [await creds.connect() for _ in range(clients)]
    done = 0
    peak = 0
    stop = time.monotonic() + seconds

    async def worker(c: Client) -> None:
        nonlocal done
        while time.monotonic() < stop:
            await c.call("system.info")
            done += 1

    async def sampler() -> None:
        nonlocal peak
        while time.monotonic() < stop:
            peak = max(peak, _rss_kib(pid))
            await asyncio.sleep(0.2)

    start = time.monotonic()
    await asyncio.gather(sampler(), *(worker(c) for c in conns))
    elapsed = time.monotonic() - start
    for c in conns:
        await c.close()
    return done / elapsed, peak


def run(quick: bool = False) -> list[Row]:
    """Every edged measurement (pcscd and simulated cards are started for the Vitale read)."""
    with SimulatedSlots("gp", "family"):
        rows = asyncio.run(_latency(quick))
        rows += asyncio.run(_subprocess_daemon(quick))
    return rows
