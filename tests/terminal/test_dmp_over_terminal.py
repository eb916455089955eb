"""The DMP through edged and the virtual terminal (the real firmware on MicroPython): the PIN
and the patient's consent are typed on the terminal's keypad, the question read on its
display; the host is a real reference DMP host on 127.0.0.1 (docs/dmp-terminal.md)."""

from __future__ import annotations

import asyncio
import base64
import re
import time
from pathlib import Path

import pytest

from bifente.client import RemoteError, pair
from bifente.edged.config import Config
from bifente.edged.daemon import Daemon
from bifente.simulators.terminal import VirtualTerminal
from bifente.simulators.world import SimulatedWorld
from tests.edged.cda import cda

pytestmark = pytest.mark.asyncio

PIERRE = "178027505601209"  # the family card's insured


async def test_create_feed_read_with_consent_on_the_virtual_terminal(
        terminal_world: SimulatedWorld, vt: VirtualTerminal, dmp_sim: SimulatedWorld,
        tmp_path: Path) -> None:
    config = Config(host="127.0.0.1", port=0, state_dir=tmp_path / "state",
                    mdns=False).with_overrides(**terminal_world.edged_overrides(),
                                               **dmp_sim.edged_overrides())
    daemon = Daemon(config)
    await daemon.start()
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 20
        while not (daemon.slots.find("cps") and daemon.slots.find("vitale")):
            assert loop.time() < deadline, "the terminal's cards were not seen"
            await asyncio.sleep(0.05)

        def code() -> str:
            for _ in range(100):
                match = re.search(r"Code: (\d{6})", "\n".join(vt.screen_lines()))
                if match:
                    return match.group(1)
                time.sleep(0.05)
            raise AssertionError(vt.screen_lines())

        credentials = await pair("127.0.0.1", daemon.server.port, daemon.keystore.fingerprint,
                                 "desk", ["dmp:read", "dmp:write"],
                                 lambda: asyncio.to_thread(code))
        async with await credentials.connect() as client:
            async def typed(call, *keys: str):
                task = asyncio.ensure_future(call)
                await asyncio.to_thread(vt.press, *keys, wait=10)
                return await task

            created = await typed(client.call("dmp.create", {"ins": PIERRE}),
                                  "1234", "OK", "OK")  # the PIN, then the patient's OK
            assert created["status"] == "open"
            password = created["patient_password"]
            screen = vt.screen_lines()
            assert password in screen and "Mot de passe :" in screen  # shown to the patient
            fed = await typed(client.call("dmp.feed", {
                "ins": PIERRE, "cda": base64.b64encode(cda(PIERRE)).decode()}), "OK")
            assert fed["state"] == "registered"
            # Review M3: the consent prompt ended, and the password did not come back.
            assert password not in vt.screen_lines()
            task = asyncio.ensure_future(client.call("dmp.find", {"ins": PIERRE}))
            deadline = loop.time() + 20
            while "Autoriser" not in " ".join(vt.screen_lines()):
                assert loop.time() < deadline, vt.screen_lines()
                await asyncio.sleep(0.05)
            assert "consulter votre DMP ?" in " ".join(vt.screen_lines())
            await asyncio.to_thread(vt.press, "CANCEL", wait=10)
            with pytest.raises(RemoteError) as exc:
                await task
            assert exc.value.reason == "consent_refused"
            found = await typed(client.call("dmp.find", {"ins": PIERRE}), "OK")
            assert [d["id"] for d in found["documents"]] == [fed["document"]["id"]]
    finally:
        await daemon.stop()


async def test_codes_leave_the_screen_and_f1_shows_the_fingerprint(
        terminal_world: SimulatedWorld, vt: VirtualTerminal, tmp_path: Path) -> None:
    # docs/terminal.md ("Codes are secret screens") through the real daemon: the pairing code
    # is a secret screen that leaves when used; a patient's code leaves on OK and on Vitale
    # removal; F1 shows the daemon's fingerprint as `bifente discover` prints it.
    from bifente.edged.discovery import format_fingerprint

    config = Config(host="127.0.0.1", port=0, state_dir=tmp_path / "state",
                    mdns=False).with_overrides(**terminal_world.edged_overrides())
    daemon = Daemon(config)
    await daemon.start()
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 20
        while not daemon.terminal or not daemon.terminal.connected:
            assert loop.time() < deadline, "the terminal did not connect"
            await asyncio.sleep(0.05)

        def code() -> str:
            for _ in range(100):
                match = re.search(r"Code: (\d{6})", "\n".join(vt.screen_lines()))
                if match:
                    assert vt.screen_lines()[0] == "Appairage"
                    return match.group(1)
                time.sleep(0.05)
            raise AssertionError(vt.screen_lines())

        credentials = await pair("127.0.0.1", daemon.server.port, daemon.keystore.fingerprint,
                                 "desk", ["identity:read"], lambda: asyncio.to_thread(code))
        assert credentials
        deadline = loop.time() + 10
        while not any("termin" in line for line in vt.screen_lines()):
            assert loop.time() < deadline, vt.screen_lines()  # the code was replaced
            await asyncio.sleep(0.05)
        assert not re.search(r"\d{6}", "\n".join(vt.screen_lines()))

        assert daemon.ui is not None
        await daemon.ui.show(["Mot de passe :", "a9ym-3ptt-kfbg"], secret_s=30)
        assert "a9ym-3ptt-kfbg" in vt.screen_lines()
        await asyncio.to_thread(vt.press, "OK", wait=0)  # the patient has noted it
        assert await asyncio.to_thread(vt.wait_screen, lambda lines: lines == [], 5)

        await daemon.ui.show(["Mot de passe :", "a9ym-3ptt-kfbg"], secret_s=30)
        await asyncio.to_thread(vt.remove, 1)  # the patient takes the Vitale card and leaves
        assert await asyncio.to_thread(vt.wait_screen, lambda lines: lines == [], 5)
        await asyncio.to_thread(vt.insert, 1)

        await asyncio.to_thread(vt.press, "F1", wait=0)
        groups = format_fingerprint(daemon.keystore.fingerprint).split(" ")
        assert await asyncio.to_thread(vt.wait_screen, "Empreinte edged", 5)
        shown = vt.screen_lines()
        assert shown[1:-1] == [" ".join(groups[i:i + 3]) for i in range(0, len(groups), 3)]
        assert shown[-1] == "F1: appairer"  # F1 again opens a pairing window (docs/pairing.md)
    finally:
        await daemon.stop()
