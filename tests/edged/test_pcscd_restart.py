"""pcscd killed and restarted while edged runs (run under the shared PC/SC lock).

D8: when pcscd died, readers.list kept showing both cards and no event was sent. Now the
lost context takes the readers away as a reader failure (reader.lost for each reader, with
the card it held, and `reader_error` to callers), told apart from a card pulled
(card.removed, `card_removed`, never sent here); when pcscd comes back the readers are
restored (reader.restored), the cards seen again (card.inserted) and served without a
restart of edged.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess

import pytest

from bifente.client import RemoteError
from bifente.simulators.cps3 import Cps3Card
from bifente.simulators.pcscd import ensure_pcscd
from bifente.simulators.vitale import Vitale2Card

pytestmark = [pytest.mark.asyncio, pytest.mark.pcsc]


async def until(predicate, timeout: float = 15.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, "condition not reached"
        await asyncio.sleep(0.05)


def kill_pcscd() -> None:
    """SIGKILL every pcscd (the test holds the shared PC/SC lock) and wait until it is gone."""
    pids = subprocess.run(["pgrep", "-x", "pcscd"], capture_output=True, text=True,
                          check=False).stdout.split()
    assert pids, "no pcscd to kill"
    for pid in pids:
        os.kill(int(pid), signal.SIGKILL)
    for _ in range(200):
        if subprocess.run(["pgrep", "-x", "pcscd"], capture_output=True,
                          check=False).returncode != 0:
            return
        subprocess.run(["sleep", "0.05"], check=False)
    raise AssertionError("pcscd did not die")


async def test_pcscd_killed_then_restarted_while_edged_runs(edged, slots, pcscd) -> None:
    await asyncio.to_thread(slots.insert, 0, Cps3Card("gp"))
    await asyncio.to_thread(slots.insert, 1, Vitale2Card("family"))
    bench = await edged(pcsc=True)
    await until(lambda: bench.daemon.slots.find("cps") and bench.daemon.slots.find("vitale"))
    async with await bench.client("desk", "identity:read") as client:
        assert (await client.call("vitale.read"))["beneficiaries"]
        await client.subscribe()
        try:
            await asyncio.to_thread(kill_pcscd)
            lost: dict[str, str] = {}
            while set(lost.values()) != {"cps", "vitale"}:
                event = await client.next_event(timeout=15)
                assert event["event"] != "card.removed", event  # a reader failure, not a pull
                if event["event"] == "reader.lost":
                    assert "pcscd" in event["reason"], event
                    lost[event["reader"]] = event["kind"]
            listed = await client.call("readers.list")
            assert not [s for s in listed["slots"] if s.get("present")], listed
            with pytest.raises(RemoteError) as caught:
                await client.call("vitale.read")
            assert caught.value.reason == "reader_error", caught.value
        finally:
            await asyncio.to_thread(ensure_pcscd)  # back before the lock is released
        for slot in (0, 1):
            await asyncio.to_thread(slots.insert, slot)
        await until(lambda: bench.daemon.slots.find("cps") and bench.daemon.slots.find("vitale"))
        restored, inserted = set(), set()
        while restored != set(lost) or inserted != {"cps", "vitale"}:
            event = await client.next_event(timeout=15)
            assert event["event"] != "card.removed", event
            if event["event"] == "reader.restored":
                restored.add(event["reader"])
            elif event["event"] == "card.inserted":
                inserted.add(event["kind"])
        assert (await client.call("vitale.read"))["beneficiaries"]
        assert (await client.call("cps.info"))["pin"]["tries_left"] == 3
