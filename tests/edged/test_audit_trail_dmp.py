"""Review M5 and L3 against the real daemon, cards through pcscd and a real DMP host.

M5: the PIN typed for edged's own DMP login is audited, wrong or right, before and after.
L3: a NIR-shaped value in a call is masked in the audit, never a reason to lose the record,
and the intent is on record before the host is called.
"""

from __future__ import annotations

import asyncio

import pytest

from bifente.client import RemoteError
from bifente.simulators.cps3 import Cps3Card
from bifente.simulators.vitale import Vitale2Card
from bifente.simulators.world import SimulatedWorld
from tests.edged.test_dmp_flows import ANNE, PIERRE, answered, dmp_config, until

pytestmark = [pytest.mark.asyncio, pytest.mark.pcsc]


async def _with_cards(edged, slots, sim: SimulatedWorld):
    await asyncio.to_thread(slots.insert, 0, Cps3Card("gp"))
    await asyncio.to_thread(slots.insert, 1, Vitale2Card("family"))
    bench = await edged(pcsc=True, dmp=dmp_config(sim))
    await until(lambda: bench.daemon.slots.find("cps") and bench.daemon.slots.find("vitale"))
    return bench


def _since(bench, seq: int, *events: str) -> list:
    return [r for r in bench.daemon.audit.records(seq) if r.event in events]


async def test_pin_of_the_dmp_login_is_audited_wrong_and_right(edged, slots, pcscd,
                                                                   dmp_sim) -> None:
    bench = await _with_cards(edged, slots, dmp_sim)
    async with await bench.client("desk", "dmp:read") as client:
        start = bench.daemon.audit.head()[0]
        bench.keypad.press("9999", "OK")  # the review's reproduction: a wrong PIN
        with pytest.raises(RemoteError) as exc:
            await client.call("dmp.exists", {"ins": PIERRE})
        assert exc.value.reason == "wrong_pin"
        pins = [r.data() for r in _since(bench, start, "pin.verify")]
        assert pins == [{"outcome": "asked", "via": "dmp.login"},
                        {"outcome": "wrong", "tries_left": 2, "via": "dmp.login"}]
        calls = [r.data()["outcome"] for r in _since(bench, start, "dmp.exists")]
        assert calls == ["started", "failed"]
        assert all(r.actor == "desk" for r in _since(bench, start, "pin.verify", "dmp.exists"))

        middle = bench.daemon.audit.head()[0]
        bench.keypad.press("1234", "OK")
        assert (await client.call("dmp.exists", {"ins": PIERRE}))["exists"] is False
        pins = [r.data()["outcome"] for r in _since(bench, middle, "pin.verify")]
        assert pins == ["asked", "ok"]
    texts = [r.fields + r.actor for r in bench.daemon.audit.records()]
    assert not [t for t in texts if "9999" in t or "1234" in t]


async def test_a_nir_in_a_document_id_is_masked_and_the_call_is_recorded(edged, slots,
                                                                             pcscd,
                                                                             dmp_sim) -> None:
    bench = await _with_cards(edged, slots, dmp_sim)
    bench.keypad.press("1234", "OK")
    async with await bench.client("desk", "dmp:read", "dmp:write") as client:
        await answered(bench, client.call("dmp.create", {"ins": PIERRE}), "OK")
        start = bench.daemon.audit.head()[0]
        try:  # the review's reproduction: internal_error and no record
            await answered(bench, client.call("dmp.get", {
                "ins": PIERRE, "document_id": f"?ins={ANNE}#"}), "OK")
        except RemoteError as exc:
            assert exc.reason != "internal_error"
        records = _since(bench, start, "dmp.get")
        assert len(records) == 2 and records[0].data()["outcome"] == "started"
        for record in records:
            assert ANNE not in record.fields and ANNE[3:] not in record.fields
            assert record.data()["document"].startswith("?ins=280")
    assert bench.daemon.audit.verify().ok
