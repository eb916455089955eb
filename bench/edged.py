"""edged benchmarks: RPC latency against in-process, throughput, event fan-out, RSS, start-up,
stop under load."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.table import Row, fmt_time, goal
from bench.waits import cards_seen
from bifente.client import Client, Credentials, pair
from bifente.edged.api.methods import dispatch
from bifente.edged.config import Config
from bifente.edged.daemon import Daemon
from bifente.edged.readers.pcsc import CardKind
from bifente.simulators.pinpad import Keypad, SimulatedDisplay
from bifente.simulators.world import CardsOn, SimulatedWorld

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
            await cards_seen(daemon, CardKind.VITALE, within=5)
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
            rows += await _fanout(daemon, credentials, 100, 10 if quick else 100)
        finally:
            await daemon.stop()
    return rows


async def _fanout(daemon: Daemon, credentials: Credentials, subscribers: int,
                  events: int) -> list[Row]:
    clients = [await credentials.connect() for _ in range(subscribers)]
    try:
        for c in clients:
            await c.subscribe(["pin.state"])
        spreads: list[float] = []
        lasts: list[float] = []
        first = 0.0
        # One event more, first and not counted: as in every row, what is timed is the
        # steady state (the first event after the subscriptions takes up to 4x the median).
        for i in range(-1, events):
            sent = time.time()
            daemon.bus.publish("pin.state", result="bench", tries_left=max(i, 0))
            arrivals = []
            for c in clients:
                await c.next_event(10)
                arrivals.append(time.time())
            if i < 0:
                first = max(arrivals) - sent
                continue
            lasts.append(max(arrivals) - sent)
            spreads.append(max(arrivals) - min(arrivals))
        p99 = _pct(lasts, 0.99)
        return [goal("F", f"event fan-out to {subscribers} subscribers, p99 of the last one",
                     fmt_time(p99), p99 * 1e3, 50, at_least=False, unit=" ms",
                     detail=f"median {fmt_time(statistics.median(lasts))}, spread "
                            f"{fmt_time(statistics.median(spreads))}, {events} events after "
                            f"one not counted ({fmt_time(first)}); the clients share the "
                            "daemon's process")]
    finally:
        for c in clients:
            await c.close()


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


async def _first_advert(instance: str, found: asyncio.Future[float]) -> Any:
    """A browser listening before edged starts: when our instance is first seen (P7)."""
    from zeroconf import ServiceStateChange
    from zeroconf.asyncio import AsyncServiceBrowser, AsyncZeroconf

    from bifente.edged.discovery import SERVICE_TYPE

    aiozc = AsyncZeroconf(interfaces=["127.0.0.1"])

    def on_change(zeroconf: Any, service_type: str, name: str,
                  state_change: ServiceStateChange) -> None:
        if name.startswith(instance) and not found.done():
            found.set_result(time.monotonic())

    browser = AsyncServiceBrowser(aiozc.zeroconf, SERVICE_TYPE, handlers=[on_change])
    return aiozc, browser


def _daemon_config(tmp: str, instance: str) -> Path:
    """An edged configuration in `tmp` (fresh state, loopback mDNS, no rate limits)."""
    config = Path(tmp) / "edged.toml"
    config.write_text(f'[server]\nhost = "127.0.0.1"\nport = 0\nrate_per_second = 1e6\n'
                      f'rate_burst = 1000000\nmax_connections_per_client = 500\n'
                      f'max_connections = 1024\nmax_per_paired_address = 500\n'
                      f'[state]\nstate_dir = "{tmp}/state"\n'
                      f'[discovery]\nname = "{instance}"\n'
                      f'mdns_interfaces = ["127.0.0.1"]\n[log]\nlog_level = "warning"\n')
    return config


async def _start_and_see(config: Path, instance: str
                         ) -> tuple[asyncio.subprocess.Process, str, float, float]:
    """Start edged with a browser already listening: (process, its first line, seconds to
    READY, seconds until the browser saw the instance), both from the process start (P7)."""
    seen: asyncio.Future[float] = asyncio.get_running_loop().create_future()
    aiozc, browser = await _first_advert(instance, seen)
    started = time.monotonic()
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bifente.edged", "--config", str(config),
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    try:
        assert process.stdout is not None
        line = (await process.stdout.readline()).decode()
        ready = time.monotonic() - started
        discoverable = await asyncio.wait_for(seen, 30) - started
    except BaseException:
        process.kill()
        await process.wait()
        raise
    finally:
        await browser.async_cancel()
        await aiozc.async_close()
    return process, line, ready, discoverable


async def _more_starts(count: int) -> list[tuple[float, float]]:
    """(READY, discoverable) of `count` more starts, each with a fresh state directory."""
    times = []
    for run in range(count):
        with tempfile.TemporaryDirectory() as tmp:
            instance = f"bifente-bench-start-{os.getpid()}-{run}"
            process, _, ready, seen = await _start_and_see(_daemon_config(tmp, instance),
                                                           instance)
            process.terminate()
            await asyncio.wait_for(process.wait(), 15)
            times.append((ready, seen))
    return times


async def _subprocess_daemon(quick: bool) -> list[Row]:
    rows: list[Row] = []
    with tempfile.TemporaryDirectory() as tmp:
        instance = f"bifente-bench-{os.getpid()}"
        # P7 is one start per sample, so it is the median of several, like every other row.
        starts = await _more_starts(0 if quick else 4)
        process, line, ready, discoverable = await _start_and_see(
            _daemon_config(tmp, instance), instance)
        bare = None
        try:
            port, fingerprint = re.search(r":(\d+) fingerprint sha256:([0-9a-f]{64})",
                                          line).groups()  # type: ignore[union-attr]
            starts.append((ready, discoverable))
            ready = statistics.median(r for r, _ in starts)
            discoverable = statistics.median(d for _, d in starts)
            rows.append(Row("daemon start to READY (process start included)", fmt_time(ready)))
            rows.append(goal("P7", "daemon start to seen by an mDNS browser already listening",
                             fmt_time(discoverable), discoverable, 1.0, at_least=False,
                             unit=" s", detail="process start, imports, probes (RFC 6762 "
                                               "§8.1: 3 x 250 ms), announcement; "
                                               f"{len(starts)} start(s): " + ", ".join(
                                                   f"{d:.2f}" for _, d in starts) + " s"))
            await asyncio.sleep(1)
            idle = _rss_kib(process.pid)
            rows.append(Row("daemon RSS, idle", f"{idle * 1024 / 1e6:.1f} MB"))
            # The subprocess has no display to show a pairing code: issue the load client's
            # certificate from the daemon's own state files, as pairing would.
            creds = await _issue_client(Path(tmp) / "state", int(port), fingerprint)
            bare = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "bench.bare", str(Path(tmp) / "state"),
                stdin=subprocess.PIPE, stdout=subprocess.PIPE)
            assert bare.stdout is not None
            bare_line = (await bare.stdout.readline()).decode()
            bare_creds = dataclasses.replace(creds, port=int(bare_line.split()[1]))
            # Rounds alternate edged and the bare server so that the shared machine's load
            # falls on both sides alike; the ratio is the median of the rounds' ratios.
            rounds, seconds = (1, 1.5) if quick else (3, 2.0)
            for clients in (1, 10, 100):
                rates, bare_rates, peak, bare_peak = [], [], 0, 0
                for _ in range(rounds):
                    rate, top = await _throughput(creds, clients, process.pid, seconds)
                    bare_rate, bare_top = await _throughput(bare_creds, clients, bare.pid,
                                                            seconds)
                    rates.append(rate)
                    bare_rates.append(bare_rate)
                    peak, bare_peak = max(peak, top), max(bare_peak, bare_top)
                rate, bare_rate = statistics.median(rates), statistics.median(bare_rates)
                ratio = statistics.median(r / b for r, b in zip(rates, bare_rates, strict=True))
                detail = (f"bare websockets TLS 1.3 server {bare_rate:,.0f}/s; RSS under load "
                          f"{peak * 1024 / 1e6:.1f} MB (bare {bare_peak * 1024 / 1e6:.1f} MB); "
                          f"{rounds} alternating round(s) of {seconds:g} s")
                name = f"system.info throughput, {clients} client(s), edged / bare"
                rows.append(goal("P3", name, f"{rate:,.0f}/s", ratio, 0.7,
                                 at_least=True, detail=detail) if clients == 10 else
                            Row(name, f"{rate:,.0f}/s", detail, f"{ratio:.2f}"))
                if clients == 100:
                    per = (peak - idle) * 1024 / 100 / 1e3
                    rows.append(goal("P6", "edged RSS with 100 connected clients",
                                     f"{peak * 1024 / 1e6:.1f} MB", peak * 1024 / 1e6, 80,
                                     at_least=False, unit=" MB",
                                     detail=f"idle {idle * 1024 / 1e6:.1f} MB, {per:.0f} kB "
                                            "per busy connection"))
        finally:
            if bare is not None:
                bare.stdin.close()  # type: ignore[union-attr]
                await asyncio.wait_for(bare.wait(), 15)
            process.terminate()
            await asyncio.wait_for(process.wait(), 15)
    return rows


async def _issue_client(state: Path, port: int, fingerprint: str) -> Credentials:
    """A client certificate from the daemon's own CA (as pairing would issue it)."""
    from bifente.client.identity import fingerprint_of
    from bifente.client.tls import generate_client_key_and_csr
    from bifente.edged.state.clients import ClientRegistry
    from bifente.edged.state.keystore import Keystore

    key_pem, csr_pem = generate_client_key_and_csr("bench")
    from bifente.edged.state.keywrap import load_key_wrapper

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


async def _stop_under_load(quick: bool, clients: int = 100) -> list[Row]:
    """Seconds from SIGTERM to the end of the process while `clients` connections call
    (mDNS on, as shipped); the median of a few runs."""
    times: list[float] = []
    for run in range(1 if quick else 3):
        with tempfile.TemporaryDirectory() as tmp:
            config = _daemon_config(tmp, f"bifente-bench-stop-{os.getpid()}-{run}")
            process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "bifente.edged", "--config", str(config),
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL)
            try:
                assert process.stdout is not None
                line = (await process.stdout.readline()).decode()
                port, fingerprint = re.search(r":(\d+) fingerprint sha256:([0-9a-f]{64})",
                                              line).groups()  # type: ignore[union-attr]
                creds = await _issue_client(Path(tmp) / "state", int(port), fingerprint)
                conns: list[Client] = [await creds.connect() for _ in range(clients)]

                async def worker(c: Client) -> None:
                    with contextlib.suppress(Exception):  # ends when the daemon closes it
                        while True:
                            await c.call("system.info")

                workers = [asyncio.ensure_future(worker(c)) for c in conns]
                await asyncio.sleep(1.0)
                started = time.monotonic()
                process.send_signal(signal.SIGTERM)
                await asyncio.wait_for(process.wait(), 60)
                times.append(time.monotonic() - started)
                await asyncio.gather(*workers)
                for c in conns:
                    with contextlib.suppress(Exception):
                        await c.close()
            finally:
                if process.returncode is None:
                    process.kill()
                    await asyncio.wait_for(process.wait(), 15)
    return [Row(f"SIGTERM to exit, {clients} clients calling", fmt_time(statistics.median(times)),
                f"mDNS goodbye, {clients} closing handshakes, state closed; runs "
                + ", ".join(fmt_time(t) for t in times)
                + "; bounded at 30 s by edged/shutdown.py (docs/reliability.md)")]


def run(quick: bool = False) -> list[Row]:
    """Every edged measurement (pcscd and simulated cards are started for the Vitale read)."""
    with SimulatedWorld("gp", "family", cards=CardsOn.PCSC, mail=False, dmp=False):
        rows = asyncio.run(_latency(quick))
        rows += asyncio.run(_subprocess_daemon(quick))
        rows += asyncio.run(_stop_under_load(quick))
    return rows
