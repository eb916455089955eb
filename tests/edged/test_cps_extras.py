"""cps.certificates, cps.pin_state (verified flag), cps.logout, cps.sign_digest, display.show."""

from __future__ import annotations

import asyncio
import base64
import hashlib

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, utils

from bifente.client import RemoteError
from bifente.simulators.cps3 import Cps3Card

pytestmark = [pytest.mark.asyncio, pytest.mark.pcsc]


async def with_cards(edged, slots, cps: str = "gp"):
    await asyncio.to_thread(slots.insert, 0, Cps3Card(cps))
    bench = await edged(pcsc=True)
    for _ in range(250):
        if bench.daemon.slots.find("cps"):
            return bench
        await asyncio.sleep(0.02)
    raise AssertionError("the CPS card never showed up")


async def test_certificates_without_pin_then_verified_state_and_logout(edged, slots,
                                                                         pcscd) -> None:
    bench = await with_cards(edged, slots)
    async with await bench.client("doctor", "identity:read", "cps:sign",
                                  "cps:authenticate") as client:
        certs = await client.call("cps.certificates")  # no PIN, no throwaway signature
        sign_cert = x509.load_der_x509_certificate(
            base64.b64decode(certs["signature"]["certificate"]))
        assert certs["signature"]["expired"] is False
        info = await client.call("cps.info", {"certificates": True})
        assert info["certificates"] == certs
        assert (await client.call("cps.pin_state"))["verified"] is False

        digest = hashlib.sha256(b"signed attributes").digest()
        bench.keypad.press("OK")  # the holder confirms the digest signature on the terminal
        with pytest.raises(RemoteError) as exc:
            await client.call("cps.sign_digest", {"digest": base64.b64encode(digest).decode()})
        assert exc.value.reason == "pin_required"
        bench.keypad.press("1234", "OK")
        assert (await client.call("cps.verify_pin"))["result"] == "ok"
        assert (await client.call("cps.pin_state"))["verified"] is True

        bench.keypad.press("OK")
        signed = await client.call("cps.sign_digest",
                                   {"digest": base64.b64encode(digest).decode()})
        auth = x509.load_der_x509_certificate(base64.b64decode(signed["certificate"]))
        assert auth == x509.load_der_x509_certificate(
            base64.b64decode(certs["authentication"]["certificate"]))
        auth.public_key().verify(base64.b64decode(signed["signature"]), digest,
                                 padding.PKCS1v15(), utils.Prehashed(hashes.SHA256()))
        assert sign_cert != auth

        await client.subscribe(["pin.state"])
        assert await client.call("cps.logout") == {"verified": False}
        event = await client.next_event()
        assert event["result"] == "reset"
        assert (await client.call("cps.pin_state"))["verified"] is False
        bench.keypad.press("OK")
        with pytest.raises(RemoteError) as exc:
            await client.call("cps.sign", {"data": base64.b64encode(b"x").decode()})
        assert exc.value.reason == "pin_required"


async def test_expired_profile_flags_its_certificates(edged, slots, pcscd) -> None:
    bench = await with_cards(edged, slots, cps="expired")
    async with await bench.client("desk", "identity:read") as client:
        certs = await client.call("cps.certificates")
    assert certs["signature"]["expired"] is True


async def test_display_show_has_its_own_scope(edged) -> None:
    bench = await edged()
    async with await bench.client("kiosk", "terminal:display") as client:
        shown = await client.call("display.show", {"text": "Bonjour, patientez s'il vous plaît"})
        assert "Bonjour," in bench.display.screen() and shown["lines"][0] == "Bonjour,"
        with pytest.raises(RemoteError) as exc:
            await client.call("vitale.read")
        assert exc.value.reason == "missing_scope"
    async with await bench.client("reader", "identity:read") as client:
        with pytest.raises(RemoteError) as exc:
            await client.call("display.show", {"text": "x"})
        assert exc.value.data["scopes"] == ["terminal:display"]
