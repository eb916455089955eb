"""The DMP offline queue under faults of its own: its database unusable for a while, a large
CDA queued while other calls go on, an older queue file (docs/dmp-terminal.md). A real edged,
the cards in pcscd and the reference DMP host on 127.0.0.1, as in test_dmp_flows.py."""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import sqlite3
import threading
from pathlib import Path

import pytest

from bifente.edged.state.dmp_queue import FeedQueue
from bifente.edged.state.keywrap import KeyWrapper
from bifente.edged.state.space import SpaceGuard
from tests.edged.cda import cda
from tests.edged.test_dmp_flows import PIERRE, answered, b64, start, until


async def _pending(client) -> list[dict]:
    return (await client.call("dmp.queue"))["feeds"]


@pytest.mark.asyncio
@pytest.mark.pcsc
@pytest.mark.timeout(120)
async def test_the_queue_outlives_a_database_error_and_says_it(edged, slots, pcscd, dmp_sim,
                                                               world, caplog) -> None:
    # Review: claim / next_due / hurry were awaited outside the loop's try, so one SQLite error
    # ended the delivery task, and stop() swallowed it: feeds stayed queued, nothing said why.
    # Here the queue's file is held by another writer (a backup, an operator's sqlite3 shell)
    # longer than SQLite's busy timeout: the claim fails with "database is locked".
    caplog.set_level(logging.INFO, logger="bifente.edged.services.dmp")
    world.create("gp", ins=PIERRE)
    bench = await start(edged, slots, dmp_sim, retry_base=1.0, retry_max=1.0)
    async with await bench.client("ambulance", "dmp:read", "dmp:write") as client:
        assert (await client.call("dmp.exists", {"ins": PIERRE}))["exists"]  # the GP's session
        world.close()
        dmp_sim.stop_dmp()
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
        dmp_sim.start_dmp()
        try:
            for _ in range(300):  # the same loop, still running, delivers it
                if not await _pending(client):
                    break
                await asyncio.sleep(0.05)
            done = (await client.call("dmp.queue", {"all": True}))["feeds"]
            assert [f["state"] for f in done] == ["delivered"] and done[0]["document_id"]
        finally:
            dmp_sim.stop_dmp()


class _SlowDisk(SpaceGuard):
    """The state's disk as a slow SD card: the space check before a feed is queued takes
    until the test lets it go (the check is the first step of writing a queued feed)."""

    def __init__(self, directory: Path) -> None:
        super().__init__(directory, 0)
        self.entered, self.go = threading.Event(), threading.Event()

    def check(self, what: str, needed: int = 0) -> None:
        if what.startswith("a DMP feed"):
            self.entered.set()
            if not self.go.wait(15):
                raise TimeoutError("the test never let the slow disk go")
        super().check(what, needed)


@pytest.mark.asyncio
@pytest.mark.pcsc
@pytest.mark.timeout(120)
async def test_a_feed_being_queued_does_not_hold_up_other_clients(edged, slots, pcscd,
                                                                   dmp_sim, world) -> None:
    # Review: the enqueue sealed the CDA (up to 64 MiB) and committed it (synchronous=FULL)
    # inside the async handler: every other client waited for the disk.
    world.create("gp", ins=PIERRE)
    bench = await start(edged, slots, dmp_sim)
    disk = bench.daemon.space = _SlowDisk(Path(bench.daemon.config.state_dir))
    try:
        async with await bench.client("ambulance", "dmp:read", "dmp:write") as client, \
                await bench.client("desk", "dmp:write") as other:
            assert (await client.call("dmp.exists", {"ins": PIERRE}))["exists"]
            world.close()
            dmp_sim.stop_dmp()
            document = cda(PIERRE)
            feed = asyncio.ensure_future(answered(bench, client.call("dmp.feed", {
                "ins": PIERRE, "cda": b64(document)}), "OK"))
            await until(lambda: disk.entered.is_set() or feed.done(), timeout=30)
            assert not feed.done()
            # The feed is being written: another client is answered meanwhile.
            assert await asyncio.wait_for(other.call("dmp.queue"), 10) == {"feeds": []}
            assert not disk.go.is_set() and not feed.done()
            disk.go.set()
            queued = await feed
            assert queued["state"] == "queued"
            pending = (await other.call("dmp.queue"))["feeds"]
            assert [(f["queue_id"], f["size"]) for f in pending] == [
                (queued["queue_id"], len(document))]
    finally:
        disk.go.set()


def _loop_errors(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "bifente.edged.services.dmp"
            and r.levelno == logging.ERROR and "delivery loop" in r.getMessage()]


def _hold(path: Path) -> sqlite3.Connection:
    """Another writer holding the database: its write lock, taken and kept."""
    other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    other.execute("BEGIN EXCLUSIVE")
    return other


def _release(other: sqlite3.Connection) -> None:
    other.execute("ROLLBACK")
    other.close()


# The feeds table as the first versions made it (before the `size` column).
_FIRST_SCHEMA = """
CREATE TABLE feeds (
    queue_id TEXT PRIMARY KEY, ins TEXT NOT NULL, professional TEXT NOT NULL,
    query TEXT NOT NULL, cda BLOB NOT NULL, consent TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('queued', 'sending', 'delivered', 'failed')),
    attempts INTEGER NOT NULL DEFAULT 0, next_attempt REAL NOT NULL, last_error TEXT,
    created REAL NOT NULL, delivered_at REAL, document_id TEXT
);
CREATE INDEX feeds_due ON feeds (state, next_attempt);
"""


def _wrapper() -> KeyWrapper:
    return KeyWrapper(secrets.token_bytes(32), "a test key", hardware_bound=False)


def test_a_queue_file_of_an_earlier_version_keeps_working(tmp_path: Path) -> None:
    # dmp.queue now reads a stored size instead of opening every CDA; a state directory of
    # an earlier version (feeds queued offline, then edged updated) must keep its feeds.
    path, wrapper = tmp_path / "dmp-queue.db", _wrapper()
    document = b"<ClinicalDocument>" + os.urandom(5000) + b"</ClinicalDocument>"
    with sqlite3.connect(path) as db:
        db.executescript(_FIRST_SCHEMA)
        for queue_id, state, created in (("old-1", "queued", 1000.0),
                                         ("old-2", "delivered", 1001.0)):
            context = queue_id.encode()
            db.execute("INSERT INTO feeds VALUES (?, ?, ?, '', ?, ?, ?, 1, 0, NULL, ?, NULL, "
                       "NULL)", (queue_id, PIERRE, "810001000101",
                                 wrapper.seal("dmp-queue/cda", document, context),
                                 wrapper.seal("dmp-queue/consent", b"hdr", context), state,
                                 created))
    db.close()
    queue = FeedQueue(path, wrapper=wrapper)
    try:
        assert [(f.queue_id, f.size) for f in queue.list(include_done=True)] == [
            ("old-1", len(document)), ("old-2", len(document))]
        with sqlite3.connect(path) as db:  # computed once, then kept
            assert db.execute("SELECT queue_id, size FROM feeds ORDER BY queue_id").fetchall() \
                == [("old-1", len(document)), ("old-2", len(document))]
        db.close()
        claimed = queue.claim()
        assert claimed is not None and (claimed.queue_id, claimed.cda) == ("old-1", document)
        assert claimed.consent == "hdr"
        new = queue.add(PIERRE, "810001000101", "", b"<doc/>", "hdr2")
        assert [(f.queue_id, f.state, f.size) for f in queue.list()] == [
            ("old-1", "sending", len(document)), (new, "queued", 6)]
    finally:
        queue.close()
    reopened = FeedQueue(path, wrapper=wrapper)  # the migration runs once: no second column
    try:
        assert [f.size for f in reopened.list()] == [len(document), 6]
    finally:
        reopened.close()


def test_listing_the_queue_does_not_open_the_documents(tmp_path: Path) -> None:
    # Review: dmp.queue opened every queued CDA (up to 64 MiB each) only to report lengths.
    # The listing is metadata only: it does not even need the key that seals them.
    path = tmp_path / "dmp-queue.db"
    queue = FeedQueue(path, wrapper=_wrapper())
    first = queue.add(PIERRE, "810001000101", "", b"x" * 70_000, "hdr")
    queue.close()
    other_key = FeedQueue(path, wrapper=_wrapper())
    try:
        assert [(f.queue_id, f.size) for f in other_key.list()] == [(first, 70_000)]
        assert other_key.list()[0].describe()["size"] == 70_000
    finally:
        other_key.close()
