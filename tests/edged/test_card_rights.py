"""Card rights belong to a client, not to the card: the security review's attacks, now failing.

Each test replays a reproduction from the review (H1, M1, M9, M10) against the real daemon,
the real reference DMP host and simulated cards through pcscd/vpcd; docs/security.md
describes the model these tests pin.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib

import pytest

from bifente.client import RemoteError
from bifente.edged.cli.main import main as bifente
from bifente.simulators.cps3 import Cps3Card
from bifente.simulators.dmp.testing import DmpClient
from tests.edged.test_dmp_flows import PIERRE, answered, prompts, refused, start, until

pytestmark = [pytest.mark.asyncio, pytest.mark.pcsc]


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def host_challenge(dmp_host) -> str:
    """What an attacker on the LAN gets from the DMP host: a fresh login challenge."""
    client = DmpClient(dmp_host.url, dmp_host.cafile)
    try:
        answer = client.post("/api/auth/challenge")
        assert answer.status == 200
        return str(answer.json()["challenge"])
    finally:
        client.close()


async def test_a_signing_client_neither_borrows_the_pin_nor_logs_in_to_the_dmp(
        edged, slots, pcscd, host, dmp_sim, world) -> None:
    world.create("gp", ins=PIERRE)
    bench = await start(edged, slots, dmp_sim)  # the PIN is typed at the desk's first DMP login
    async with await bench.client("dmp desk", "dmp:read") as desk, \
            await bench.client("app", "cps:sign") as app:
        assert (await desk.call("dmp.exists", {"ins": PIERRE}))["exists"] is True
        challenge = host_challenge(host)
        # The review's step 2: raw authentication of the host's challenge is not this scope.
        for call in (app.call("cps.authenticate", {"challenge": challenge}),
                     app.call("cps.sign", {"data": challenge, "key": "authentication"})):
            assert (await refused(call)).reason == "missing_scope"
        # The signature key: the terminal asks first, naming the client, the title, the digest.
        bench.keypad.press("CANCEL")
        err = await refused(app.call("cps.sign", {"data": challenge, "title": "Ordonnance"}))
        assert err.reason == "signature_refused"
        shown = prompts(bench)[-1]
        digest = hashlib.sha256(base64.b64decode(challenge)).hexdigest()[:8]
        assert "Pour: app" in shown and "Ordonnance" in shown and digest in shown
        # Confirmed: still no signature, since the PIN the desk typed is not the app's.
        bench.keypad.press("OK")
        err = await refused(app.call("cps.sign", {"data": challenge, "title": "Ordonnance"}))
        assert err.reason == "pin_required"

        # Even with cps:authenticate and its own PIN, the DMP host's challenge is refused.
        async with await bench.client("auth app", "cps:authenticate") as auth:
            bench.keypad.press("1234", "OK")
            assert (await auth.call("cps.verify_pin"))["result"] == "ok"
            for call in (auth.call("cps.authenticate", {"challenge": challenge}),
                         auth.call("cps.sign", {"data": challenge, "key": "authentication"})):
                assert (await refused(call)).reason == "challenge_reserved"
            signed = await auth.call("cps.authenticate", {"challenge": b64(b"n" * 20)})
            assert signed["signature"]
            # The app typed no PIN of its own: the one typed for "auth app" does not serve it.
            bench.keypad.press("OK")
            err = await refused(app.call("cps.sign", {"data": b64(b"letter")}))
            assert err.reason == "pin_required"
        # The host never saw a session opened with the card for anyone but the desk.
        session = DmpClient(host.url, host.cafile)
        try:
            answer = session.post("/api/auth/session", {"challenge": challenge,
                                                        "certificate": signed["certificate"],
                                                        "signature": signed["signature"]})
            assert answer.status == 401
        finally:
            session.close()
    events = [r.event for r in bench.daemon.audit.records()]
    assert events.count("cps.sign") == 0 and events.count("cps.authenticate") == 1


async def test_batch_signing_is_bounded_and_belongs_to_one_client(edged, slots,
                                                                     pcscd) -> None:
    await asyncio.to_thread(slots.insert, 0, Cps3Card("gp"))
    bench = await edged(pcsc=True, sign_batch_count=3, sign_batch_minutes=5.0)
    await until(lambda: bench.daemon.slots.find("cps"))
    async with await bench.client("lot", "cps:sign") as lot, \
            await bench.client("other", "cps:sign") as other:
        bench.keypad.press("1234", "OK")
        assert (await lot.call("cps.verify_pin"))["result"] == "ok"
        bench.keypad.press("OK")
        await lot.call("cps.sign", {"data": b64(b"1"), "title": "Ordonnances"})
        assert "Lot: 3 sign. en 5 min" in prompts(bench)[-1]
        asked = len(prompts(bench))
        for n in (b"2", b"3"):  # inside the confirmed batch: no prompt
            await lot.call("cps.sign", {"data": b64(n)})
        assert len(prompts(bench)) == asked
        # The batch is spent: the fourth is asked again (and refused here).
        bench.keypad.press("CANCEL")
        assert (await refused(lot.call("cps.sign", {"data": b64(b"4")}))).reason == \
            "signature_refused"
        # Another client never rides on it.
        bench.keypad.press("CANCEL")
        assert (await refused(other.call("cps.sign", {"data": b64(b"5")}))).reason == \
            "signature_refused"
        assert len(prompts(bench)) == asked + 2


async def test_an_emergency_access_is_the_declaring_clients_and_cancel_ends_it(
        edged, slots, pcscd, dmp_sim, world) -> None:
    world.create("gp", ins=PIERRE)
    document = world.fed(PIERRE, "gp", "11488-4")
    bench = await start(edged, slots, dmp_sim, cps="emergency")
    async with await bench.client("reader", "dmp:read") as reader, \
            await bench.client("urgences", "dmp:emergency") as urgences:
        err = await refused(answered(bench, reader.call("dmp.find", {"ins": PIERRE}), "CANCEL"))
        assert err.reason == "consent_refused"
        bench.keypad.press("1234", "OK")  # the emergency client types its own PIN
        await urgences.call("dmp.emergency", {"ins": PIERRE, "mode": "bris_de_glace",
                                              "reason": "unconscious"})
        asked = len(prompts(bench))
        found = await urgences.call("dmp.find", {"ins": PIERRE})
        assert [d["id"] for d in found["documents"]] == [document]
        assert len(prompts(bench)) == asked  # under its own emergency access: no prompt
        # The review's step 3: the dmp:read client does not inherit it; asked again.
        err = await refused(answered(bench, reader.call("dmp.find", {"ins": PIERRE}), "CANCEL"))
        assert err.reason == "consent_refused" and len(prompts(bench)) == asked + 1
        # The patient's Cancel won: the emergency access is over for its declarer too.
        err = await refused(answered(bench, urgences.call("dmp.find", {"ins": PIERRE}),
                                     "CANCEL"))
        assert err.reason == "consent_refused"
    records = [(r.event, r.actor, r.data()) for r in bench.daemon.audit.records()]
    modes = [(actor, f.get("mode"), f.get("outcome")) for event, actor, f in records
             if event == "dmp.find" and f.get("outcome") != "started"]  # not the intents
    assert modes == [("reader", "consent", "refused"), ("urgences", "bris_de_glace", "ok"),
                     ("reader", "consent", "refused"), ("urgences", "consent", "refused")]
    assert [f["by"] for event, _, f in records if event == "dmp.emergency.ended"] == [
        "patient_cancel"]


async def test_pairing_shows_the_scopes_and_admin_is_granted_only_locally(
        edged, tmp_path) -> None:
    bench = await edged()
    async with await bench.unpaired() as stranger:
        with pytest.raises(RemoteError) as exc:
            await stranger.call("pair.begin", {"name": "intruder", "csr": "x",
                                               "scopes": ["cps:sign", "admin"]})
        assert exc.value.reason == "invalid_request" and "daemon's machine" in exc.value.message
    shown: list[str] = []

    def read_code() -> str:
        shown.append(bench.display.screen())
        return bench.code_on_display()

    from bifente.client import pair

    credentials = await pair("127.0.0.1", bench.port, bench.fingerprint, "writer",
                             ["cps:sign", "dmp:write"], read_code)
    lines = shown[0].splitlines()
    assert lines[:2] == ["Appairage", "writer"] and lines[-1].startswith("Code: ")
    assert " ".join(lines[2:-1]) == "SIGNER DMP-ECRIRE"
    async with await credentials.connect() as writer:
        with pytest.raises(RemoteError) as exc:
            await writer.call("clients.list")
        assert exc.value.reason == "missing_scope"
        # On the daemon's machine, whoever may write its state grants admin with the CLI.
        code = await asyncio.to_thread(bifente, ["admin", "grant", "writer", "--state-dir",
                                                 str(bench.daemon.config.state_dir)])
        assert code == 0
        listed = await writer.call("clients.list")
        assert listed["clients"][0]["scopes"] == ["cps:sign", "dmp:write", "admin"]


async def test_a_sending_client_cannot_read_the_mailbox(edged) -> None:
    bench = await edged()
    async with await bench.client("mailer", "mail:send") as mailer:
        for method, params in (("mail.list", {}), ("mail.open", {"uid": "1"})):
            with pytest.raises(RemoteError) as exc:
                await mailer.call(method, params)
            assert exc.value.reason == "missing_scope"
            assert exc.value.data["scopes"] == ["mail:read"]
