"""Each card insertion owns its session: what the card cannot change is read once per insertion.

Counted on the simulated cards themselves (every APDU that reaches them through pcscd/vpcd),
with the real daemon in between.
"""

from __future__ import annotations

import asyncio
import base64

import pytest

from bifente.simulators.cps3 import Cps3Card
from bifente.simulators.vitale import Vitale2Card

pytestmark = [pytest.mark.asyncio, pytest.mark.pcsc]


async def until(predicate, timeout: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, "condition not reached"
        await asyncio.sleep(0.02)


async def _signs(client, bench, card: Cps3Card) -> tuple[int, int]:
    """APDUs the card received for a first and a second cps.sign (the PIN verified first)."""
    bench.keypad.press("1234", "OK")
    assert (await client.call("cps.verify_pin"))["result"] == "ok"
    counts = []
    for document in (b"first letter", b"second letter"):
        bench.keypad.press("OK")  # the holder confirms each signature on the terminal
        before = card.apdu_count
        signed = await client.call("cps.sign", {"data": base64.b64encode(document).decode()})
        assert signed["signature"]
        counts.append(card.apdu_count - before)
    return counts[0], counts[1]


async def _reads(client, card: Vitale2Card) -> tuple[int, int]:
    counts = []
    for _ in range(2):
        before = card.apdu_count
        read = await client.call("vitale.read")
        assert read["beneficiaries"][0]["first_name"] == "Pierre"
        counts.append(card.apdu_count - before)
    return counts[0], counts[1]


async def test_cards_are_read_once_per_insertion(edged, slots, pcscd) -> None:
    cps, vitale = Cps3Card("gp"), Vitale2Card("family")
    await asyncio.to_thread(slots.insert, 0, cps)
    await asyncio.to_thread(slots.insert, 1, vitale)
    bench = await edged(pcsc=True)
    await until(lambda: bench.daemon.slots.find("cps") and bench.daemon.slots.find("vitale"))
    async with await bench.client("desk", "identity:read", "cps:sign") as client:
        first_sign, second_sign = await _signs(client, bench, cps)
        # The second signature is SELECT, MSE SET HT, MSE SET DST, PSO HASH, PSO CDS and the
        # GET RESPONSE of its 256 bytes (OpenSC's sequence for a CPx): no directory and no
        # certificate (22 APDUs each before sessions were kept).
        assert second_sign <= 6 < first_sign, (first_sign, second_sign)
        first_read, second_read = await _reads(client, vitale)
        assert first_read > 0 and second_read == 0, (first_read, second_read)

        # A new insertion is a new card as far as the daemon knows: read again.
        await asyncio.to_thread(slots.remove, 1)
        await until(lambda: bench.daemon.slots.find("vitale") is None)
        await asyncio.to_thread(slots.insert, 1, vitale)
        await until(lambda: bench.daemon.slots.find("vitale") is not None)
        assert await _reads(client, vitale) == (first_read, 0)

        await asyncio.to_thread(slots.remove, 0)
        await until(lambda: bench.daemon.slots.find("cps") is None)
        await asyncio.to_thread(slots.insert, 0, cps)
        await until(lambda: bench.daemon.slots.find("cps") is not None)
        again = await _signs(client, bench, cps)
        assert again[1] <= 6 < again[0], again
