"""The examples of docs/sdk-python.md, run against a real daemon with simulated cards."""

from __future__ import annotations

import asyncio
import base64
import re
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding

from bifente.simulators.cps3 import Cps3Card
from bifente.simulators.vitale import Vitale2Card

pytestmark = [pytest.mark.asyncio, pytest.mark.pcsc]
DOC = Path(__file__).resolve().parents[2] / "docs" / "sdk-python.md"


def _examples() -> dict[str, Any]:
    namespace: dict[str, Any] = {"__name__": "docs_sdk_python"}
    blocks = re.findall(r"^```python\n(.*?)^```", DOC.read_text(), re.S | re.M)
    assert len(blocks) >= 4
    for block in blocks:
        exec(compile(block, str(DOC), "exec"), namespace)  # our own docs, reviewed code
    return namespace


async def test_the_sdk_guide_examples_work(edged, slots, pcscd, tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BIFENTE_CLIENT_DIR", str(tmp_path / "clients"))
    ex = _examples()
    await asyncio.to_thread(slots.insert, 0, Cps3Card("gp"))
    bench = await edged(pcsc=True)
    credentials = await ex["pair_front_desk"]("127.0.0.1", bench.port, bench.fingerprint,
                                              bench.code_on_display)
    assert (tmp_path / "clients").is_dir()
    assert await ex["who_is_at_the_desk"](credentials) == []  # no Vitale card yet

    waiting = asyncio.ensure_future(ex["wait_for_a_card"](credentials))
    await asyncio.sleep(0.5)
    await asyncio.to_thread(slots.insert, 1, Vitale2Card("adult"))
    event = await waiting
    assert event["event"] == "card.inserted" and event["kind"] == "vitale" and event["seq"] >= 1
    for _ in range(100):
        if bench.daemon.slots.find("vitale"):
            break
        await asyncio.sleep(0.05)
    assert await ex["who_is_at_the_desk"](credentials) == ["Marie DUBOIS"]

    bench.keypad.press("1234", "OK")  # the PIN, then the holder's OK for the signature
    bench.keypad.press("OK")
    signed = await ex["sign_report"](credentials, b"compte rendu")
    cert = x509.load_der_x509_certificate(base64.b64decode(signed["certificate"]))
    cert.public_key().verify(base64.b64decode(signed["signature"]), b"compte rendu",
                             padding.PKCS1v15(), hashes.SHA256())
