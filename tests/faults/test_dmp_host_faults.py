"""A real DMP host that hangs, answers 503, or fails TLS, behind a fault proxy, through edged.

Real processes: `edged --simulate` (virtual terminal, simulated CPS and Vitale cards) and the
reference DMP host, with tests/faults/faultproxy.py between them. Feeds are queued while the
host is unreachable (the ambulance, docs/dmp-api.md); then the proxy misbehaves. Each fault is
an outage: the feeds stay queued, retried with capped backoff, `dmp.queue` says why; none is
given up as a refusal, none is lost. Once the proxy forwards again, each document is
registered at the host exactly once. A refusal (the host's 4xx with its listed reasons) is
the opposite: never retried. And a stop while the host hangs mid-delivery stays bounded.
"""

from __future__ import annotations

import asyncio
import signal
import sqlite3
import time
from collections import Counter
from pathlib import Path

import pytest

from bifente.client import Credentials, RemoteError
from bifente.simulators.dmp import DmpHost
from bifente.simulators.dmp.storage import DB_NAME
from bifente.simulators.dmp.testing import DmpWorld, FakeClock
from bifente.simulators.world import CardsOn, DmpOptions, SimulatedWorld
from tests.edged.cda import cda
from tests.faults.faultproxy import FaultProxy
from tests.faults.test_kill_mid_dmp_feed import (
    PIERRE,
    Edged,
    cards_seen,
    feed_answers,
    feed_states,
    registered,
    until,
)

pytestmark = pytest.mark.asyncio

FEEDS = 3
HTTP_TIMEOUT_S = 2  # [dmp] http_timeout: a hung host is given up on quickly
# What dmp.queue's last_error says for each fault: the cause, named.
CAUSE = {"stall": "timed out", "gateway_503": "answered 503",
         "wrong_cert": "certificate", "abort_handshake": "SSL"}


class World:
    """The host, the proxy in front of it, edged pointed at the proxy, one paired client."""

    def __init__(self, tmp: Path, *, http_timeout: float = HTTP_TIMEOUT_S) -> None:
        self.tmp = tmp

        def proxy(host: DmpHost) -> FaultProxy:
            tls = host.data_dir / "tls"
            return FaultProxy(("127.0.0.1", host.port), host_chain=tls / "host.chain.pem",
                              host_key=tls / "host.key.pem", workdir=tmp / "proxy")

        self.sim = SimulatedWorld(None, None, cards=CardsOn.NONE, mail=False, dmp=DmpOptions(
            tmp / "dmp", admin_token="admin-secret", front=proxy)).start()
        assert self.sim.dmp is not None and isinstance(self.sim.dmp_front, FaultProxy)
        self.host, self.proxy = self.sim.dmp, self.sim.dmp_front
        world = DmpWorld(self.host, FakeClock())
        world.clock = time.time  # type: ignore[assignment]  # the host runs on the real clock
        world.create("gp", ins=PIERRE)
        world.close()
        self.edged = Edged(tmp, self.sim.edged_overrides()["dmp"])
        self.edged.config.write_text(self.edged.config.read_text().replace(
            "retry_base = 0.1", f"http_timeout = {http_timeout}\nretry_base = 0.1"))

    async def start_and_queue(self, documents: list[bytes]) -> Credentials:
        """Start edged (it enrolls its consent key with the host), make the host unreachable,
        pair, queue each document as a feed."""
        self.edged.start()
        # Enrolled first: a feed the queue sends before the enrollment is refused as
        # consent_forged (the simulator's enrollment; a real device is enrolled beforehand).
        await until(lambda: "enrolled" in (self.tmp / "edged.log").read_text(), timeout=30)
        self.proxy.set_mode("reset")
        return await self.edged.queue_offline(documents)

    def close(self) -> None:
        if self.edged.process.poll() is None:
            self.edged.stop()
        self.sim.stop()  # the proxy, then the host


async def queue_until(client, predicate, timeout: float = 60.0) -> list[dict]:
    """dmp.queue (every feed) once predicate holds for it."""
    deadline = time.monotonic() + timeout
    while True:
        queue = (await client.call("dmp.queue", {"all": True}))["feeds"]
        if predicate(queue):
            return queue
        assert time.monotonic() < deadline, [(f["state"], f["attempts"], f["last_error"])
                                             for f in queue]
        await asyncio.sleep(0.2)


def feed_outcomes(host_dir: Path) -> Counter[str]:
    """The host's feed requests for the patient, by outcome (a refusal counts)."""
    with sqlite3.connect(host_dir / DB_NAME, timeout=10) as db:
        return Counter(r[0] for r in db.execute(
            "SELECT outcome FROM traces WHERE ins = ? AND action = 'feed'", (PIERRE,)))


def documents(tag: str, n: int = FEEDS) -> tuple[list[str], list[bytes]]:
    ids = [f"{tag}-{i}-{time.time_ns()}" for i in range(n)]
    return ids, [cda(PIERRE, title=f"Bilan {i}", document_id=d) for i, d in enumerate(ids)]


@pytest.mark.parametrize("fault", list(CAUSE))
async def test_a_faulty_host_is_an_outage_feeds_wait_then_go_once(tmp_path: Path,
                                                                  fault: str) -> None:
    w = World(tmp_path)
    try:
        ids, docs = documents(fault)
        creds = await w.start_and_queue(docs)
        w.proxy.set_mode(fault)
        async with await creds.connect() as client:
            # Retried under the fault, and each try says why the feed waits. (The oldest due
            # feed goes first: with tries slower than retry_max, it is the one tried.)
            queue = await queue_until(client, lambda q: w.proxy.seen[fault] >= 3 and any(
                CAUSE[fault] in (f["last_error"] or "") for f in q))
            assert {f["state"] for f in queue} <= {"queued", "sending"}, queue  # none given up
            assert len(queue) == FEEDS
            errors = {f["last_error"] for f in queue if CAUSE[fault] in (f["last_error"] or "")}
            if fault == "wrong_cert":
                # An interactive call is told plainly, not queued, not refused by the host.
                with pytest.raises(RemoteError) as err:
                    await client.call("dmp.exists", {"ins": PIERRE})
                assert err.value.reason == "host_untrusted"
                assert "certificate" in err.value.message
            assert sum(registered(w.host.data_dir).values()) == 0  # nothing got through
            w.proxy.set_mode("pass")
            await until(lambda: feed_states(tmp_path) == Counter({"delivered": FEEDS}))
        copies, answers = registered(w.host.data_dir), feed_answers(w.host.data_dir)
        print(f"{fault}: proxy connections {dict(w.proxy.seen)}, attempts "
              f"{[f['attempts'] for f in queue]}, last errors {sorted(errors)}")
        assert {d: copies[d] for d in ids} == dict.fromkeys(ids, 1)
        assert sum(answers.values()) == FEEDS  # each sent once the host was reachable
    finally:
        w.close()


async def test_a_refusal_is_not_retried(tmp_path: Path) -> None:
    """A queued feed the host refuses (4xx with its listed reasons) fails at once with them;
    the good feed beside it is delivered once."""
    w = World(tmp_path)
    try:
        _, docs = documents("refusal", 1)
        bad = b'<?xml version="1.0" encoding="U"?>' + docs[0].split(b"?>", 1)[1]
        good_ids, good = documents("good", 1)
        creds = await w.start_and_queue([bad, *good])
        w.proxy.set_mode("pass")
        async with await creds.connect() as client:
            await until(lambda: feed_states(tmp_path) == Counter({"delivered": 1, "failed": 1}))
            await asyncio.sleep(1.0)  # several retry periods (retry_max 0.5 s): none comes
            queue = {f["state"]: f for f in (await client.call("dmp.queue",
                                                                 {"all": True}))["feeds"]}
        assert queue["failed"]["last_error"] == "cda_invalid"
        # The host heard the refused document once: it was not sent again.
        assert feed_outcomes(w.host.data_dir) == Counter({"ok": 1, "refused": 1})
        assert feed_states(tmp_path) == Counter({"delivered": 1, "failed": 1})
        assert registered(w.host.data_dir) == Counter({good_ids[0]: 1})
    finally:
        w.close()


async def test_a_stop_while_the_host_hangs_mid_delivery_is_bounded_and_loses_nothing(
        tmp_path: Path) -> None:
    """http_timeout at 120 s and the host hanging: the stop does not wait for the HTTPS call
    (edged/shutdown.py); the feed stays queued and goes once after the restart."""
    w = World(tmp_path, http_timeout=120)
    try:
        ids, docs = documents("hang", 1)
        creds = await w.start_and_queue(docs)
        w.proxy.set_mode("stall")
        await until(lambda: w.proxy.seen["stall"] >= 1, timeout=30)
        await asyncio.sleep(0.5)
        started = time.monotonic()
        w.edged.process.send_signal(signal.SIGTERM)
        code = await asyncio.to_thread(w.edged.process.wait, 60)
        took = time.monotonic() - started
        w.edged.log.close()
        log = (tmp_path / "edged.log").read_text()
        print(f"exit {code} after {took:.1f} s with an HTTPS call hanging")
        assert code == 0, log[-3000:]
        assert "leaving without them" in log  # the hanging call was left, not waited for
        at_stop = feed_states(tmp_path)
        assert at_stop["queued"] + at_stop["sending"] == 1, at_stop
        w.proxy.set_mode("pass")
        w.edged.start()
        again = Credentials(**{**creds.__dict__, "port": w.edged.port})
        async with await again.connect() as client:
            await cards_seen(client)
            await w.edged.answer(client.call("cps.verify_pin"))  # the card lost its PIN
            await until(lambda: feed_states(tmp_path) == Counter({"delivered": 1}))
        assert registered(w.host.data_dir) == Counter({ids[0]: 1})
    finally:
        w.close()
