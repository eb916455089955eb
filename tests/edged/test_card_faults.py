"""A card pulled in the middle of a PIN entry: a typed error, no hang, and it works again."""

from __future__ import annotations

import asyncio

import pytest

from bifente.client import RemoteError
from bifente.simulators.cps3 import Cps3Card

pytestmark = [pytest.mark.asyncio, pytest.mark.pcsc]


async def until(predicate, timeout: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, "condition not reached"
        await asyncio.sleep(0.02)


@pytest.mark.timeout(60)
async def test_card_pulled_mid_pin_entry(edged, slots, pcscd) -> None:
    await asyncio.to_thread(slots.insert, 0, Cps3Card("gp"))
    bench = await edged(pcsc=True)
    await until(lambda: bench.daemon.slots.find("cps") is not None)
    async with await bench.client("doctor", "identity:read", "cps:sign") as client:
        entry = asyncio.ensure_future(client.call("cps.verify_pin", {"timeout": 5}))
        await until(lambda: "PIN" in bench.display.screen().upper() or entry.done())
        bench.keypad.press("1", "2")  # half typed...
        await asyncio.to_thread(slots.remove, 0)  # ...and the card leaves
        bench.keypad.press("3", "4", "OK")
        with pytest.raises(RemoteError) as caught:
            await entry
        assert caught.value.reason in ("card_removed", "no_card", "pin_cancelled")
        await asyncio.to_thread(slots.insert, 0)
        await until(lambda: bench.daemon.slots.find("cps") is not None)
        bench.keypad.press("1234", "OK")
        result = await client.call("cps.verify_pin")
        assert result["result"] == "ok" and result["tries_left"] == 3  # no try was spent
