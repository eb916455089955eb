"""DMP logins of several clients at once: one user typing a PIN on the keypad holds up nobody
else (docs/security.md: a host session is the client's whose PIN opened it). A real edged,
the cards in pcscd and the reference DMP host on 127.0.0.1, as in test_dmp_flows.py."""

from __future__ import annotations

import asyncio

import pytest

from tests.edged.test_dmp_flows import PIERRE, start, until

pytestmark = [pytest.mark.asyncio, pytest.mark.pcsc]


def _pin_prompts(bench) -> int:
    """PIN prompts put up on the terminal so far (each shown blank first, then as typed)."""
    return sum(1 for lines in bench.display.history
               if lines and lines[0].startswith("PIN CPS") and lines[1:] == [""])


@pytest.mark.timeout(120)
async def test_a_login_waiting_for_its_pin_holds_up_no_other_client(edged, slots, pcscd,
                                                                    dmp_sim, world) -> None:
    # Review: one lock for the whole daemon was held across the host round trips and the PIN
    # entry, so while one user typed a PIN every client's dmp.* call waited (up to
    # pin_timeout), even a client whose session was already open.
    world.create("gp", ins=PIERRE)
    bench = await start(edged, slots, dmp_sim)  # the PIN typed ahead, for the first login
    async with await bench.client("desk", "dmp:read") as desk, \
            await bench.client("consultation", "dmp:read") as consultation:
        assert (await desk.call("dmp.exists", {"ins": PIERRE}))["exists"]  # desk's session
        assert _pin_prompts(bench) == 1
        waiting = asyncio.ensure_future(consultation.call("dmp.exists", {"ins": PIERRE}))
        await until(lambda: _pin_prompts(bench) == 2 or waiting.done(), timeout=15)
        assert not waiting.done()  # its own PIN, asked on the keypad: nobody types it yet
        for _ in range(2):  # served meanwhile, more than once
            answer = await asyncio.wait_for(desk.call("dmp.exists", {"ins": PIERRE}), 10)
            assert answer["exists"]
        assert not waiting.done()
        bench.keypad.press("1234", "OK")
        assert (await asyncio.wait_for(waiting, 30))["exists"]
        assert _pin_prompts(bench) == 2  # desk never needed its PIN again
