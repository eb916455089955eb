"""The DMP offline queue under faults of its own: its database unusable for a while, a large
CDA queued while other calls go on, an older queue file (docs/dmp-terminal.md). A real edged,
the cards in pcscd and the reference DMP host on 127.0.0.1, as in test_dmp_flows.py."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from pathlib import Path

import pytest

from simulators.dmp import DmpHost
from tests.edged.cda import cda
from tests.edged.test_dmp_flows import PIERRE, answered, b64, start, until
from tests.edged.test_dmp_flows import host as host
from tests.edged.test_dmp_flows import world as world


async def _pending(client) -> list[dict]:
    return (await client.call("dmp.queue"))["feeds"]


@pytest.mark.asyncio
@pytest.mark.pcsc
@pytest.mark.timeout(120)
async def test_the_queue_outlives_a_database_error_and_says_it(edged, slots, pcscd, world,
                                                               caplog) -> None:
    # Review: claim / next_due / hurry were awaited outside the loop's try, so one SQLite error
    # ended the delivery task, and stop() swallowed it: feeds stayed queued, nothing said why.
    # Here the queue's file is held by another writer (a backup, an operator's sqlite3 shell)
    # longer than SQLite's busy timeout: the claim fails with "database is locked".
    caplog.set_level(logging.INFO, logger="edged.services.dmp")
    host = world.host
    port, token = host.port, host.admin_token
    world.create("gp", ins=PIERRE)
    bench = await start(edged, slots, host, retry_base=1.0, retry_max=1.0)
    async with await bench.client("ambulance", "dmp:read", "dmp:write") as client:
        assert (await client.call("dmp.exists", {"ins": PIERRE}))["exists"]  # the GP's session
        world.close()
        host.stop()
        queued = await answered(bench, client.call("dmp.feed", {
            "ins": PIERRE, "cda": b64(cda(PIERRE))}), "OK")
        assert queued["state"] == "queued"
        # One try failed (host down) and the feed waits out its backoff (0.5 to 1 s): the
        # loop's next write to the file is the claim.
        for _ in range(200):
            pending = await _pending(client)
            if pending[0]["state"] == "queued" and pending[0]["last_error"]:
                break
            await asyncio.sleep(0.02)
        other = await asyncio.to_thread(_hold, Path(bench.daemon.config.state_dir)
                                        / "dmp-queue.db")
        try:
            await until(lambda: _loop_errors(caplog), timeout=20)
        finally:
            await asyncio.to_thread(_release, other)
        assert any(isinstance(r.exc_info[1], sqlite3.OperationalError)
                   for r in _loop_errors(caplog) if r.exc_info)
        again = DmpHost(host.data_dir, port=port, test_mode=True, admin_token=token).start()
        try:
            for _ in range(300):  # the same loop, still running, delivers it
                if not await _pending(client):
                    break
                await asyncio.sleep(0.05)
            done = (await client.call("dmp.queue", {"all": True}))["feeds"]
            assert [f["state"] for f in done] == ["delivered"] and done[0]["document_id"]
        finally:
            again.stop()


def _loop_errors(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "edged.services.dmp"
            and r.levelno == logging.ERROR and "delivery loop" in r.getMessage()]


def _hold(path: Path) -> sqlite3.Connection:
    """Another writer holding the database: its write lock, taken and kept."""
    other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    other.execute("BEGIN EXCLUSIVE")
    return other


def _release(other: sqlite3.Connection) -> None:
    other.execute("ROLLBACK")
    other.close()
