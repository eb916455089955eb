"""Soak: 100 paired clients against a real edged for a bounded time (`make soak`).

    python -m tests.soak [--seconds 600] [--clients 100] [--out FILE]

Real processes on loopback only: `edged --simulate` (the virtual terminal with the firmware
and simulated cards, the reference DMP host) and the reference mail operator in this process,
bounced while the soak runs. Clients mix reads (system.info, readers.list, vitale.read,
cps.info), events and mail.list; the client that holds the verified PIN also signs (cps.sign)
and sends mail, and a holder at the keypad types the PIN and confirms signature batches;
cards are pulled and put back. It stops by itself (SIGTERM, timed), then checks the audit
chain and counts each sent message in the recipient's mailbox, and prints one JSON object:
calls by outcome, latency p50/p99/max, edged's RSS and open files at start, every tenth of
the run and end, the stop time, mail lost or duplicated. Exit status 1 on any unexpected
error, a broken audit chain, a lost or duplicated message, or an unclean exit.

Expected errors are the typed ones a card coming and going or an operator bouncing must
give (no_card, card_removed, pin_required, operator_unavailable, rate_limited, busy...);
everything else (internal_error, a timeout, a dropped connection) is unexpected.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import random
import re
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
NURSE = "julie.bernard@cabinet.test"
# Typed refusals that card insertion/removal and an operator outage are designed to give.
EXPECTED = {"no_card", "card_removed", "pin_required", "pin_not_verified",
            "security_status_not_satisfied", "operator_unavailable", "mail_unavailable",
            "rate_limited", "busy", "card_busy", "reader_error", "timeout", "no_such_message",
            # One prompt at a time per client (docs/security.md): the chaos task's PIN
            # verification and that client's own signature may meet.
            "prompt_pending"}
CALL_TIMEOUT = 60.0


def _proc(pid: int) -> dict[str, int]:
    """RSS (kB) and open file descriptors of a process and its children (the terminal)."""
    pids = [pid] + [int(p) for p in subprocess.run(
        ["pgrep", "-P", str(pid)], capture_output=True, text=True, check=False).stdout.split()]
    rss = fds = 0
    for p in pids:
        try:
            status = Path(f"/proc/{p}/status").read_text()
            rss += int(re.search(r"VmRSS:\s+(\d+)", status).group(1))  # type: ignore[union-attr]
            fds += len(os.listdir(f"/proc/{p}/fd"))
        except (OSError, AttributeError):
            continue
    return {"rss_kb": rss, "fds": fds, "processes": len(pids)}


class Soak:
    """The daemon, the operator, the clients and the figures."""

    def __init__(self, seconds: float, clients: int, workdir: Path) -> None:
        self.seconds, self.n_clients, self.dir = seconds, clients, workdir
        self.outcomes: Counter[str] = Counter()
        self.latencies: list[float] = []
        self.events: Counter[str] = Counter()
        self.samples: dict[str, dict[str, int]] = {}
        self.unexpected: list[str] = []
        self.sent: list[str] = []
        self.last_reason: dict[int, str] = {}

    # -- processes ----------------------------------------------------------------------
    def start_operator(self) -> None:
        from bifente.simulators.world import CardsOn, MailOptions, SimulatedWorld

        self.world = SimulatedWorld(None, None, cards=CardsOn.NONE, dmp=False,
                                    mail=MailOptions(self.dir / "op")).start()
        self.operator = self.world.mail

    def start_edged(self) -> None:
        table = self.world.edged_overrides()["mail"]
        domains = ", ".join(f'"{d}" = {{submission_port = {p["submission_port"]}, '
                            f'pop3_port = {p["pop3_port"]}}}'
                            for d, p in table["domains"].items())
        config = self.dir / "edged.toml"
        config.write_text(
            '[server]\nhost = "127.0.0.1"\nport = 0\nrate_per_second = 1000.0\n'
            # Every soak client connects from loopback: one address holds them all.
            f'rate_burst = 1000\nmax_per_paired_address = {self.n_clients + 16}\n'
            f'[state]\nstate_dir = "{self.dir}/state"\n'
            # The holder confirms a batch of signatures per client (docs/security.md), as a
            # practice signing all day would; else every cps.sign waits for its own prompt.
            '[cards]\nsign_batch_count = 100\nsign_batch_minutes = 60\n[mail]\n'
            f'host = "{table["host"]}"\ndirectory_url = "{table["directory_url"]}"\n'
            f'ca_file = "{table["ca_file"]}"\npassword_file = "{table["password_file"]}"\n'
            f'domains = {{{domains}}}\nintermediates_file = "{table["intermediates_file"]}"\n'
            "retry_base_delay = 0.5\nretry_max_delay = 5.0\ntimeout = 10\n")
        env = dict(os.environ, PYTHONPATH=str(ROOT),
                   BIFENTE_SIM_TERMINAL=str(self.dir / "terminal.json"))
        self.edged = subprocess.Popen(
            [sys.executable, "-m", "bifente.edged",
             "--simulate", "--no-mdns", "--config", str(config),
             "--log-level", "warning"], stdout=subprocess.PIPE,
            stderr=open(self.dir / "edged.log", "w"), text=True, env=env)  # noqa: SIM115
        control = None
        for _ in range(20):
            line = self.edged.stdout.readline()  # type: ignore[union-attr]
            if not line:
                raise RuntimeError("edged exited: "
                                   + (self.dir / "edged.log").read_text()[-2000:])
            if m := re.search(r"control (\S+)", line):
                control = m.group(1)
            if m := re.search(r":(\d+) fingerprint sha256:([0-9a-f]{64})", line):
                self.port, self.fingerprint = int(m.group(1)), m.group(2)
                break
        else:
            raise RuntimeError("edged did not start")
        if control is None:
            raise RuntimeError("no virtual terminal control address")
        from bifente.simulators.terminal.control import TerminalControl

        self.control = TerminalControl(control)

    def sample(self, when: str) -> None:
        self.samples[when] = _proc(self.edged.pid)

    # -- clients ------------------------------------------------------------------------
    async def pair_all(self) -> list[Any]:
        from bifente.client import pair

        def code() -> str:
            for _ in range(100):
                screen = " ".join(self.control.screen())
                if m := re.search(r"Code: (\d{6})", screen):
                    return m.group(1)
                time.sleep(0.05)
            raise RuntimeError("no pairing code on the terminal")

        creds = []
        scopes = ["identity:read", "cps:sign", "mail:send", "mail:read"]
        for i in range(self.n_clients):
            creds.append(await pair("127.0.0.1", self.port, self.fingerprint, f"soak{i:03d}",
                                    scopes, lambda: asyncio.to_thread(code)))
        return [await c.connect() for c in creds]

    async def call(self, client: Any, method: str, params: dict | None = None) -> Any:
        from bifente.client import RemoteError

        started = time.monotonic()
        try:
            result = await asyncio.wait_for(client.call(method, params or {}), CALL_TIMEOUT)
        except RemoteError as exc:
            self.outcomes[f"{method}:{exc.reason}"] += 1
            self.last_reason[id(client)] = exc.reason
            if exc.reason not in EXPECTED:
                self.unexpected.append(f"{method}: {exc.reason}: {exc.message}")
            return None
        except Exception as exc:  # a timeout or a dropped connection: never expected
            self.outcomes[f"{method}:{type(exc).__name__}"] += 1
            self.unexpected.append(f"{method}: {type(exc).__name__}: {exc}")
            return None
        finally:
            self.latencies.append(time.monotonic() - started)
        self.outcomes[f"{method}:ok"] += 1
        return result

    async def worker(self, i: int, client: Any, deadline: float) -> None:
        rng = random.Random(i)
        # The PIN verified on the keypad belongs to the client that asked for it (docs/
        # security.md): the practice's software (client 0) signs and sends mail with it;
        # the others read, list mail and hear events (a signature there is pin_required).
        # Client 0 signs on 10 % of its calls and sends mail on 5 %.
        signer = i == 0
        if i < 10:  # event listeners
            await self.call(client, "events.subscribe")
        while time.monotonic() < deadline:
            roll = rng.random()
            if not signer and 0.85 <= roll < 0.95:
                roll = 0.95  # a read of the mailbox instead of a signature
            if roll < 0.30:
                await self.call(client, "system.info")
            elif roll < 0.50:
                await self.call(client, "readers.list")
            elif roll < 0.70:
                await self.call(client, "vitale.read")
            elif roll < 0.85:
                await self.call(client, "cps.info")
            elif roll < 0.95:
                data = base64.b64encode(rng.randbytes(64)).decode()
                await self.call(client, "cps.sign", {"data": data})
            elif not signer:
                await self.call(client, "mail.list")
            else:
                sent = await self.call(client, "mail.send", {
                    "to": [NURSE], "text": f"soak {i}", "idempotency_key": f"{i}-{rng.random()}"})
                if sent:
                    self.sent.append(sent["message_id"])
            if self.last_reason.pop(id(client), None) == "pin_required" and signer:
                await self.verify_pin(client)  # the holder types it at the keypad
            if i < 10:
                while True:
                    try:
                        event = client._events.get_nowait()
                    except asyncio.QueueEmpty:
                        break
                    self.events[event["event"]] += 1
            await asyncio.sleep(rng.uniform(0.05, 0.3))

    async def verify_pin(self, client: Any) -> None:
        """The PIN is typed by the holder at the keypad (holder())."""
        await self.call(client, "cps.verify_pin")

    async def holder(self, until: asyncio.Event) -> None:
        """The card holder at the keypad: types the PIN when asked, confirms signatures."""
        while not until.is_set():
            screen = " ".join(await asyncio.to_thread(self.control.screen))
            keys: tuple[str, ...] = ()
            if "Signer avec CPS" in screen:
                keys = ("OK",)
            elif "PIN" in screen and "Code PIN" in screen:
                keys = ("1234", "OK")
            if not keys:
                await asyncio.sleep(0.1)
                continue
            try:
                await asyncio.to_thread(self.control.press, *keys)
            except Exception as exc:  # the prompt ended meanwhile: look again
                self.outcomes[f"holder:{type(exc).__name__}"] += 1
            self.outcomes["holder:answered"] += 1
            # The screen belongs to the terminal's process: only polling its control socket
            # tells when it changed.
            while " ".join(await asyncio.to_thread(self.control.screen)) == screen \
                    and not until.is_set():  # noqa: ASYNC110
                await asyncio.sleep(0.05)

    async def chaos(self, client: Any, deadline: float) -> None:
        """Cards pulled and put back, the operator bounced, the PIN typed again."""
        step = 0
        while time.monotonic() < deadline - 15:
            await asyncio.sleep(10)
            step += 1
            if step % 3 == 0:
                await asyncio.to_thread(self.world.stop_mail)
                await asyncio.sleep(3)
                self.operator = await asyncio.to_thread(self.world.start_mail)
                self.outcomes["chaos:operator_bounced"] += 1
            elif step % 3 == 1:
                await asyncio.to_thread(self.control.remove, 1)
                await asyncio.sleep(2)
                await asyncio.to_thread(self.control.insert, 1)
                self.outcomes["chaos:vitale_pulled"] += 1
            else:
                await asyncio.to_thread(self.control.remove, 0)
                await asyncio.sleep(2)
                await asyncio.to_thread(self.control.insert, 0)
                await asyncio.sleep(2)
                await self.verify_pin(client)
                self.outcomes["chaos:cps_pulled"] += 1

    async def run(self) -> dict[str, Any]:
        clients = await self.pair_all()
        done = asyncio.Event()
        holder = asyncio.ensure_future(self.holder(done))
        await self.verify_pin(clients[0])
        self.sample("start")
        started = time.monotonic()
        deadline = started + self.seconds

        async def curve() -> None:
            """RSS and open files every tenth of the run (the middle one is `middle`)."""
            for tenth in range(1, 10):
                await asyncio.sleep(max(0.0, started + tenth * self.seconds / 10
                                        - time.monotonic()))
                self.sample("middle" if tenth == 5 else f"t+{round(tenth * self.seconds / 10)}s")

        await asyncio.gather(curve(), self.chaos(clients[0], deadline),
                             *(self.worker(i, c, deadline) for i, c in enumerate(clients)))
        await asyncio.sleep(5)  # let the outbox finish what the last bounce held back
        done.set()
        await holder
        self.sample("end")
        for c in clients:
            await c.close()
        lat = sorted(self.latencies)

        def pct(p: float) -> float:
            return round(1000 * lat[min(len(lat) - 1, int(p * len(lat)))], 1) if lat else 0.0

        return {"seconds": round(time.monotonic() - started, 1), "clients": len(clients),
                "calls": len(lat), "unexpected_errors": len(self.unexpected),
                "unexpected_sample": self.unexpected[:10],
                "latency_ms": {"p50": pct(0.5), "p99": pct(0.99), "max": pct(1.0)},
                "outcomes": dict(sorted(self.outcomes.items())), "events": dict(self.events),
                "edged": self.samples, "mail_sent": len(self.sent)}

    def stop_and_check(self) -> dict[str, Any]:
        from bifente.edged.state.audit import AuditLog, read_anchor_key
        from bifente.edged.state.keywrap import load_key_wrapper

        stopping = time.monotonic()
        self.edged.send_signal(signal.SIGTERM)
        code = self.edged.wait(timeout=60)
        stop_s = round(time.monotonic() - stopping, 2)
        state = self.dir / "state"
        # The anchor key is sealed with the state key (docs/security.md), read as the CLI does.
        key = read_anchor_key(state / "audit.key", load_key_wrapper(state, create=False))
        with AuditLog(state / "audit.db", readonly=True, anchor_key=key) as log:
            report = log.verify()
        with sqlite3.connect(state / "outbox.db") as db:
            outbox = dict(db.execute("SELECT state, COUNT(*) FROM outbox GROUP BY state"))
        copies = Counter(self.mailbox_ids())
        self.world.stop()
        return {"edged_exit": code, "edged_stop_s": stop_s, "audit_ok": report.ok,
                "audit_records": report.records,
                "audit_reason": report.reason, "outbox_at_stop": outbox,
                "mail_lost": sum(1 for m in self.sent if copies[m] == 0),
                "mail_duplicated": sum(1 for n in copies.values() if n > 1)}

    def mailbox_ids(self) -> list[str]:
        """Message-IDs of every copy in the nurse's mailbox at the operator."""
        import email
        import email.policy
        import poplib
        import ssl

        from bifente.simulators.mail import TEST_PASSWORD

        op = self.operator
        pop = poplib.POP3_SSL(op.host, op.info.domains["cabinet.test"].pop3s, timeout=10,
                              context=ssl.create_default_context(cafile=op.info.ca_file))
        try:
            pop.user(NURSE)
            pop.pass_(TEST_PASSWORD)
            count, _ = pop.stat()
            return [str(email.message_from_bytes(b"\r\n".join(pop.top(i, 0)[1]),
                                                 policy=email.policy.default)["Message-ID"])
                    for i in range(1, count + 1)]
        finally:
            pop.quit()


def main(argv: list[str] | None = None) -> int:
    """Run the soak; print the figures as JSON."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=600.0)
    ap.add_argument("--clients", type=int, default=100)
    ap.add_argument("--out", type=Path, help="also write the JSON figures here")
    opts = ap.parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="bifente-soak-"))
    soak = Soak(opts.seconds, opts.clients, workdir)
    soak.start_operator()
    soak.start_edged()
    try:
        figures = asyncio.run(soak.run())
    finally:
        figures_end = soak.stop_and_check()
    figures.update(figures_end)
    text = json.dumps(figures, indent=1)
    print(text)
    if opts.out:
        opts.out.write_text(text + "\n", encoding="utf-8")
    ok = (figures["unexpected_errors"] == 0 and figures["audit_ok"]
          and figures["edged_exit"] == 0 and not figures["mail_lost"]
          and not figures["mail_duplicated"])
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
