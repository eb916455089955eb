"""SIGTERM a real edged under load: it exits within a bound, and nothing durable is lost.

Real processes: `edged --simulate` (virtual terminal, simulated CPS and Vitale cards) and the
reference DMP host. Feeds are queued while the host is down; then a dozen connections call in
a loop while the PIN pad waits for a PIN nobody types (the card job that used to hold the
stop for the whole pin_timeout), and edged gets SIGTERM. It must exit by itself (status 0,
`daemon.stop` audited) within STOP_BOUND_S (a hang check: far more than it takes, far less
than systemd's TimeoutStopSec of 90 s); every call ends (answered, a typed error, or the
connection closed); after a restart every queued feed is registered at the host exactly once.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sqlite3
import time
from collections import Counter
from pathlib import Path

import pytest

from bifente.client import Credentials, RemoteError
from bifente.edged.state.audit import AuditLog, read_anchor_key
from bifente.edged.state.keywrap import load_key_wrapper
from bifente.simulators.dmp.testing import DmpWorld, FakeClock
from bifente.simulators.world import SimulatedWorld
from tests.edged.cda import cda
from tests.faults.test_kill_mid_dmp_feed import (
    PIERRE,
    Edged,
    cards_seen,
    feed_states,
    registered,
    until,
)

pytestmark = pytest.mark.asyncio

STOP_BOUND_S = 45.0  # edged/shutdown.py's hard bound is 30 s; the stop itself takes ~1 s
PIN_TIMEOUT_S = 120  # before the fix, the stop waited for this unanswered PIN entry
FEEDS = 4
CONNECTIONS = 12


async def keep_calling(client, outcomes: Counter[str]) -> None:
    """system.info / readers.list / vitale.read in a loop until the connection goes."""
    methods = ("system.info", "readers.list", "vitale.read")
    i = 0
    while True:
        method = methods[i % len(methods)]
        i += 1
        try:
            await client.call(method)
        except RemoteError as exc:
            outcomes[f"error:{exc.reason}"] += 1
            await asyncio.sleep(0.05)
        except Exception:  # the daemon closed the connection: this caller is done
            outcomes["closed"] += 1
            return
        else:
            outcomes["ok"] += 1


async def test_sigterm_under_load_exits_in_bound_and_loses_nothing(
        tmp_path: Path, dmp_sim: SimulatedWorld) -> None:
    host = dmp_sim.dmp
    assert host is not None
    world = DmpWorld(host, FakeClock())
    world.clock = time.time  # type: ignore[assignment]  # the host runs on the real clock
    world.create("gp", ins=PIERRE)
    world.close()
    edged = Edged(tmp_path, dmp_sim.edged_overrides()["dmp"])
    edged.config.write_text(edged.config.read_text().replace("port = 0\n", (
        f"port = 0\nmax_connections_per_client = {CONNECTIONS}\nrate_per_second = 1000.0\n"
        "rate_burst = 1000\n"), 1) + f"[cards]\npin_timeout = {PIN_TIMEOUT_S}\n")
    dmp_sim.stop_dmp()  # offline: the feeds are queued
    edged.start()
    outcomes: Counter[str] = Counter()
    try:
        ids = [f"stop-{i}-{time.time_ns()}" for i in range(FEEDS)]
        creds = await edged.queue_offline([cda(PIERRE, title=f"Bilan {i}", document_id=doc_id)
                                           for i, doc_id in enumerate(ids)])
        async with await creds.connect() as client:
            # The card comes back without its PIN: the next verify_pin waits on the keypad.
            await asyncio.to_thread(edged.keypad.remove, 0)
            await asyncio.to_thread(edged.keypad.insert, 0)
            await cards_seen(client)
        clients = [await creds.connect() for _ in range(CONNECTIONS)]
        callers = [asyncio.ensure_future(keep_calling(c, outcomes)) for c in clients[1:]]
        pin = asyncio.ensure_future(clients[0].call("cps.verify_pin"))
        await until(lambda: "PIN" in " ".join(edged.keypad.screen()), timeout=30)
        await until(lambda: outcomes["ok"] >= 50, timeout=60)

        started = time.monotonic()
        edged.process.send_signal(signal.SIGTERM)
        code = await asyncio.to_thread(edged.process.wait, STOP_BOUND_S)
        took = time.monotonic() - started
        edged.log.close()
        # Every call ends once the daemon is gone: none is left hanging.
        _, pending = await asyncio.wait([*callers, pin], timeout=10)
        assert not pending, f"{len(pending)} calls still waiting after edged exited"
        with contextlib.suppress(Exception):
            await pin
        for c in clients:
            with contextlib.suppress(Exception):
                await c.close()
    except BaseException:
        if edged.process.poll() is None:
            edged.process.kill()
        raise
    log = (tmp_path / "edged.log").read_text()
    print(f"exit {code} after {took:.2f} s under {CONNECTIONS} connections; calls {outcomes}")
    assert code == 0, log[-3000:]
    assert "leaving without them" not in log  # the stop completed by itself
    assert outcomes["ok"] >= 50 and outcomes["closed"] == CONNECTIONS - 1
    assert not {k for k in outcomes if k.startswith("error:")} - {
        "error:no_card", "error:card_removed", "error:reader_error"}, outcomes
    state = tmp_path / "state"
    key = read_anchor_key(state / "audit.key", load_key_wrapper(state, create=False))
    with AuditLog(state / "audit.db", readonly=True, anchor_key=key) as audit:
        assert audit.verify().ok
    with sqlite3.connect(state / "audit.db") as db:
        (last,) = db.execute("SELECT event FROM records ORDER BY seq DESC LIMIT 1").fetchone()
    assert last == "daemon.stop"
    # Kept in the queue; one may be `sending` (the loop was trying the host when the stop
    # cancelled it): it is resent at the next start, like after a crash.
    at_stop = feed_states(tmp_path)
    assert at_stop["queued"] + at_stop["sending"] == FEEDS, at_stop

    # Nothing lost: after a restart, each queued feed is registered once.
    host = dmp_sim.start_dmp()
    try:
        edged.start()
        try:
            again = Credentials(**{**creds.__dict__, "port": edged.port})
            async with await again.connect() as client:
                await cards_seen(client)
                await edged.answer(client.call("cps.verify_pin"))
                await until(lambda: feed_states(tmp_path) == Counter({"delivered": FEEDS}))
        finally:
            assert edged.stop() == 0
        copies = registered(host.data_dir)
    finally:
        dmp_sim.stop_dmp()
    assert {d: copies[d] for d in ids} == dict.fromkeys(ids, 1)
