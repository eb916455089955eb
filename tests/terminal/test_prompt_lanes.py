"""A waiting prompt does not hold the card link (review M2), through the real daemon and the
virtual terminal: vitale.read completes while a consent prompt waits; prompts are capped and
one per client."""

from __future__ import annotations

import asyncio
import re
import threading
import time
from pathlib import Path

import pytest

from bifente.client import RemoteError, pair
from bifente.edged.config import Config
from bifente.edged.daemon import Daemon
from bifente.edged.readers.link import ConfirmOutcome
from bifente.edged.readers.terminal import TerminalLink
from bifente.simulators.terminal import VirtualTerminal


async def _until(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, what
        await asyncio.sleep(0.05)


@pytest.mark.asyncio
async def test_vitale_read_completes_while_a_consent_prompt_waits(
        vt: VirtualTerminal, tmp_path: Path) -> None:
    config = Config(host="127.0.0.1", port=0, state_dir=tmp_path / "state", mdns=False,
                    pcsc=False, terminal=vt.pty_path)
    daemon = Daemon(config)
    await daemon.start()
    try:
        await _until(lambda: daemon.slots.find("vitale") is not None, 20, "no Vitale card")

        def code() -> str:
            for _ in range(100):
                match = re.search(r"Code: (\d{6})", "\n".join(vt.screen_lines()))
                if match:
                    return match.group(1)
                time.sleep(0.05)
            raise AssertionError(vt.screen_lines())

        async def client(name: str, *scopes: str):
            creds = await pair("127.0.0.1", daemon.server.port, daemon.keystore.fingerprint,
                               name, list(scopes), lambda: asyncio.to_thread(code))
            return await creds.connect()

        async with await client("desk", "dmp:read") as desk, \
                await client("reception", "identity:read") as reception:
            asked = asyncio.ensure_future(desk.call("consent.ask", {
                "text": "Autoriser la lecture ?", "timeout": 45}))
            await _until(lambda: "OK / Annuler" in vt.screen_lines(), 10, "no prompt")
            started = time.monotonic()
            card = await asyncio.wait_for(reception.call("vitale.read", {}), 20)
            took = time.monotonic() - started
            assert len(card["beneficiaries"]) == 4
            assert not asked.done() and "OK / Annuler" in vt.screen_lines()  # still waiting
            assert took < 10, f"vitale.read took {took:.1f} s behind the prompt"
            # One pending prompt per client: a second one is refused at once, not queued.
            with pytest.raises(RemoteError) as second:
                await asyncio.wait_for(desk.call("consent.ask", {"text": "Encore ?"}), 5)
            assert second.value.reason == "prompt_pending"
            # A screen for later (the DMP password, say) waits for the prompt, never covers it.
            assert daemon.ui is not None
            shown = asyncio.ensure_future(daemon.ui.show(["Carte lue"]))
            await asyncio.sleep(1.0)
            assert not shown.done() and "OK / Annuler" in vt.screen_lines()
            await asyncio.to_thread(vt.press, "OK", wait=10)
            assert (await asyncio.wait_for(asked, 10)) == {"answer": "ok"}
            await asyncio.wait_for(shown, 10)
            assert vt.screen_lines() == ["Carte lue"]
            # Prompts are capped at 60 s: a longer one is refused by the contract.
            with pytest.raises(RemoteError) as long:
                await desk.call("consent.ask", {"text": "Longue ?", "timeout": 300})
            assert long.value.reason == "invalid_params"
    finally:
        await daemon.stop()


def test_the_card_lane_goes_round_the_numbers_while_a_prompt_waits(
        vt: VirtualTerminal, link: TerminalLink) -> None:
    """Sequence numbers are shared by the lanes (1..255): 300 card requests behind a waiting
    prompt skip its number, so neither lane gets the other's answer (the soak's KeyError)."""
    answers: list[ConfirmOutcome] = []
    prompt = threading.Thread(target=lambda: answers.append(link.confirm("Attendre ?", 60)))
    prompt.start()
    deadline = time.monotonic() + 10
    while "OK / Annuler" not in vt.screen_lines():
        assert time.monotonic() < deadline, vt.screen_lines()
        time.sleep(0.05)
    states = link.slot_status()
    for _ in range(300):
        assert link.slot_status() == states
    vt.press("OK", wait=10)
    prompt.join(10)
    assert answers == [ConfirmOutcome.OK]
