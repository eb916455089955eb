"""terminal.lost and terminal.restored: edged tells subscribers when the terminal goes away."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import pytest

from bifente.client import pair
from bifente.edged.config import Config
from bifente.edged.daemon import Daemon
from bifente.simulators.world import SimulatedWorld

pytestmark = pytest.mark.asyncio


async def test_reboot_is_lost_then_restored(tmp_path: Path, firmware_tools: None) -> None:
    with SimulatedWorld("gp", None, mail=False, dmp=False) as world:
        vt = world.terminal
        assert vt is not None
        config = Config(host="127.0.0.1", port=0, state_dir=tmp_path / "state",
                        mdns=False).with_overrides(**world.edged_overrides())
        daemon = Daemon(config)
        await daemon.start()
        try:
            def code() -> str:
                match = re.search(r"Code: (\d{6})", " ".join(vt.screen_lines()))
                assert match, vt.screen_lines()
                return match.group(1)

            async def read_code() -> str:
                for _ in range(100):
                    if "Code:" in " ".join(vt.screen_lines()):
                        break
                    await asyncio.sleep(0.05)
                return code()

            credentials = await pair("127.0.0.1", daemon.server.port,
                                     daemon.keystore.fingerprint, "watcher", ["identity:read"],
                                     read_code)
            async with await credentials.connect() as client:
                await client.subscribe(["terminal.lost", "terminal.restored"])
                await asyncio.to_thread(vt.reboot)
                lost = await client.next_event(timeout=20)
                restored = await client.next_event(timeout=20)
        finally:
            await daemon.stop()
    assert lost["event"] == "terminal.lost" and lost["reason"]
    assert restored["event"] == "terminal.restored" and restored["seq"] > lost["seq"]
