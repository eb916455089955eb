"""edged with cards: pyscard -> pcscd -> vpcd -> simulated cards, reached over TLS + JSON-RPC."""

from __future__ import annotations

import asyncio
import base64

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding

from bifente.client import RemoteError
from bifente.simulators.cps3 import Cps3Card
from bifente.simulators.vitale import Vitale2Card
from tests.pins import shows_pin

pytestmark = [pytest.mark.asyncio, pytest.mark.pcsc]


async def until(predicate, timeout: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, "condition not reached"
        await asyncio.sleep(0.02)


async def with_cards(edged, slots, cps: str = "gp", vitale: str = "family", **kw):
    await asyncio.to_thread(slots.insert, 0, Cps3Card(cps))
    await asyncio.to_thread(slots.insert, 1, Vitale2Card(vitale))
    bench = await edged(pcsc=True, **kw)
    await until(lambda: bench.daemon.slots.find("cps") and bench.daemon.slots.find("vitale"))
    return bench


async def test_read_both_cards(edged, slots, pcscd) -> None:
    bench = await with_cards(edged, slots)
    async with await bench.client("desk", "identity:read") as client:
        readers = await client.call("readers.list")
        kinds = {s["kind"] for s in readers["slots"]}
        assert {"cps", "vitale"} <= kinds
        card = await client.call("vitale.read")
        assert [b["first_name"] for b in card["beneficiaries"]] == [
            "Pierre", "Anne-Sophie", "Lucas", "Émma"]
        assert card["beneficiaries"][0]["ins"]["oid"] == "1.2.250.1.213.1.4.10"
        info = await client.call("cps.info")
        assert info["display_name"] == "Dr Claire MARTIN" and info["pin"]["tries_left"] == 3


async def test_pin_on_the_keypad_then_sign(edged, slots, pcscd) -> None:
    bench = await with_cards(edged, slots)
    async with await bench.client("doctor", "identity:read", "cps:sign") as client:
        await client.subscribe(["pin.state"])
        bench.keypad.press("OK")
        with pytest.raises(RemoteError) as exc:
            await client.call("cps.sign", {"data": base64.b64encode(b"x").decode()})
        assert exc.value.reason == "pin_required"
        bench.keypad.press("0000", "OK")
        assert await client.call("cps.verify_pin") == {"result": "wrong", "tries_left": 2}
        bench.keypad.press("12", "CORR", "234", "OK")  # a correction on the way
        assert await client.call("cps.verify_pin") == {"result": "ok", "tries_left": 3}
        event = await client.next_event()
        assert event["event"] == "pin.state" and event["result"] == "wrong"
        assert (await client.next_event())["result"] == "ok"
        document = b"consultation report"
        bench.keypad.press("OK")  # confirmed on the terminal
        signed = await client.call("cps.sign", {"data": base64.b64encode(document).decode(),
                                                "title": "Compte rendu"})
        cert = x509.load_der_x509_certificate(base64.b64decode(signed["certificate"]))
        cert.public_key().verify(base64.b64decode(signed["signature"]), document,
                                 padding.PKCS1v15(), hashes.SHA256())
    outcomes = [r.data()["outcome"] for r in bench.daemon.audit.records()
                if r.event == "pin.verify"]
    assert outcomes == ["asked", "wrong", "asked", "ok"]  # intent, then outcome (M5)
    assert not any(shows_pin(r.fields, "1234") for r in bench.daemon.audit.records())


async def test_pin_cancelled_and_blocked(edged, slots, pcscd) -> None:
    bench = await with_cards(edged, slots)
    async with await bench.client("doctor", "cps:sign") as client:
        bench.keypad.press("12", "CANCEL")
        assert await client.call("cps.verify_pin") == {"result": "cancelled", "tries_left": 3}
        for left in (2, 1):
            bench.keypad.press("9999", "OK")
            assert await client.call("cps.verify_pin") == {"result": "wrong", "tries_left": left}
        bench.keypad.press("9999", "OK")
        assert await client.call("cps.verify_pin") == {"result": "blocked", "tries_left": 0}
        assert "bloque" in bench.display.screen()  # French, as the firmware says it


async def test_pcsc_reader_without_pin_pad_refuses(edged, slots, pcscd) -> None:
    bench = await with_cards(edged, slots, pin_pad=False)
    async with await bench.client("doctor", "cps:sign") as client:
        with pytest.raises(RemoteError) as exc:
            await client.call("cps.verify_pin")
        assert exc.value.reason == "no_pin_pad"


async def test_consent_on_the_terminal(edged, slots, pcscd) -> None:
    bench = await with_cards(edged, slots)
    async with await bench.client("dmp app", "dmp:read") as client:
        asked = asyncio.ensure_future(client.call("consent.ask", {
            "text": "Allow Dr Claire MARTIN to read your DMP?"}))
        await until(lambda: "OK / Annuler" in bench.display.screen())
        assert "Allow Dr Claire" in bench.display.screen()
        bench.keypad.press("OK")
        assert await asked == {"answer": "ok"}
        bench.keypad.press("CANCEL")
        assert await client.call("consent.ask", {"text": "Again?"}) == {"answer": "cancel"}
        assert await client.call("consent.ask", {"text": "Anyone?", "timeout": 5}) == {
            "answer": "timeout"}


async def test_card_events(edged, slots, pcscd) -> None:
    bench = await with_cards(edged, slots)
    async with await bench.client("watcher", "identity:read") as client:
        await client.subscribe()
        await asyncio.to_thread(slots.remove, 1)
        event = await client.next_event()
        assert (event["event"], event["kind"]) == ("card.removed", "vitale")
        with pytest.raises(RemoteError) as exc:
            await client.call("vitale.read")
        assert exc.value.reason == "no_card"
        await asyncio.to_thread(slots.insert, 1, Vitale2Card("adult"))
        event = await client.next_event()
        assert (event["event"], event["kind"]) == ("card.inserted", "vitale")
        card = await client.call("vitale.read")
        assert card["beneficiaries"][0]["first_name"] == "Marie"


async def test_card_pulled_mid_signature_then_next_call_works(edged, slots, pcscd) -> None:
    bench = await with_cards(edged, slots)
    async with await bench.client("doctor", "identity:read", "cps:sign") as client:
        bench.keypad.press("1234", "OK")
        assert (await client.call("cps.verify_pin"))["result"] == "ok"
        bridge = slots.bridges[0]
        bridge.vanish_at_apdu = bridge.apdus + 3  # inside MSE / PSO HASH / PSO CDS
        bench.keypad.press("OK")
        with pytest.raises(RemoteError) as exc:
            await client.call("cps.sign", {"data": base64.b64encode(b"doc").decode()})
        assert exc.value.reason == "card_removed"
        await until(lambda: bench.daemon.slots.find("cps") is None)
        await asyncio.to_thread(slots.insert, 0)
        await until(lambda: bench.daemon.slots.find("cps") is not None)
        info = await client.call("cps.info")
        assert info["pin"]["tries_left"] == 3


async def test_client_leaving_mid_operation_keeps_the_card_usable(edged, slots, pcscd) -> None:
    bench = await with_cards(edged, slots)
    leaving = await bench.client("tablet", "cps:sign")
    staying = await bench.client("desk", "identity:read")
    pending = asyncio.ensure_future(leaving.call("cps.verify_pin"))  # waits for keys
    await until(lambda: "PIN CPS" in bench.display.screen())
    queued = asyncio.ensure_future(staying.call("cps.info"))
    await asyncio.sleep(0.1)
    await leaving.close()
    with pytest.raises(ConnectionError):
        await pending
    bench.keypad.press("CANCEL")  # the holder walks away from the keypad
    info = await asyncio.wait_for(queued, 10)
    assert info["pin"]["tries_left"] == 3  # no PIN was presented, nothing retried
    await staying.close()
