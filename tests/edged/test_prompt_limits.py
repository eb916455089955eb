"""A paired client cannot flood the terminal with prompts (review M2; docs/security.md,
"Prompts on the terminal"): each client has a prompt budget, over it the call is refused
with `rate_limited` and `retry_after` before anything reaches the display."""

from __future__ import annotations

import logging

import pytest

from bifente.client import RemoteError
from bifente.edged.limits import PROMPT_BURST, PROMPTS_PER_MINUTE
from bifente.edged.services.prompts import PromptGate


@pytest.mark.asyncio
async def test_a_client_over_its_prompt_budget_is_refused_and_others_still_ask(
        edged, caplog: pytest.LogCaptureFixture) -> None:
    bench = await edged()
    caplog.set_level(logging.WARNING, logger="bifente.edged.services.prompts")
    async with await bench.client("flooder", "dmp:read") as flooder, \
            await bench.client("desk", "dmp:read") as desk:
        # Each prompt cancelled at once, as a script with a hand on the keypad would.
        bench.keypad.press(*["CANCEL"] * PROMPT_BURST)
        for n in range(PROMPT_BURST):
            assert await flooder.call("consent.ask", {"text": f"Question {n} ?"}) == {
                "answer": "cancel"}
        shown = len(bench.display.history)
        for _ in range(3):
            with pytest.raises(RemoteError) as refused:
                await flooder.call("consent.ask", {"text": "Encore ?"})
            assert refused.value.reason == "rate_limited"
            assert 0 < refused.value.data["retry_after"] <= 60 / PROMPTS_PER_MINUTE
        assert len(bench.display.history) == shown  # nothing reached the display
        assert caplog.text.count("prompts refused: flooder") == 1  # one line, not three
        # Another client's budget is its own.
        bench.keypad.press("OK")
        assert await desk.call("consent.ask", {"text": "Autoriser ?"}) == {"answer": "ok"}


@pytest.mark.asyncio
async def test_a_named_client_may_be_given_a_larger_prompt_budget(edged) -> None:
    bench = await edged(limits={"reception": {"prompt_burst": PROMPT_BURST + 2}})
    async with await bench.client("reception", "dmp:read") as client:
        bench.keypad.press(*["OK"] * (PROMPT_BURST + 2))
        for _ in range(PROMPT_BURST + 2):
            assert (await client.call("consent.ask", {"text": "Oui ?"}))["answer"] == "ok"
        with pytest.raises(RemoteError) as refused:
            await client.call("consent.ask", {"text": "Oui ?"})
        assert refused.value.reason == "rate_limited"


def test_the_budget_refills_at_the_documented_rate() -> None:
    now = [0.0]
    gate = PromptGate(clock=lambda: now[0])
    assert [gate.take("a", 2, 6.0) for _ in range(2)] == [0.0, 0.0]
    assert gate.take("a", 2, 6.0) == pytest.approx(10.0)  # one a minute / 6 = 10 s
    now[0] = 9.0
    assert gate.take("a", 2, 6.0) == pytest.approx(1.0)
    now[0] = 10.0
    assert gate.take("a", 2, 6.0) == 0.0
    assert gate.take("b", 2, 6.0) == 0.0  # per client
    now[0] = 1000.0  # a long pause refills to the burst, never beyond
    assert [gate.take("a", 2, 6.0) for _ in range(3)][2] > 0
