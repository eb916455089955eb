"""SIGKILL edged in the middle of DMP feeds, restart: every document once at the DMP host.

Real processes: edged (`python -m bifente.edged --simulate`: the virtual terminal with the firmware,
the simulated CPS and Vitale cards, the keypad pressed through its control socket) and the
reference DMP host (HTTPS + SQLite, served from this process on a fixed port). Feeds are
queued while the host is down (the ambulance, docs/dmp-api.md), the host comes back, edged is
killed while the host holds its answer to the `kill_after`-th feed (registered, not yet
answered: the worst moment), then restarted: the card lost its
PIN with the kill, so the queue waits for the next PIN verification, then drains. Counted at
the host per CDA document id. The figures go to docs/reliability.md.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import os
import re
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from bifente.client import Credentials, pair
from bifente.simulators.dmp import DmpHost
from bifente.simulators.dmp.storage import DB_NAME
from bifente.simulators.dmp.testing import DmpWorld, FakeClock
from bifente.simulators.terminal.control import TerminalControl
from bifente.simulators.world import SimulatedWorld
from tests.edged.cda import cda

pytestmark = pytest.mark.asyncio

ROOT = Path(__file__).resolve().parents[2]
PIERRE = "178027505601209"  # the family card's insured
FEEDS = 8


class Edged:
    """`python -m bifente.edged --simulate` on a config file; its port, fingerprint and keypad.

    dmp: the [dmp] table of a SimulatedWorld's edged_overrides() (the host, or its front).
    """

    def __init__(self, tmp: Path, dmp: dict[str, str]) -> None:
        self.tmp = tmp
        self.config = tmp / "edged.toml"
        self.config.write_text(
            f'[server]\nhost = "127.0.0.1"\nport = 0\n[state]\nstate_dir = "{tmp}/state"\n'
            f'[dmp]\nurl = "{dmp["url"]}"\nca_file = "{dmp["ca_file"]}"\n'
            f'admin_token = "{dmp["admin_token"]}"\nretry_base = 0.1\nretry_max = 0.5\n'
            # 24 feeds, each with the patient's consent on the terminal: over the default
            # prompt budget (docs/security.md), raised for this one client as an operator would.
            '[limits."ambulance"]\nprompt_burst = 100\nprompts_per_minute = 600\n')

    def start(self) -> None:
        env = dict(os.environ, PYTHONPATH=str(ROOT),
                   BIFENTE_SIM_TERMINAL=str(self.tmp / "terminal.json"))
        self.log = open(self.tmp / "edged.log", "a")  # noqa: SIM115
        self.process = subprocess.Popen(
            [sys.executable, "-m", "bifente.edged", "--simulate", "--no-mdns", "--config",
             str(self.config)], stdout=subprocess.PIPE, stderr=self.log, text=True, env=env)
        control = None
        while True:
            line = self.process.stdout.readline()  # type: ignore[union-attr]
            assert line, (self.tmp / "edged.log").read_text()[-2000:]
            if m := re.search(r"control (\S+)", line):
                control = m.group(1)
            if m := re.search(r":(\d+) fingerprint sha256:([0-9a-f]{64})", line):
                self.port, self.fingerprint = int(m.group(1)), m.group(2)
                break
        assert control, "no virtual terminal control address"
        self.keypad = TerminalControl(control)

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)
        self.log.close()

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(timeout=30)
        self.log.close()
        return code

    async def queue_offline(self, documents: list[bytes]) -> Credentials:
        """Pair the ambulance, verify its PIN, queue each document as a feed (the host is
        unreachable); its credentials."""
        creds = await pair("127.0.0.1", self.port, self.fingerprint, "ambulance",
                           ["dmp:read", "dmp:write", "cps:authenticate", "identity:read"],
                           lambda: asyncio.to_thread(pairing_code, self.keypad))
        async with await creds.connect() as client:
            await cards_seen(client)
            await self.answer(client.call("cps.verify_pin"))
            for doc in documents:
                fed = await self.answer(client.call("dmp.feed", {"ins": PIERRE,
                                                                 "cda": b64(doc)}))
                assert fed["state"] == "queued", fed
        return creds

    async def answer(self, call, timeout: float = 60.0):
        """Run the call; type the PIN or press OK on each prompt the terminal shows."""
        task = asyncio.ensure_future(call)
        deadline = time.monotonic() + timeout
        while not task.done():
            screen = " ".join(await asyncio.to_thread(self.keypad.screen))
            assert time.monotonic() < deadline, f"no answer; the terminal shows {screen!r}"
            if "PIN" in screen:
                await asyncio.to_thread(self.keypad.press, "1234", "OK")
            elif "OK / " in screen:  # a consent: "OK / Annuler"
                await asyncio.to_thread(self.keypad.press, "OK")
            else:
                await asyncio.sleep(0.05)
                continue
            # The screen is the daemon process's, read over the terminal's control socket,
            # which offers no change notification: polling it is the only way to wait.
            while not task.done() and " ".join(  # noqa: ASYNC110
                    await asyncio.to_thread(self.keypad.screen)) == screen:
                await asyncio.sleep(0.05)
        return await task


def hold_answer(host: DmpHost, nth: int) -> tuple[threading.Event, threading.Event]:
    """Hold the host's answer to the nth feed once it is registered (committed), until
    released: the kill then lands between the host's commit and edged's `delivered`."""
    held, release, seen = threading.Event(), threading.Event(), Counter[str]()
    router = host._server.router  # type: ignore[union-attr]
    for i, route in enumerate(router.routes):
        if route.method == "POST" and route.pattern.endswith("/documents"):
            def slow(req, handler=route.handler):  # type: ignore[no-untyped-def]
                answer = handler(req)
                seen["feeds"] += 1
                if seen["feeds"] == nth:
                    held.set()
                    release.wait(60)
                return answer
            router.routes[i] = dataclasses.replace(route, handler=slow)
    assert seen == Counter() and any(r.handler.__name__ == "slow" for r in router.routes)
    return held, release


def registered(host_dir: Path) -> Counter[str]:
    """The host's documents for the patient, counted per CDA document id."""
    with sqlite3.connect(host_dir / DB_NAME, timeout=10) as db:
        return Counter(r[0] for r in db.execute(
            "SELECT cda_id FROM documents WHERE ins = ?", (PIERRE,)))


def feed_answers(host_dir: Path) -> Counter[str]:
    """The host's accepted feed requests per document (a retry of a registered one counts)."""
    with sqlite3.connect(host_dir / DB_NAME, timeout=10) as db:
        return Counter(r[0] for r in db.execute(
            "SELECT document_id FROM traces WHERE ins = ? AND action = 'feed' "
            "AND outcome = 'ok'", (PIERRE,)))


def feed_states(tmp: Path) -> Counter[str]:
    with sqlite3.connect(tmp / "state" / "dmp-queue.db", timeout=10) as db:
        return Counter(dict(db.execute("SELECT state, COUNT(*) FROM feeds GROUP BY state")))


async def until(predicate, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while not await asyncio.to_thread(predicate):
        assert time.monotonic() < deadline, "condition not reached"
        await asyncio.sleep(0.05)


@pytest.mark.parametrize("kill_after", [1, 4, 8])
async def test_sigkill_mid_dmp_feeds_then_restart_registers_each_document_once(
        tmp_path: Path, dmp_sim: SimulatedWorld, kill_after: int) -> None:
    host = dmp_sim.dmp
    assert host is not None
    world = DmpWorld(host, FakeClock())
    world.clock = time.time  # type: ignore[assignment]  # the host runs on the real clock
    world.create("gp", ins=PIERRE)
    world.close()
    edged = Edged(tmp_path, dmp_sim.edged_overrides()["dmp"])
    dmp_sim.stop_dmp()  # the ambulance: no network while the feeds are taken
    edged.start()
    try:
        ids = [f"kill-{kill_after}-{i}-{time.time_ns()}" for i in range(FEEDS)]
        creds = await edged.queue_offline([cda(PIERRE, title=f"Bilan {i}", document_id=doc_id)
                                           for i, doc_id in enumerate(ids)])
        host = dmp_sim.start_dmp()
        held, release = hold_answer(host, kill_after)
        await until(held.is_set)
        edged.kill()  # the host has registered the document; edged has not heard so
        release.set()
    except BaseException:
        edged.stop()
        dmp_sim.stop_dmp()
        raise
    try:
        at_kill = feed_states(tmp_path)
        before = sum(registered(host.data_dir).values())
        edged.start()
        try:
            again = Credentials(**{**creds.__dict__, "port": edged.port})
            async with await again.connect() as client:
                await cards_seen(client)
                # The restarted card holds no PIN: the queue waits for it, never prompts.
                await edged.answer(client.call("cps.verify_pin"))
                await until(lambda: feed_states(tmp_path) == Counter({"delivered": FEEDS}))
        finally:
            assert edged.stop() == 0
        copies, answers = registered(host.data_dir), feed_answers(host.data_dir)
    finally:
        dmp_sim.stop_dmp()
    lost = [d for d in ids if copies[d] == 0]
    duplicated = [d for d, n in copies.items() if n > 1]
    resent = sum(n - 1 for n in answers.values())  # answered `already_registered`
    print(f"kill_after={kill_after} at_kill={dict(at_kill)} registered_before_restart={before} "
          f"registered={sum(copies.values())} resent={resent} lost={len(lost)} "
          f"duplicated={len(duplicated)}")
    assert at_kill["sending"] == 1 and resent == 1  # the kill did land mid-feed
    assert not lost and not duplicated
    assert set(copies) == set(ids)


async def cards_seen(client) -> None:
    """Wait until edged lists both simulated cards (the terminal reports them after start)."""
    for _ in range(600):
        slots = (await client.call("readers.list"))["slots"]
        if {s["kind"] for s in slots if s["present"]} >= {"cps", "vitale"}:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"the cards are not seen: {slots}")


def pairing_code(keypad: TerminalControl) -> str:
    for _ in range(200):
        if m := re.search(r"Code: (\d{6})", " ".join(keypad.screen())):
            return m.group(1)
        time.sleep(0.05)
    raise AssertionError("no pairing code on the terminal")


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()
