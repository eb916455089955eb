"""edged as a process: SIGTERM stops it cleanly, SIGKILL then restart keeps the audit chain."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from bifente.client import Client, RemoteError
from bifente.edged.state.audit import AuditLog, read_anchor_key
from bifente.edged.state.keywrap import load_key_wrapper

pytestmark = pytest.mark.asyncio


def start_edged(tmp: Path, *extra: str, config: str = "") -> tuple[subprocess.Popen[str], int, str]:
    path = tmp / "edged.toml"
    path.write_text(f'[server]\nhost = "127.0.0.1"\nport = 0\n[state]\nstate_dir = "{tmp}/state"\n'
                    f"{config}")
    process = subprocess.Popen([sys.executable, "-m", "bifente.edged",
                                "--config", str(path), *extra],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = process.stdout.readline()  # type: ignore[union-attr]
    match = re.search(r":(\d+) fingerprint sha256:([0-9a-f]{64})", line)
    if match is None:
        process.kill()
        raise AssertionError(f"edged did not start: {line!r} {process.stderr.read()!r}")
    return process, int(match.group(1)), match.group(2)


def verify_audit(state: Path) -> int:
    # Sealed with the state key (M8): the daemon's fallback key file, as the CLI opens it.
    key = read_anchor_key(state / "audit.key", load_key_wrapper(state, create=False))
    with AuditLog(state / "audit.db", readonly=True, anchor_key=key) as log:
        report = log.verify()
    assert report.ok, report.reason
    return report.records


async def test_sigkill_then_restart_keeps_the_audit_chain(tmp_path: Path) -> None:
    for round_ in range(3):
        process, port, fingerprint = start_edged(tmp_path, "--no-mdns",
                                                 config="[cards]\npcsc = false\n")
        async with await Client.connect("127.0.0.1", port, fingerprint) as client:
            # Unpaired calls are refused but pair.begin writes audit records: load while dying.
            from bifente.client.tls import generate_client_key_and_csr

            _key, csr = generate_client_key_and_csr(f"round{round_}")
            calls = [client.call("pair.begin", {"name": f"c{i}", "csr": csr.decode()})
                     for i in range(5)]
            results = await asyncio.gather(*calls, return_exceptions=True)
            assert any(not isinstance(r, Exception) for r in results)
        await asyncio.sleep(0.05 * round_)
        process.send_signal(signal.SIGKILL)
        await asyncio.to_thread(process.wait, 10)
        assert process.returncode == -signal.SIGKILL
        records = verify_audit(tmp_path / "state")
        assert records >= 2 * (round_ + 1)
    # And it still appends after the kills.
    process, port, fingerprint = start_edged(tmp_path, "--no-mdns",
                                             config="[cards]\npcsc = false\n")
    process.send_signal(signal.SIGTERM)
    assert await asyncio.to_thread(process.wait, 15) == 0
    events = [r.event for r in AuditLog(tmp_path / "state" / "audit.db", readonly=True,
                                        anchor_key=(tmp_path / "state" / "audit.key")
                                        .read_bytes()).records()]
    assert events.count("daemon.start") == 4 and events[-1] == "daemon.stop"


async def test_bad_config_is_one_line_and_exit_2(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[server]\nport = 'x'\n")
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bifente.edged", "--config", str(bad),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    _out, err = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode == 2
    assert err.decode().strip() == "edged: configuration error: port must be int, got 'x'"


async def test_systemd_notify_ready_and_stopping(tmp_path: Path) -> None:
    import socket

    sock_path = tmp_path / "notify.sock"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    server.bind(str(sock_path))
    server.setblocking(False)
    loop = asyncio.get_running_loop()

    async def notification() -> str:
        return (await asyncio.wait_for(loop.sock_recv(server, 4096), 20)).decode()

    env = dict(os.environ, NOTIFY_SOCKET=str(sock_path), WATCHDOG_USEC="400000",
               WATCHDOG_PID="")
    path = tmp_path / "edged.toml"
    path.write_text(f'[server]\nhost = "127.0.0.1"\nport = 0\n[state]\n'
                    f'state_dir = "{tmp_path}/state"\n[cards]\npcsc = false\n')
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bifente.edged", "--config", str(path), "--no-mdns", env=env,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        messages = [await notification() for _ in range(3)]
        assert messages[0].startswith("READY=1")
        assert "WATCHDOG=1" in messages[1:]
        process.send_signal(signal.SIGTERM)
        seen = ""
        while "STOPPING=1" not in seen:
            seen = await notification()
        await asyncio.wait_for(process.communicate(), 15)
        assert process.returncode == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
        server.close()


async def test_unpaired_process_refuses(tmp_path: Path) -> None:
    process, port, fingerprint = start_edged(tmp_path, "--no-mdns",
                                             config="[cards]\npcsc = false\n")
    try:
        async with await Client.connect("127.0.0.1", port, fingerprint) as client:
            with pytest.raises(RemoteError) as exc:
                await client.call("system.info")
            assert exc.value.reason == "not_paired"
    finally:
        process.send_signal(signal.SIGTERM)
        await asyncio.to_thread(process.wait, 15)


@pytest.mark.pcsc
async def test_sigterm_says_goodbye_on_mdns_and_powers_cards_down(tmp_path: Path, slots,
                                                                   pcscd) -> None:
    from zeroconf import ServiceStateChange
    from zeroconf.asyncio import AsyncServiceBrowser, AsyncZeroconf

    from bifente.client import pair
    from bifente.edged.discovery import SERVICE_TYPE
    from bifente.simulators.cps3 import Cps3Card

    card = Cps3Card("gp")
    await asyncio.to_thread(slots.insert, 0, card)
    name = f"bifente-test-{os.getpid()}"
    process, port, fingerprint = start_edged(
        tmp_path, config=f'[discovery]\nname = "{name}"\nmdns_interfaces = ["127.0.0.1"]\n')
    changes: list[tuple[str, ServiceStateChange]] = []
    zc = AsyncZeroconf(interfaces=["127.0.0.1"])

    def on_change(zeroconf, service_type, name, state_change) -> None:
        changes.append((name, state_change))

    browser = AsyncServiceBrowser(zc.zeroconf, SERVICE_TYPE, handlers=[on_change])
    try:
        full = f"{name}.{SERVICE_TYPE}"
        for _ in range(100):
            if (full, ServiceStateChange.Added) in changes:
                break
            await asyncio.sleep(0.05)
        assert (full, ServiceStateChange.Added) in changes

        def code_from_log() -> str:  # headless: the daemon logs the code once
            for line in process.stderr:  # type: ignore[union-attr]
                found = re.search(r"pairing code for .*: (\d{6})", line)
                if found:
                    return found.group(1)
            raise AssertionError("no pairing code logged")

        credentials = await pair("127.0.0.1", port, fingerprint, "desk", ["identity:read"],
                                 lambda: asyncio.to_thread(code_from_log))
        async with await credentials.connect() as client:
            for _ in range(100):
                readers = await client.call("readers.list")
                if any(s["kind"] == "cps" for s in readers["slots"]):
                    break
                await asyncio.sleep(0.05)
            info = await client.call("cps.info")
            assert info["national_id"] == "810001000101"
        assert card.powered
        process.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(process.wait, 15) == 0
        for _ in range(60):
            if (full, ServiceStateChange.Removed) in changes:
                break
            await asyncio.sleep(0.05)
        assert (full, ServiceStateChange.Removed) in changes  # goodbye packets were sent
        assert not card.powered and not card.se.verified
    finally:
        await browser.async_cancel()
        await zc.async_close()
        if process.poll() is None:
            process.kill()


async def test_cli_discover_pair_status_and_clients(tmp_path: Path) -> None:
    import json

    name = f"bifente-cli-{os.getpid()}"
    process, port, fingerprint = start_edged(
        tmp_path, config=f'[cards]\npcsc = false\n[discovery]\nname = "{name}"\n'
                         f'mdns_interfaces = ["127.0.0.1"]\n')
    env = dict(os.environ, BIFENTE_CLIENT_DIR=str(tmp_path / "client"))
    cli = [sys.executable, "-m", "bifente.edged.cli.main"]

    def bifente(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*cli, *args], capture_output=True, text=True, timeout=60,
                              env=env, check=False)

    def logged_code() -> str:
        for line in process.stderr:  # type: ignore[union-attr]
            match = re.search(r"pairing code for .*: (\d{6})", line)
            if match:
                return match.group(1)
        raise AssertionError("edged exited without a pairing code")

    def pair_with_prompt(client_name: str, *scopes: str) -> subprocess.CompletedProcess[str]:
        args = [*cli, "pair", f"127.0.0.1:{port}#sha256:{fingerprint}", "--name", client_name]
        for scope in scopes:
            args += ["--scope", scope]
        child = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True, env=env)
        out, err = child.communicate(logged_code() + "\n", timeout=60)
        return subprocess.CompletedProcess(args, child.returncode, out, err)

    try:
        found = await asyncio.to_thread(bifente, "discover", "--json", "--timeout", "3",
                                        "--interface", "127.0.0.1")
        assert found.returncode == 0, found.stderr
        entry = next(t for t in json.loads(found.stdout) if t["name"] == name)
        assert fingerprint in entry["fingerprint"] and entry["port"] == port

        refused = await asyncio.to_thread(bifente, "pair",
                                          f"127.0.0.1:{port}#sha256:{fingerprint}", "--name",
                                          "remote admin", "--scope", "admin", "--code", "000000")
        assert refused.returncode != 0 and "daemon's machine" in refused.stderr
        admin = await asyncio.to_thread(pair_with_prompt, "admin desk", "identity:read")
        assert admin.returncode == 0, admin.stderr
        assert "enter the 6-digit code shown on the terminal" in admin.stderr
        assert "paired as 'admin desk'" in admin.stdout
        # admin is granted on the daemon's machine only, by the local CLI.
        granted = await asyncio.to_thread(bifente, "admin", "grant", "admin desk",
                                          "--state-dir", str(tmp_path / "state"))
        assert granted.returncode == 0 and "admin" in granted.stdout, granted.stderr

        status = await asyncio.to_thread(bifente, "status")
        assert status.returncode == 0 and fingerprint in status.stdout

        # --replace: this computer is paired already (as 'admin desk'); a wrong code leaves
        # that pairing as it is.
        wrong = await asyncio.to_thread(bifente, "pair", f"127.0.0.1:{port}#sha256:{fingerprint}",
                                        "--name", "intruder", "--code", "000000", "--replace")
        assert wrong.returncode == 1 and "wrong_code" in wrong.stderr
        assert "Traceback" not in wrong.stderr

        listed = await asyncio.to_thread(bifente, "clients", "list")
        assert "admin desk" in listed.stdout
        # Revoking itself: the answer arrives, then the terminal refuses the certificate.
        revoked = await asyncio.to_thread(bifente, "clients", "revoke", "admin desk", "--yes")
        assert revoked.returncode == 0, revoked.stderr
        assert "revoked admin desk" in revoked.stdout
        after = await asyncio.to_thread(bifente, "status")
        assert after.returncode == 1 and "revoked" in after.stderr
    finally:
        process.send_signal(signal.SIGTERM)
        await asyncio.to_thread(process.wait, 15)
