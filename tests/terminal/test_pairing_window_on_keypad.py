"""Review L1 end to end: F1 twice on the terminal lets a desk pair while a LAN host keeps the
network-wide lockout tripped (real firmware on MicroPython, real daemon, real TLS)."""

from __future__ import annotations

import asyncio
import contextlib
import re
from pathlib import Path

import pytest

from bifente.client import RemoteError, pair
from bifente.edged.config import Config
from bifente.edged.daemon import Daemon
from bifente.simulators.world import SimulatedWorld
from tests.lan_attacker import LanAttacker

pytestmark = pytest.mark.asyncio

ATTACKERS = ("127.0.2.1", "127.0.2.2", "127.0.2.3", "127.0.2.4")
DESK = "Accueil 2"


def audited(daemon: Daemon, event: str) -> list[dict[str, object]]:
    """The fields of every audit record of this event so far."""
    daemon.audit.flush()
    return [r.data() for r in daemon.audit.records() if r.event == event]


async def test_f1_twice_opens_pairing_through_a_flood(tmp_path: Path,
                                                      firmware_tools: None) -> None:
    with SimulatedWorld("gp", None, mail=False, dmp=False) as world:
        vt = world.terminal
        assert vt is not None
        config = Config(host="127.0.0.1", port=0, state_dir=tmp_path / "state", mdns=False,
                        pairing_window_seconds=90.0).with_overrides(**world.edged_overrides())
        daemon = Daemon(config)
        await daemon.start()
        attacker = LanAttacker(daemon.server.port, ATTACKERS)
        flood: asyncio.Task[None] | None = None
        try:
            assert await asyncio.to_thread(daemon.terminal.wait_connected, 20)
            fingerprint = daemon.keystore.fingerprint

            async def read_code() -> str:
                # The operator reads the code under the desk's own name.
                def shown(lines: list[str]) -> bool:
                    return DESK in lines and any(line.startswith("Code:") for line in lines)
                assert await asyncio.to_thread(vt.wait_screen, shown, 10), vt.screen_lines()
                match = re.search(r"Code: (\d{6})", " ".join(vt.screen_lines()))
                assert match, vt.screen_lines()
                return match.group(1)

            # The attack of the review: wrong codes until pairing is locked for everyone.
            assert await attacker.until_locked_out() == 20
            with pytest.raises(RemoteError) as refused:
                await pair("127.0.0.1", daemon.server.port, fingerprint, DESK, ["dmp:read"],
                           read_code)
            assert refused.value.reason == "locked_out"

            flood = asyncio.create_task(attacker.flood(pause=0.05))
            # The operator at the terminal: F1 shows the fingerprint, F1 again opens pairing.
            await asyncio.to_thread(vt.press, "F1")
            assert await asyncio.to_thread(vt.wait_screen, "F1: appairer", 5), vt.screen()
            await asyncio.to_thread(vt.press, "F1")
            assert await asyncio.to_thread(vt.wait_screen, "Appairage ouvert", 10), vt.screen()
            assert re.search(r"Reste \d+ s", vt.screen()), vt.screen()
            assert audited(daemon, "pair.window_opened") == [{"source": "terminal",
                                                              "seconds": 90.0}]
            # Inside the window each attacking address has lockout_after (5) wrong codes, then
            # is refused again; once every one is, it can no longer put codes on the screen
            # (while it can, its codes replace the desk's: docs/pairing.md, "Limits").
            attacker.mark()
            deadline = asyncio.get_running_loop().time() + 30
            while attacker.refused != set(ATTACKERS):
                assert asyncio.get_running_loop().time() < deadline, attacker.answers
                assert not flood.done(), flood
                await asyncio.sleep(0.1)
            wrong_before = attacker.answers["wrong_code"]

            credentials = await pair("127.0.0.1", daemon.server.port, fingerprint, DESK,
                                     ["dmp:read"], read_code)
            assert credentials.scopes == ("dmp:read",)
            async with await credentials.connect() as client:
                info = await client.call("system.info")
            assert info["fingerprint"] == fingerprint

            assert not flood.done(), flood
            # The flood went on the whole time, and got no further guess in.
            assert attacker.answers["wrong_code"] == wrong_before
            # One workstation per key press: the window closed with the pairing.
            assert audited(daemon, "pair.window_closed") == [{"reason": "paired"}]
            with pytest.raises(RemoteError) as again:
                await pair("127.0.0.1", daemon.server.port, fingerprint, "Accueil 3", [],
                           read_code)
            assert again.value.reason == "locked_out"
        finally:
            if flood is not None:
                flood.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await flood
            await attacker.close()
            await daemon.stop()


async def test_cancel_closes_the_window_on_the_terminal(tmp_path: Path,
                                                        firmware_tools: None) -> None:
    with SimulatedWorld("gp", None, mail=False, dmp=False) as world:
        vt = world.terminal
        assert vt is not None
        config = Config(host="127.0.0.1", port=0, state_dir=tmp_path / "state",
                        mdns=False).with_overrides(**world.edged_overrides())
        daemon = Daemon(config)
        await daemon.start()
        try:
            assert await asyncio.to_thread(daemon.terminal.wait_connected, 20)
            await asyncio.to_thread(vt.press, "F1", "F1")
            assert await asyncio.to_thread(vt.wait_screen, "Reste 120 s", 10), vt.screen()
            assert daemon.pairing.window_left() > 100
            await asyncio.to_thread(vt.press, "CANCEL", wait=0)  # "Annuler: fermer"
            assert await asyncio.to_thread(vt.wait_screen, "Appairage ferme", 10), vt.screen()
            assert daemon.pairing.window_left() == 0.0
            assert audited(daemon, "pair.window_closed") == [{"reason": "cancelled"}]
        finally:
            await daemon.stop()
