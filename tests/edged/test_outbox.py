"""The durable outbox: waits while the operator is down, never loses, never sends twice."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from bifente.edged.services.outbox import Outbox, OutboxItem, PermanentFailure, TemporaryFailure

pytestmark = pytest.mark.asyncio


class Operator:
    """A peer at the delivery seam: down for a while, keeps what it accepts by Message-ID."""

    def __init__(self, down_for: int = 0, refuse: set[str] | None = None) -> None:
        self.down_for = down_for
        self.refuse = refuse or set()
        self.mailbox: dict[str, bytes] = {}
        self.attempts = 0

    async def deliver(self, item: OutboxItem) -> None:
        self.attempts += 1
        if self.attempts <= self.down_for:
            raise TemporaryFailure("421 4.3.2 service not available")
        if item.message_id in self.refuse:
            raise PermanentFailure("550 5.7.1 outside the trust space")
        self.mailbox.setdefault(item.message_id, item.body)  # idempotent on Message-ID


async def drain(outbox: Outbox, operator: Operator, until) -> None:
    task = asyncio.ensure_future(outbox.run(operator.deliver))
    try:
        for _ in range(400):
            if until():
                return
            await asyncio.sleep(0.01)
        raise AssertionError(f"outbox did not settle: {outbox.counts()}")
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_waits_while_the_operator_is_down_then_delivers(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "outbox.db", base_delay=0.01, max_delay=0.05)
    operator = Operator(down_for=3)
    assert outbox.enqueue("<a@cabinet.test>", "gp@cabinet.test", ("x@chu.test",), b"body")
    await drain(outbox, operator, lambda: outbox.counts().get("sent") == 1)
    assert operator.attempts == 4 and operator.mailbox == {"<a@cabinet.test>": b"body"}
    item = outbox.get("<a@cabinet.test>")
    assert item is not None and item.state == "sent" and item.attempts == 4


async def test_same_message_id_is_queued_once(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "outbox.db")
    assert outbox.enqueue("<m@x>", "a@cabinet.test", ("b@chu.test",), b"1")
    assert not outbox.enqueue("<m@x>", "a@cabinet.test", ("b@chu.test",), b"2")
    assert outbox.counts() == {"queued": 1}


async def test_permanent_refusal_is_kept_with_its_reason(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "outbox.db", base_delay=0.01)
    operator = Operator(refuse={"<bad@x>"})
    outbox.enqueue("<bad@x>", "a@cabinet.test", ("b@evil.example",), b"x")
    outbox.enqueue("<good@x>", "a@cabinet.test", ("b@chu.test",), b"y")
    await drain(outbox, operator, lambda: outbox.counts() == {"failed": 1, "sent": 1})
    failed = outbox.get("<bad@x>")
    assert failed is not None and "5.7.1" in (failed.last_error or "")
    # Nothing sends it again: its body is not kept (a disk that only fills), the row is.
    assert failed.body_path is None and failed.body == b""
    assert list(outbox.spool.iterdir()) == []


async def test_crash_while_sending_is_retried_and_delivered_once(tmp_path: Path) -> None:
    path = tmp_path / "outbox.db"
    outbox = Outbox(path)
    outbox.enqueue("<c@x>", "a@cabinet.test", ("b@chu.test",), b"z")
    claimed = outbox._claim()  # the daemon took it and died before recording the outcome
    assert claimed is not None
    operator = Operator()
    await operator.deliver(claimed)  # the operator got it before the crash
    outbox.close()
    reopened = Outbox(path, base_delay=0.01)
    assert reopened.counts() == {"queued": 1}
    await drain(reopened, operator, lambda: reopened.counts() == {"sent": 1})
    assert list(operator.mailbox) == ["<c@x>"]  # once, thanks to the Message-ID


async def test_nothing_is_lost_when_the_database_is_reopened(tmp_path: Path) -> None:
    path = tmp_path / "outbox.db"
    outbox = Outbox(path)
    for i in range(20):
        outbox.enqueue(f"<{i}@x>", "a@cabinet.test", ("b@chu.test",), bytes([i]) * 100)
    outbox.close()
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    reopened = Outbox(path)
    assert reopened.counts() == {"queued": 20}


async def test_gives_up_after_max_attempts(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "outbox.db", base_delay=0.001, max_delay=0.002, max_attempts=3)
    operator = Operator(down_for=100)
    outbox.enqueue("<d@x>", "a@cabinet.test", ("b@chu.test",), b"w")
    await drain(outbox, operator, lambda: outbox.counts() == {"failed": 1})
    assert operator.attempts == 3
    assert outbox.get("<d@x>").body_path is None and list(outbox.spool.iterdir()) == []


async def test_a_message_needs_recipients(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="at least one recipient"):
        Outbox(tmp_path / "o.db").enqueue("<e@x>", "a@cabinet.test", (), b"")


async def test_the_loop_survives_any_exception_from_delivery(tmp_path: Path) -> None:
    # D1: a ValueError from the audit log after submission killed the delivery task for good.
    outbox = Outbox(tmp_path / "outbox.db", base_delay=0.01, max_delay=0.02)
    operator = Operator()
    failures = iter([ValueError("audit refused"), RuntimeError("bug"), KeyError("x")])

    async def flaky(item: OutboxItem) -> None:
        error = next(failures, None)
        if error is not None:
            raise error
        await operator.deliver(item)

    outbox.enqueue("<d1@x>", "a@cabinet.test", ("b@chu.test",), b"1")
    outbox.enqueue("<d2@x>", "a@cabinet.test", ("b@chu.test",), b"2")
    task = asyncio.ensure_future(outbox.run(flaky))
    try:
        for _ in range(400):
            if outbox.counts() == {"sent": 2}:
                break
            await asyncio.sleep(0.01)
        assert outbox.counts() == {"sent": 2}
        assert not task.done()  # still running, ready for the next message
        assert sorted(operator.mailbox) == ["<d1@x>", "<d2@x>"]
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_the_loop_survives_a_database_error(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "outbox.db", base_delay=0.01)
    operator = Operator()
    real_claim = outbox._claim
    calls = {"n": 0}

    def broken_once() -> OutboxItem | None:
        calls["n"] += 1
        if calls["n"] == 1:
            raise sqlite3.OperationalError("database or disk is full")
        return real_claim()

    outbox._claim = broken_once  # type: ignore[method-assign]
    outbox.enqueue("<e@x>", "a@cabinet.test", ("b@chu.test",), b"1")
    await drain(outbox, operator, lambda: outbox.counts() == {"sent": 1})
    assert calls["n"] >= 2


async def test_a_delivery_after_failures_wakes_the_waiting_messages(tmp_path: Path) -> None:
    # Minor item of the review: with a long backoff nothing woke the queue when the operator
    # came back; now the first delivery after a failure makes every queued message due.
    clock = {"t": 1000.0}
    outbox = Outbox(tmp_path / "outbox.db", base_delay=3600, max_delay=3600,
                    clock=lambda: clock["t"])
    for name in ("a", "b", "c"):
        outbox.enqueue(f"<{name}@x>", "a@cabinet.test", ("b@chu.test",), b"1")
        item = outbox._claim()
        assert item is not None
        outbox._retry(item, "421 down", False)  # each now waits about an hour
    assert outbox.counts() == {"queued": 3}
    due = outbox.next_due()
    assert due is not None
    clock["t"] = due  # the earliest comes due; the others wait (jittered) a while more
    with outbox._lock:
        waiting = outbox._db.execute("SELECT COUNT(*) FROM outbox WHERE next_attempt > ?",
                                     (due,)).fetchone()[0]
    assert waiting >= 1
    operator = Operator()
    await drain(outbox, operator, lambda: outbox.counts() == {"sent": 3})
    assert len(operator.mailbox) == 3


async def test_wake_makes_every_queued_message_due(tmp_path: Path) -> None:
    clock = {"t": 50.0}
    outbox = Outbox(tmp_path / "outbox.db", clock=lambda: clock["t"])
    outbox.enqueue("<w@x>", "a@cabinet.test", ("b@chu.test",), b"1")
    item = outbox._claim()
    assert item is not None
    outbox._retry(item, "421", False)
    assert outbox._claim() is None
    outbox.wake()
    assert outbox._claim() is not None


async def test_an_idempotency_key_queues_one_message(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "outbox.db")
    first = outbox.enqueue_once("reception", "k1", "<i1@x>", "a@cabinet.test",
                                ("b@chu.test",), b"1")
    again = outbox.enqueue_once("reception", "k1", "<i2@x>", "a@cabinet.test",
                                ("b@chu.test",), b"2")
    other = outbox.enqueue_once("doctor", "k1", "<i3@x>", "a@cabinet.test",
                                ("b@chu.test",), b"3")
    assert (first, again, other) == ("<i1@x>", "<i1@x>", "<i3@x>")
    assert outbox.counts() == {"queued": 2}
    found = outbox.for_key("reception", "k1")
    assert found is not None and found.body == b"1"
    assert outbox.for_key("reception", "k2") is None


async def test_a_body_is_a_file_beside_the_database_until_sent(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "outbox.db")
    operator = Operator()
    assert outbox.enqueue("<f@x>", "a@cabinet.test", ("b@chu.test",), b"the body")
    with sqlite3.connect(tmp_path / "outbox.db") as db:
        (inline, name), = db.execute("SELECT body, body_file FROM outbox").fetchall()
    spooled = tmp_path / "outbox.bodies" / name
    assert inline == b"" and spooled.read_bytes() == b"the body"
    assert spooled.stat().st_mode & 0o777 == 0o600
    await drain(outbox, operator, lambda: outbox.counts() == {"sent": 1})
    assert operator.mailbox == {"<f@x>": b"the body"}
    assert not spooled.exists() and list(spooled.parent.iterdir()) == []


async def test_a_written_body_is_moved_in_or_deleted(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "outbox.db")
    first = outbox.new_body()
    first.write_bytes(b"1")
    assert outbox.enqueue("<g@x>", "a@cabinet.test", ("b@chu.test",), first)
    again = outbox.new_body()
    again.write_bytes(b"2")
    assert not outbox.enqueue("<g@x>", "a@cabinet.test", ("b@chu.test",), again)
    no_one = outbox.new_body()
    with pytest.raises(ValueError, match="at least one recipient"):
        outbox.enqueue("<h@x>", "a@cabinet.test", (), no_one)
    elsewhere = tmp_path / "mine.eml"
    elsewhere.write_bytes(b"not the outbox's")
    with pytest.raises(ValueError, match="not a body from this outbox"):
        outbox.enqueue("<i@x>", "a@cabinet.test", ("b@chu.test",), elsewhere)
    assert elsewhere.exists()  # refused, and left alone
    assert [p.read_bytes() for p in outbox.spool.iterdir()] == [b"1"]
    assert outbox.get("<g@x>").body == b"1"


async def test_files_no_waiting_row_names_are_swept_at_start(tmp_path: Path) -> None:
    path = tmp_path / "outbox.db"
    outbox = Outbox(path)
    outbox.enqueue("<j@x>", "a@cabinet.test", ("b@chu.test",), b"kept")
    outbox.new_body().write_bytes(b"written when the daemon stopped")
    (outbox.spool / "0123.eml").write_bytes(b"moved in, its row never committed")
    outbox.close()
    reopened = Outbox(path)
    assert [p.read_bytes() for p in reopened.spool.iterdir()] == [b"kept"]
    assert reopened.get("<j@x>").body == b"kept"


async def test_an_outbox_with_bodies_in_its_rows_is_still_delivered(tmp_path: Path) -> None:
    path = tmp_path / "outbox.db"
    with sqlite3.connect(path) as db:  # the 0.1.0 schema: no body_file column
        db.execute("CREATE TABLE outbox (message_id TEXT PRIMARY KEY, sender TEXT NOT NULL, "
                   "recipients TEXT NOT NULL, body BLOB NOT NULL, state TEXT NOT NULL, "
                   "attempts INTEGER NOT NULL DEFAULT 0, next_attempt REAL NOT NULL, "
                   "last_error TEXT, created REAL NOT NULL, sent_at REAL)")
        db.execute("INSERT INTO outbox (message_id, sender, recipients, body, state, "
                   "next_attempt, created) VALUES ('<old@x>', 'a@cabinet.test', "
                   "'b@chu.test', X'6f6c64', 'queued', 0, 0)")
    outbox = Outbox(path)
    operator = Operator()
    await drain(outbox, operator, lambda: outbox.counts() == {"sent": 1})
    assert operator.mailbox == {"<old@x>": b"old"}


async def test_bodies_kept_by_an_earlier_outbox_for_messages_done_are_dropped(
        tmp_path: Path) -> None:
    # An outbox of the previous version kept a failed message's body file; one of 0.1.0 kept
    # a sent message's body in its row. Reopened, both rows stay and their bodies go.
    path = tmp_path / "outbox.db"
    outbox = Outbox(path)
    outbox.enqueue("<failed@x>", "a@cabinet.test", ("b@evil.example",), b"refused")
    outbox.enqueue("<waiting@x>", "a@cabinet.test", ("b@chu.test",), b"still to send")
    outbox.close()
    with sqlite3.connect(path) as db:
        db.execute("UPDATE outbox SET state = 'failed', last_error = '550 5.7.1' "
                   "WHERE message_id = '<failed@x>'")
        db.execute("INSERT INTO outbox (message_id, sender, recipients, body, state, "
                   "next_attempt, created, sent_at) VALUES ('<sent@x>', 'a@cabinet.test', "
                   "'b@chu.test', X'6f6c64', 'sent', 0, 0, 1)")
    reopened = Outbox(path)
    assert reopened.counts() == {"failed": 1, "queued": 1, "sent": 1}
    assert reopened.get("<failed@x>").last_error == "550 5.7.1"
    assert reopened.get("<failed@x>").body == b"" and reopened.get("<sent@x>").body == b""
    assert [p.read_bytes() for p in reopened.spool.iterdir()] == [b"still to send"]
    assert reopened.get("<waiting@x>").body == b"still to send"
