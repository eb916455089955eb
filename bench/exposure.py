"""Exposure: 3,000 silent or slow connections from 250 loopback addresses against edged.

edged runs as its own process (its RSS is what we measure); the flood runs in another process
so that its event loop does not slow the paired client whose latency we measure. Loopback only
(127.0.x.y, 25 /24 prefixes of 10 addresses, 12 sockets per address), bounded in count and
time: the flood stops by itself.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.edged import _issue_client, _pct, _rss_kib
from bench.table import Row, fmt_time

__all__ = ["run"]

PREFIXES, ADDRESSES, PER_ADDRESS = 25, 10, 12  # 250 addresses, 3,000 sockets
GOAL_RSS_MB = 150.0
GOAL_P99_S = 0.050
# The first bytes of a TLS ClientHello record header: a "slow" peer trickles them.
_TRICKLE = bytes.fromhex("16030100c8010000c40303")


async def _attacker(port: int, source: str, slow: bool, until: float,
                    counts: dict[str, int]) -> None:
    """Hold one socket open, silent or trickling a byte a second; reconnect when dropped."""
    while time.monotonic() < until:
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port,
                                                           local_addr=(source, 0))
        except OSError:
            counts["refused"] += 1
            await asyncio.sleep(0.5)
            continue
        counts["opened"] += 1
        try:
            i = 0
            while time.monotonic() < until:
                if slow and i < len(_TRICKLE):
                    writer.write(_TRICKLE[i:i + 1])
                    i += 1
                with contextlib.suppress(TimeoutError):
                    if await asyncio.wait_for(reader.read(1), 1.0) == b"":
                        break
            else:
                continue
            counts["dropped_by_edged"] += 1
        except OSError:
            counts["dropped_by_edged"] += 1
        finally:
            writer.close()
        await asyncio.sleep(0.5)  # do not spin on a refused socket


async def _flood(port: int, seconds: float) -> None:
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 8192), hard))
    counts = {"opened": 0, "dropped_by_edged": 0, "refused": 0}
    until = time.monotonic() + seconds
    tasks = []
    for x in range(1, PREFIXES + 1):
        for y in range(1, ADDRESSES + 1):
            for i in range(PER_ADDRESS):
                tasks.append(asyncio.create_task(
                    _attacker(port, f"127.0.{x}.{y}", i % 2 == 1, until, counts)))
        await asyncio.sleep(0.05)  # about 3,000 sockets in 1.3 s
    await asyncio.gather(*tasks)
    print(" ".join(f"{k}={v}" for k, v in counts.items()), flush=True)


async def _measure(quick: bool) -> list[Row]:
    flood_seconds = 12.0 if quick else 25.0
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "edged.toml"
        config.write_text(f'[server]\nhost = "127.0.0.1"\nport = 0\n'
                          f'[state]\nstate_dir = "{tmp}/state"\n'
                          f'[discovery]\nmdns = false\n[log]\nlog_level = "warning"\n')
        daemon = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bifente.edged", "--config", str(config),
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        try:
            assert daemon.stdout is not None
            line = (await daemon.stdout.readline()).decode()
            port, fingerprint = re.search(r":(\d+) fingerprint sha256:([0-9a-f]{64})",
                                          line).groups()  # type: ignore[union-attr]
            creds = await _issue_client(Path(tmp) / "state", int(port), fingerprint)
            async with await creds.connect() as client:
                await client.call("system.info")
                await asyncio.sleep(1.0)
                before = _rss_kib(daemon.pid)
                flood = await asyncio.create_subprocess_exec(
                    sys.executable, "-m", "bench.exposure", "--flood", port,
                    str(flood_seconds), stdout=subprocess.PIPE)
                latencies: list[float] = []
                peak = before
                stop = time.monotonic() + flood_seconds
                while time.monotonic() < stop:
                    t = time.perf_counter()
                    await client.call("system.info")
                    latencies.append(time.perf_counter() - t)
                    peak = max(peak, _rss_kib(daemon.pid))
                    await asyncio.sleep(0.05)
                out, _ = await flood.communicate()
                await asyncio.sleep(3.0)
                after = _rss_kib(daemon.pid)
                await client.call("system.info")  # still served after the flood
        finally:
            daemon.terminate()
            await asyncio.wait_for(daemon.wait(), 15)
    p99 = _pct(latencies, 0.99)
    peak_mb, before_mb, after_mb = peak / 1024 * 1.048576, before / 1024 * 1.048576, \
        after / 1024 * 1.048576
    summary = out.decode().strip()
    return [
        Row("edged RSS peak, 3,000 silent/slow sockets from 250 addresses",
            f"{peak_mb:.1f} MB", f"idle {before_mb:.1f} MB; flood: {summary}",
            f"goal < {GOAL_RSS_MB:.0f} MB: {'PASS' if peak_mb < GOAL_RSS_MB else 'FAIL'}"),
        Row("paired client's system.info during the flood (p99)", fmt_time(p99),
            f"p50 {fmt_time(_pct(latencies, 0.5))}, {len(latencies)} calls, load average "
            f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs",
            f"goal < {GOAL_P99_S * 1e3:.0f} ms: {'PASS' if p99 < GOAL_P99_S else 'FAIL'}"),
        Row("edged RSS 3 s after the flood left", f"{after_mb:.1f} MB",
            f"peak {peak_mb:.1f} MB, idle before {before_mb:.1f} MB",
            f"goal: back within 10 MB of idle: "
            f"{'PASS' if after_mb - before_mb < 10 else 'FAIL'}"),
    ]


def run(quick: bool = False) -> list[Row]:
    """The flood figures (RSS in MB of 10^6 bytes, like the goal)."""
    return asyncio.run(_measure(quick))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--flood", nargs=2, metavar=("PORT", "SECONDS"))
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    if args.flood:
        asyncio.run(_flood(int(args.flood[0]), float(args.flood[1])))
    else:
        from bench.table import print_table

        print_table("edged under a connection flood", run(args.quick))
