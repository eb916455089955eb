"""Interop with avahi, an mDNS stack we did not write: it sees us, we see it, goodbyes cross."""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import zeroconf._core
from zeroconf import IPVersion

from bifente.client.identity import fingerprint_of
from bifente.edged.discovery import TXT_KEYS, Advert, Announcer, browse
from tests.needs import missing

pytestmark = pytest.mark.interop

LOOPBACK = {"interfaces": ["127.0.0.1"], "ip_version": IPVersion.V4Only}
FP = fingerprint_of(b"avahi interop certificate")
DBUS_SOCKET = Path("/run/dbus/system_bus_socket")


def _tool(name: str) -> str | None:
    return shutil.which(name) or next(
        (str(p) for d in ("/usr/sbin", "/usr/bin") if (p := Path(d, name)).exists()), None)


def _bus_answers() -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        try:
            s.connect(str(DBUS_SOCKET))
        except OSError:
            return False
    return True


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _last_line(path: Path) -> str:
    lines = path.read_text(errors="replace").strip().splitlines()
    return lines[-1] if lines else "(no output)"


@pytest.fixture(scope="module")
def avahi(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """avahi-daemon answering on D-Bus: the running one, or one started (and stopped) here."""
    daemon, avahi_browse = _tool("avahi-daemon"), _tool("avahi-browse")
    if daemon is None or avahi_browse is None or _tool("avahi-publish") is None:
        missing("avahi is not installed (apt-get install avahi-daemon avahi-utils)")
    if subprocess.run([daemon, "--check"], check=False).returncode == 0 and _bus_answers():
        yield
        return
    if os.geteuid() != 0:
        missing("avahi-daemon is not running and only root can start it "
                    "(start the avahi-daemon service)")
    logs = tmp_path_factory.mktemp("avahi")
    started: list[subprocess.Popen[bytes]] = []
    try:
        if not _bus_answers():
            dbus = _tool("dbus-daemon")
            if dbus is None:
                missing("no system D-Bus and no dbus-daemon to start (apt-get install dbus)")
            with open(logs / "dbus.log", "wb") as out:
                started.append(subprocess.Popen([dbus, "--system", "--nofork", "--nopidfile"],
                                                stdout=out, stderr=out))
            deadline = time.monotonic() + 5
            while not _bus_answers():
                if started[-1].poll() is not None or time.monotonic() > deadline:
                    missing(f"dbus-daemon --system did not start: "
                                f"{_last_line(logs / 'dbus.log')}")
                time.sleep(0.05)
        with open(logs / "avahi.log", "wb") as out:
            started.append(subprocess.Popen(
                [daemon, "--no-drop-root", "--no-chroot", "--no-rlimits"], stdout=out,
                stderr=out))
        deadline = time.monotonic() + 10
        while "Server startup complete" not in (logs / "avahi.log").read_text(errors="replace"):
            if started[-1].poll() is not None or time.monotonic() > deadline:
                missing(f"avahi-daemon did not start: {_last_line(logs / 'avahi.log')}")
            time.sleep(0.05)
        yield
    finally:
        for process in reversed(started):  # avahi first, then the bus it talks to
            _stop(process)


@pytest.fixture
def fast_mdns(monkeypatch: pytest.MonkeyPatch) -> None:
    """Shrink python-zeroconf's probe and announce spacing."""
    for attr, value in (("_CHECK_TIME", 40), ("_PROBE_RANDOM_DELAY_INTERVAL", (5, 10)),
                        ("_REGISTER_TIME", 20), ("_UNREGISTER_TIME", 20)):
        if hasattr(zeroconf._core, attr):
            monkeypatch.setattr(zeroconf._core, attr, value)


def unique() -> str:
    """An instance name no concurrent run will use."""
    return f"bifente-a{secrets.token_hex(4)}"


async def run(*argv: str, timeout: float = 10) -> str:
    """Run a tool without blocking the loop (our responder must keep answering)."""
    process = await asyncio.create_subprocess_exec(*argv, stdout=subprocess.PIPE,
                                                   stderr=subprocess.PIPE)
    try:
        out, err = await asyncio.wait_for(process.communicate(), timeout)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode == 0, err.decode(errors="replace")
    return out.decode(errors="replace")


@pytest.mark.asyncio
@pytest.mark.usefixtures("avahi", "fast_mdns")
async def test_avahi_browse_resolves_our_announcement() -> None:
    name = unique()
    advert = Advert(name=name, port=8443, addresses=("127.0.0.1",), fingerprint=FP,
                    capabilities=("vitale", "cps"), model="bifente-pico-1")
    async with Announcer(advert, **LOOPBACK):
        resolved: list[list[str]] = []
        for _ in range(5):  # avahi may list the name before it has resolved it
            out = await run("avahi-browse", "-rpt", "_bifente._tcp")
            resolved = [line.split(";") for line in out.splitlines()
                        if line.startswith("=;") and line.split(";")[3] == name]
            if resolved:
                break
            await asyncio.sleep(0.2)
    assert resolved, f"avahi-browse -rpt _bifente._tcp did not resolve {name}"
    # =;interface;protocol;name;type;domain;host;address;port;txt
    _, _, _, _, kind, _, host, address, port, txt = resolved[0]
    assert (kind, host, address, port) == ("_bifente._tcp", f"bifente-{FP[:12]}.local",
                                           "127.0.0.1", "8443")
    entries = sorted(item.strip('"') for item in txt.split(" "))
    assert entries == sorted([f"fp=sha256:{FP}", "v=1", "caps=vitale,cps",
                              "model=bifente-pico-1"])
    assert sorted(e.split("=")[0] for e in entries) == sorted(TXT_KEYS)


@pytest.mark.asyncio
@pytest.mark.usefixtures("avahi", "fast_mdns")
async def test_avahi_sees_our_goodbye() -> None:
    name = unique()
    advert = Advert(name=name, port=8443, addresses=("127.0.0.1",), fingerprint=FP,
                    model="pcsc")
    watcher = await asyncio.create_subprocess_exec(
        "avahi-browse", "-p", "_bifente._tcp", stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL)
    assert watcher.stdout is not None

    async def line_for(sign: str) -> None:
        while True:
            line = (await watcher.stdout.readline()).decode(errors="replace")  # type: ignore[union-attr]
            assert line, "avahi-browse exited"
            fields = line.split(";")
            if fields[0] == sign and len(fields) > 3 and fields[3] == name:
                return

    try:
        announcer = Announcer(advert, **LOOPBACK)
        await announcer.start()
        await asyncio.wait_for(line_for("+"), 5)
        began = time.monotonic()
        await announcer.close()
        await asyncio.wait_for(line_for("-"), 2)  # TTL 0 goodbye, not a cache expiry
        assert time.monotonic() - began < 2
    finally:
        watcher.kill()
        await watcher.wait()


@pytest.mark.asyncio
@pytest.mark.usefixtures("avahi")
async def test_we_resolve_what_avahi_publishes_and_skip_its_malformed_txt(
        caplog: pytest.LogCaptureFixture) -> None:
    good, bad = unique(), unique()
    publishers = [
        await asyncio.create_subprocess_exec(
            "avahi-publish", "-s", good, "_bifente._tcp", "9443", "v=1", f"fp=sha256:{FP}",
            "caps=sign,consent", "model=avahi-peer", stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE),
        await asyncio.create_subprocess_exec(
            "avahi-publish", "-s", bad, "_bifente._tcp", "9444", "v=1", "fp=sha256:abcd",
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE),
    ]
    try:
        for p in publishers:  # "Established under name '...'" once avahi has probed
            assert p.stderr is not None
            line = await asyncio.wait_for(p.stderr.readline(), 10)
            assert b"Established" in line, line
        with caplog.at_level(logging.WARNING, logger="bifente.edged.discovery"):
            found = {t.name: t for t in await asyncio.wait_for(browse(2.0, **LOOPBACK), 8)}
    finally:
        for p in publishers:
            p.terminate()
            await p.wait()
    assert bad not in found
    assert any(bad in r.getMessage() for r in caplog.records)
    t = found[good]
    assert (t.port, t.fingerprint, t.capabilities, t.model, t.version) == (
        9443, FP, ("sign", "consent"), "avahi-peer", "1")
    assert t.host.endswith(".local.") and t.addresses
