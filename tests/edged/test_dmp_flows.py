"""DMP flows end to end: a real edged (cards through pcscd, the simulated keypad and display)
talking to a real reference DMP host on 127.0.0.1 (docs/dmp-terminal.md, ids D1-D21). No mocks:
the patient answers the consent on the keypad while the call waits."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import time

import pytest

from bifente.client import RemoteError
from bifente.edged.api.dmp_methods import _service
from bifente.simulators.cps3 import Cps3Card
from bifente.simulators.dmp import DmpHost
from bifente.simulators.dmp.testing import DmpClient
from bifente.simulators.vitale import Vitale2Card
from bifente.simulators.world import SimulatedWorld
from tests.edged.cda import BIOLOGY, cda

CARE = "11506-3"  # care follow-up: nurses see it

pytestmark = [pytest.mark.asyncio, pytest.mark.pcsc]

PIERRE = "178027505601209"  # the family card's insured
ANNE = "280011305512380"  # his spouse, on the same card
ADULT = "285036912304579"  # the adult card
GP, NURSE = "810001000101", "810001000102"


def dmp_config(sim: SimulatedWorld, **extra: object) -> dict[str, object]:
    """edged's [dmp] table for the world's host, with the test's own settings added."""
    return {**sim.edged_overrides()["dmp"], **extra}


async def until(predicate, timeout: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, "condition not reached"
        await asyncio.sleep(0.02)


async def start(edged, slots, sim: SimulatedWorld, cps: str = "gp", vitale: str | None = "family",
                **extra: object):
    await asyncio.to_thread(slots.insert, 0, Cps3Card(cps))
    if vitale:
        await asyncio.to_thread(slots.insert, 1, Vitale2Card(vitale))
    bench = await edged(pcsc=True, dmp=dmp_config(sim, **extra))
    await until(lambda: bench.daemon.slots.find("cps")
                and (not vitale or bench.daemon.slots.find("vitale")))
    bench.keypad.press("1234", "OK")  # the CPS PIN, asked on the keypad at the first login
    return bench


async def answered(bench, call, *keys: str):
    """Run the call; answer each consent prompt on the keypad with the next key."""
    task = asyncio.ensure_future(call)
    for key in keys:
        await until(lambda: task.done() or "OK / Annuler" in bench.display.screen())
        if task.done():
            break
        bench.keypad.press(key)
        await until(lambda: task.done() or "OK / Annuler" not in bench.display.screen())
    return await task


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


async def test_create_feed_find_get_with_consent(edged, slots, pcscd, dmp_sim) -> None:
    bench = await start(edged, slots, dmp_sim)
    async with await bench.client("desk", "dmp:read", "dmp:write") as client:
        assert await client.call("dmp.exists", {"ins": PIERRE}) == {"exists": False,
                                                                     "status": None}
        created = await answered(bench, client.call("dmp.create", {"ins": PIERRE}), "OK")
        assert created["status"] == "open" and len(created["patient_password"]) >= 12
        assert created["patient_password"] in bench.display.screen()
        fed = await answered(bench, client.call("dmp.feed", {"ins": PIERRE,
                                                             "cda": b64(cda(PIERRE))}), "OK")
        assert fed["state"] == "registered"
        found = await answered(bench, client.call("dmp.find", {"ins": PIERRE}), "OK")
        assert [d["id"] for d in found["documents"]] == [fed["document"]["id"]]
        got = await answered(bench, client.call("dmp.get", {
            "ins": PIERRE, "document_id": fed["document"]["id"]}), "OK")
        assert base64.b64decode(got["cda"]).startswith(b"<?xml")


def prompts(bench) -> list[str]:
    """Every consent question shown on the terminal so far."""
    return [" ".join(lines[:-1]) for lines in bench.display.history
            if lines and lines[-1] == "OK / Annuler"]


async def refused(call) -> RemoteError:
    with pytest.raises(RemoteError) as exc:
        await call
    return exc.value


async def test_consent_asked_each_time_cancel_refuses(edged, slots, pcscd,
                                                                dmp_sim) -> None:
    bench = await start(edged, slots, dmp_sim)
    async with await bench.client("desk", "dmp:read", "dmp:write") as client:
        await answered(bench, client.call("dmp.create", {"ins": PIERRE}), "OK")  # D4
        doc = cda(PIERRE)
        await answered(bench, client.call("dmp.feed", {"ins": PIERRE, "cda": b64(doc)}), "OK")
        for _ in range(2):  # D10: asked again for each read
            await answered(bench, client.call("dmp.find", {"ins": PIERRE}), "OK")
        assert prompts(bench) == [
            "Autoriser Dr Claire MARTIN a creer votre DMP ?",
            "Autoriser Dr Claire MARTIN a alimenter votre DMP ?",
            "Autoriser Dr Claire MARTIN a consulter votre DMP ?",
            "Autoriser Dr Claire MARTIN a consulter votre DMP ?"]
        err = await refused(answered(bench, client.call("dmp.feed", {
            "ins": PIERRE, "cda": b64(cda(PIERRE))}), "CANCEL"))  # D9
        assert (err.code, err.reason) == (-32040, "consent_refused")
        err = await refused(answered(bench, client.call("dmp.find", {"ins": PIERRE}),
                                     "CANCEL"))
        assert err.reason == "consent_refused"
        # Another family member on the same card: her own consent, her own record.
        err = await refused(client.call("dmp.find", {"ins": ADULT}))
        assert err.reason == "ins_not_on_card"
        await asyncio.to_thread(slots.remove, 1)
        await until(lambda: bench.daemon.slots.find("vitale") is None)
        err = await refused(client.call("dmp.find", {"ins": PIERRE}))
        assert err.reason == "vitale_required"
        assert len(prompts(bench)) == 6
    audit = [r for r in bench.daemon.audit.records() if r.event.startswith(("consent", "dmp"))]
    answers = [r.data()["answer"] for r in audit if r.event == "consent.answer"]
    assert answers == ["ok", "ok", "ok", "ok", "cancel", "cancel"]
    assert all(PIERRE not in str(r.fields) for r in audit)
    assert any(r.event == "dmp.find" and r.data().get("reason") == "consent_refused"
               for r in audit)


async def test_consent_timeout(edged, slots, pcscd, dmp_sim) -> None:
    bench = await start(edged, slots, dmp_sim, consent_timeout=5)
    async with await bench.client("desk", "dmp:read") as client:
        err = await refused(client.call("dmp.find", {"ins": PIERRE}))
        assert err.reason == "consent_timeout"


async def test_nurse_creates_and_a_wrong_ins_is_refused(edged, slots, pcscd, dmp_sim) -> None:
    bench = await start(edged, slots, dmp_sim, cps="nurse")
    async with await bench.client("nurse", "dmp:read", "dmp:write") as client:
        created = await answered(bench, client.call("dmp.create", {"ins": ANNE}), "OK")
        assert created["status"] == "open" and created["ins_oid"] == "1.2.250.1.213.1.4.10"
        assert prompts(bench) == ["Autoriser Julie BERNARD a creer votre DMP ?"] or \
            (prompts(bench)[0].startswith("Autoriser") and "BERNARD" in prompts(bench)[0])
        assert await client.call("dmp.exists", {"ins": ANNE}) == {"exists": True,
                                                                   "status": "open"}
        err = await refused(answered(bench, client.call("dmp.create", {"ins": ANNE}), "OK"))
        assert (err.code, err.reason) == (-32060, "dmp_exists")
        err = await refused(client.call("dmp.exists", {"ins": ANNE[:-2] + "00"}))
        assert (err.code, err.reason) == (-32060, "ins_invalid")  # D6: a wrong key


async def test_non_conforming_cda_refused_with_reasons(edged, slots, pcscd, dmp_sim,
                                                          world) -> None:
    world.create("gp", ins=PIERRE)
    bench = await start(edged, slots, dmp_sim)
    async with await bench.client("desk", "dmp:read", "dmp:write") as client:
        bad = cda(PIERRE, drop=("code", "author"))
        err = await refused(answered(bench, client.call("dmp.feed", {
            "ins": PIERRE, "cda": b64(bad)}), "OK"))
        assert (err.code, err.reason) == (-32060, "cda_invalid")
        reasons = {d["reason"] for d in err.data["details"]}
        assert {"code_missing", "author_missing"} <= reasons
        err = await refused(answered(bench, client.call("dmp.feed", {
            "ins": PIERRE, "cda": b64(cda(ANNE))}), "OK"))
        assert err.reason == "ins_mismatch"
        err = await refused(answered(bench, client.call("dmp.feed", {
            "ins": PIERRE, "cda": b64(b'<!DOCTYPE x [<!ENTITY a "b">]><x/>')}), "OK"))
        assert err.reason == "cda_invalid"
        assert {d["reason"] for d in err.data["details"]} == {"dtd_forbidden"}
        found = await answered(bench, client.call("dmp.find", {"ins": PIERRE}), "OK")
        assert found["documents"] == []  # nothing half registered


async def test_nurse_cannot_read_a_biology_report_d12_find_get(edged, slots, pcscd, dmp_sim,
                                                                   world) -> None:
    world.create("gp", ins=PIERRE)
    biology = world.fed(PIERRE, "gp", BIOLOGY)
    report = world.fed(PIERRE, "gp", CARE)
    bench = await start(edged, slots, dmp_sim, cps="nurse")
    async with await bench.client("nurse", "dmp:read") as client:
        found = await answered(bench, client.call("dmp.find", {"ins": PIERRE}), "OK")
        assert [d["id"] for d in found["documents"]] == [report], found  # D11: filtered
        err = await refused(answered(bench, client.call("dmp.get", {
            "ins": PIERRE, "document_id": biology}), "OK"))
        assert (err.code, err.reason) == (-32060, "outside_access_matrix")
        got = await answered(bench, client.call("dmp.get", {"ins": PIERRE,
                                                            "document_id": report}), "OK")
        assert got["document"]["id"] == report and base64.b64decode(got["cda"])
        err = await refused(answered(bench, client.call("dmp.get", {
            "ins": PIERRE, "document_id": "no-such-document"}), "OK"))
        assert err.reason == "unknown_document"
        found = await answered(bench, client.call("dmp.find", {"ins": PIERRE,
                                                               "type": BIOLOGY}), "OK")
        assert found["documents"] == []


async def test_insurer_refused_even_with_consent(edged, slots, pcscd, dmp_sim, world) -> None:
    world.create("gp", ins=PIERRE)
    bench = await start(edged, slots, dmp_sim, cps="insurer")
    async with await bench.client("insurer", "dmp:read") as client:
        err = await refused(answered(bench, client.call("dmp.find", {"ins": PIERRE}), "OK"))
        assert (err.code, err.reason) == (-32060, "insurer_forbidden")


async def test_occupational_needs_express_consent(edged, slots, pcscd, dmp_sim, world) -> None:
    world.create("gp", ins=PIERRE)
    world.fed(PIERRE, "gp", "11488-4")
    bench = await start(edged, slots, dmp_sim, cps="occupational")
    async with await bench.client("occupational", "dmp:read") as client:
        err = await refused(answered(bench, client.call("dmp.find", {"ins": PIERRE}), "OK"))
        assert err.reason == "occupational_needs_express_consent"
        found = await answered(bench, client.call("dmp.find", {"ins": PIERRE,
                                                               "express": True}), "OK")
        assert len(found["documents"]) == 1
        assert prompts(bench)[-1].endswith("(consentement expres)")


async def test_emergency_access(edged, slots, pcscd, dmp_sim, world) -> None:
    _, pierre_password = world.create("gp", ins=PIERRE)
    doc = world.fed(PIERRE, "gp", "11488-4")
    _, password = world.create("gp", ins=ANNE)
    patient = world.patient(ANNE, password)
    r = world.client.post("/api/patient/settings", {"oppose_bris_de_glace": True,
                                                     "oppose_centre_15": True}, token=patient)
    assert r.status == 200, r.body
    bench = await start(edged, slots, dmp_sim, cps="emergency", vitale=None)  # no Vitale card
    async with await bench.client("urgences", "dmp:emergency") as client:
        err = await refused(client.call("dmp.emergency", {"ins": PIERRE, "mode": "bris_de_glace",
                                                          "reason": " "}))
        assert err.reason == "reason_required"
        opened = await client.call("dmp.emergency", {
            "ins": PIERRE, "mode": "bris_de_glace", "reason": "unconscious, allergy check"})
        assert opened["mode"] == "bris_de_glace" and opened["expires_in"] > 0
        found = await client.call("dmp.find", {"ins": PIERRE})  # no consent asked
        assert [d["id"] for d in found["documents"]] == [doc]
        assert found["mode"] == "bris_de_glace"
        assert (await client.call("dmp.get", {"ins": PIERRE, "document_id": doc}))["cda"]
        assert prompts(bench) == []
        for mode in ("bris_de_glace", "centre_15"):
            err = await refused(client.call("dmp.emergency", {"ins": ANNE, "mode": mode,
                                                              "reason": "cardiac arrest"}))
            assert (err.code, err.reason) == (-32060, "emergency_opposed")
        opened = await client.call("dmp.emergency", {"ins": PIERRE, "mode": "centre_15",
                                                     "reason": "call from SAMU 69"})
        assert opened["mode"] == "centre_15"
    seen = world.client.get("/api/patient/dmp", token=world.patient(PIERRE, pierre_password))
    modes = [t["mode"] for t in seen.json()["emergency_accesses"]]
    assert "bris_de_glace" in modes  # shown to the patient (D13)


async def test_centre_15_needs_a_regulating_doctor(edged, slots, pcscd, dmp_sim, world) -> None:
    world.create("gp", ins=PIERRE)
    bench = await start(edged, slots, dmp_sim, cps="gp", vitale=None)
    async with await bench.client("desk", "dmp:emergency") as client:
        err = await refused(client.call("dmp.emergency", {"ins": PIERRE, "mode": "centre_15",
                                                          "reason": "regulation"}))
        assert err.reason == "not_regulating_doctor"
        err = await refused(client.call("dmp.find", {"ins": PIERRE}))  # no grant: consent
        assert err.reason == "vitale_required"


async def test_consent_forged_expired_replayed_refused(edged, slots, pcscd, dmp_sim,
                                                       world) -> None:
    world.create("gp", ins=PIERRE)
    bench = await start(edged, slots, dmp_sim)
    service = bench.daemon.services.dmp
    async with await bench.client("desk", "dmp:read", "dmp:write") as client:
        def forge(envelope):
            envelope["record"]["expires"] += 1  # any change breaks the device's signature
            return envelope
        service.test_tamper_consent = forge
        err = await refused(answered(bench, client.call("dmp.find", {"ins": PIERRE}), "OK"))
        assert (err.code, err.reason) == (-32060, "consent_forged")

        service.test_tamper_consent = None
        service.signer.clock = lambda: time.time() - 3600  # signed an hour ago, 15 min life
        err = await refused(answered(bench, client.call("dmp.find", {"ins": PIERRE}), "OK"))
        assert err.reason == "consent_expired"
        service.signer.clock = time.time

        first: list[dict] = []

        def replay(envelope):
            if not first:
                first.append(json.loads(json.dumps(envelope)))
            return json.loads(json.dumps(first[0]))
        service.test_tamper_consent = replay
        await answered(bench, client.call("dmp.find", {"ins": PIERRE}), "OK")
        service.session = None  # a new session on the host: no read grant left to lean on
        err = await refused(answered(bench, client.call("dmp.find", {"ins": PIERRE}), "OK"))
        assert err.reason == "consent_replayed"
    refusals = [r.data().get("reason") for r in bench.daemon.audit.records()
                if r.event == "dmp.find" and r.data().get("outcome") == "refused"]
    assert refusals == ["consent_forged", "consent_expired", "consent_replayed"]


async def test_ambulance_feed_queued_offline_then_delivered_once(edged, slots, pcscd,
                                                                 tmp_path, dmp_sim,
                                                                 world) -> None:
    world.create("gp", ins=PIERRE)
    world.close()
    dmp_sim.stop_dmp()  # no network in the ambulance
    await asyncio.to_thread(slots.insert, 0, Cps3Card("gp"))
    await asyncio.to_thread(slots.insert, 1, Vitale2Card("family"))
    bench = await edged(pcsc=True, dmp=dmp_config(dmp_sim, retry_base=0.1, retry_max=0.5))
    await until(lambda: bench.daemon.slots.find("cps") and bench.daemon.slots.find("vitale"))
    bench.keypad.press("1234", "OK")
    doc = cda(PIERRE, title="Bilan SMUR")
    async with await bench.client("ambulance", "dmp:read", "dmp:write") as client:
        queued = await answered(bench, client.call("dmp.feed", {"ins": PIERRE,
                                                                "cda": b64(doc)}), "OK")
        assert queued["state"] == "queued"
        pending = (await client.call("dmp.queue"))["feeds"]
        assert [f["queue_id"] for f in pending] == [queued["queue_id"]]
        assert pending[0]["patient"] == "178************"
        await asyncio.sleep(0.5)  # a few failed attempts
        dmp_sim.start_dmp()
        try:
            for _ in range(300):
                if not (await client.call("dmp.queue"))["feeds"]:
                    break
                await asyncio.sleep(0.05)
            done = (await client.call("dmp.queue", {"all": True}))["feeds"]
            assert [f["state"] for f in done] == ["delivered"] and done[0]["document_id"]
            # The same document fed again (a retry): the host recognises it, still one.
            fed = await answered(bench, client.call("dmp.feed", {"ins": PIERRE,
                                                                 "cda": b64(doc)}), "OK")
            assert fed["state"] == "registered" and fed["already_registered"]
            found = await answered(bench, client.call("dmp.find", {"ins": PIERRE}), "OK")
            assert [d["id"] for d in found["documents"]] == [done[0]["document_id"]]
        finally:
            dmp_sim.stop_dmp()
    events = [r.event for r in bench.daemon.audit.records()]
    assert events.count("dmp.feed.queued") == 1 and events.count("dmp.feed.delivered") == 1


def _cli(*argv: str) -> tuple[int, str, str]:
    import contextlib
    import io

    from bifente.edged.cli.main import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(argv))
    return code, out.getvalue(), err.getvalue()


async def test_cli_exists_create_feed_find_get(edged, slots, pcscd, host, dmp_sim, tmp_path,
                                               monkeypatch) -> None:
    monkeypatch.setenv("BIFENTE_CLIENT_DIR", str(tmp_path / "client"))
    bench = await start(edged, slots, dmp_sim)
    (await bench.pair("cli", "dmp:read", "dmp:write")).save()
    code, out, _ = await asyncio.to_thread(_cli, "dmp", "exists", PIERRE)
    assert code == 1 and "no DMP" in out
    bench.keypad.press("OK")  # the patient's consent, after the PIN typed at the login
    code, out, err = await asyncio.to_thread(_cli, "dmp", "create", PIERRE)
    assert code == 0, err
    assert "password" in out and "OK or Cancel" in err
    document = tmp_path / "report.xml"
    document.write_bytes(cda(PIERRE, title="Consultation du jour"))
    bench.keypad.press("OK")
    code, out, err = await asyncio.to_thread(_cli, "dmp", "feed", PIERRE, str(document))
    assert code == 0 and out.startswith("registered "), err
    document_id = out.split()[1]
    bench.keypad.press("OK")
    code, out, err = await asyncio.to_thread(_cli, "dmp", "find", PIERRE)
    assert code == 0 and "1 document(s)" in out and document_id in out, err
    bench.keypad.press("OK")
    code, out, err = await asyncio.to_thread(_cli, "dmp", "get", PIERRE, document_id)
    assert code == 0 and "Consultation du jour" in out, err
    bench.keypad.press("CANCEL")
    code, out, err = await asyncio.to_thread(_cli, "dmp", "find", PIERRE)
    assert code != 0 and "refused" in err
    code, out, err = await asyncio.to_thread(_cli, "dmp", "emergency", PIERRE, "--reason", "x")
    assert code != 0 and "dmp:emergency" in err


def patient_login(host: DmpHost, ins: str, password: str) -> tuple[DmpClient, str]:
    """The patient's own session on the host (password given at creation + one-time code)."""
    client = DmpClient(host.url, host.cafile)
    r = client.post("/api/patient/login", {"ins": ins, "password": password})
    assert r.status == 202, r.body
    code = client.get(f"/api/test/last-code?ins={ins}").json()["code"]
    r = client.post("/api/patient/login/code", {"login": r.json()["login"], "code": code})
    assert r.status == 200, r.body
    return client, str(r.json()["token"])


async def test_hidden_until_announced_traces_deletion(edged, slots, pcscd,
                                                                      host, dmp_sim) -> None:
    bench = await start(edged, slots, dmp_sim)
    async with await bench.client("desk", "dmp:read", "dmp:write") as client:
        created = await answered(bench, client.call("dmp.create", {"ins": PIERRE}), "OK")
        # D21: the password handed over at creation opens the patient's space.
        patient, token = patient_login(host, PIERRE, created["patient_password"])
        fed = await answered(bench, client.call("dmp.feed", {
            "ins": PIERRE, "cda": b64(cda(PIERRE, title="Annonce diagnostic")),
            "metadata": {"invisible_patient": True}}), "OK")
        doc = fed["document"]["id"]
        assert fed["document"]["visibility"]["invisible_patient"] is True

        def patient_sees() -> list[str]:
            r = patient.get("/api/patient/documents", token=token)
            return [d["id"] for d in r.json()["documents"]]
        assert patient_sees() == []  # D8: hidden until the announcement
        shown = await client.call("dmp.visibility", {"ins": PIERRE, "document_id": doc,
                                                     "announced": True})
        assert shown["document"]["visibility"]["announced"] is True
        assert patient_sees() == [doc]
        # D19: the patient reads who did what, edged's accesses included.
        traces = patient.get("/api/patient/traces", token=token).json()["traces"]
        actions = {t["action"] for t in traces}
        assert {"create", "feed", "visibility"} <= actions
        # D20: the patient asks, then the author deletes through edged.
        err = await refused(client.call("dmp.delete", {"ins": PIERRE, "document_id": doc}))
        assert err.reason == "deletion_not_requested"
        r = patient.post(f"/api/patient/documents/{doc}/deletion-request", token=token)
        assert r.status == 200, r.body
        deleted = await client.call("dmp.delete", {"ins": PIERRE, "document_id": doc})
        assert deleted["document"]["status"] == "deleted"
        patient.close()


async def test_patient_masks_adds_blocks(edged, slots, pcscd, host, dmp_sim,
                                                      world) -> None:
    _, password = world.create("gp", ins=PIERRE)
    care = world.fed(PIERRE, "gp", CARE)
    patient, token = patient_login(host, PIERRE, password)
    r = patient.post("/api/patient/documents", {  # D17: the patient adds a document
        "title": "Mes allergies", "type_code": CARE, "media_type": "text/plain",
        "content": b64("Pénicilline".encode())}, token=token)
    assert r.status == 201, r.body
    own = r.json()["document"]["id"]
    r = patient.post(f"/api/patient/documents/{care}/visibility", {"masked_ps": True},
                     token=token)  # D16: masked to professionals (but its author)
    assert r.status == 200, r.body
    bench = await start(edged, slots, dmp_sim, cps="nurse")
    async with await bench.client("nurse", "dmp:read") as client:
        found = await answered(bench, client.call("dmp.find", {"ins": PIERRE}), "OK")
        assert [d["id"] for d in found["documents"]] == [own]
        err = await refused(answered(bench, client.call("dmp.get", {
            "ins": PIERRE, "document_id": care}), "OK"))
        assert err.reason == "unknown_document"  # its existence does not leak
        r = patient.post("/api/patient/blocked", {"national_id": NURSE}, token=token)
        assert r.status == 200, r.body  # D18: the patient blocks this nurse
        err = await refused(answered(bench, client.call("dmp.find", {"ins": PIERRE}), "OK"))
        assert (err.code, err.reason) == (-32060, "blocked_by_patient")
    patient.close()


async def test_student_card_refused(edged, slots, pcscd, dmp_sim, world) -> None:
    world.create("gp", ins=PIERRE)
    bench = await start(edged, slots, dmp_sim, cps="student")
    async with await bench.client("student", "dmp:read") as client:
        err = await refused(client.call("dmp.exists", {"ins": PIERRE}))
        assert err.reason == "student_card_refused"


async def test_dmp_not_configured(edged) -> None:
    bench = await edged()
    async with await bench.client("desk", "dmp:read") as client:
        err = await refused(client.call("dmp.exists", {"ins": PIERRE}))
        assert (err.code, err.reason) == (-32060, "dmp_not_configured")
        err = await refused(client.call("dmp.exists", {"ins": "12345"}))
        assert err.reason == "invalid_params"


async def test_queued_feed_waits_for_its_professionals_card(edged, slots, pcscd, dmp_sim,
                                                            world) -> None:
    world.create("gp", ins=PIERRE)
    bench = await start(edged, slots, dmp_sim, retry_base=0.1, retry_max=0.3)
    async with await bench.client("ambulance", "dmp:read", "dmp:write") as client:
        assert (await client.call("dmp.exists", {"ins": PIERRE}))["exists"]  # GP's session
        world.close()
        dmp_sim.stop_dmp()  # the network goes mid-round
        queued = await answered(bench, client.call("dmp.feed", {
            "ins": PIERRE, "cda": b64(cda(PIERRE))}), "OK")
        assert queued["state"] == "queued"
        await asyncio.to_thread(slots.remove, 0)  # the GP hands over to a nurse
        await asyncio.to_thread(slots.insert, 0, Cps3Card("nurse"))
        await until(lambda: bench.daemon.slots.find("cps") is not None)
        dmp_sim.start_dmp()
        try:
            await asyncio.sleep(1.0)  # the host is back, but not the GP's card: it waits
            # The queue keeps trying (and fails: not this professional's card); between two
            # tries the feed reads `queued`, during one `sending`: never `delivered`.
            for _ in range(50):
                pending = (await client.call("dmp.queue"))["feeds"]
                if [f["state"] for f in pending] == ["queued"]:
                    break
                assert [f["state"] for f in pending] == ["sending"]
                await asyncio.sleep(0.05)
            assert [f["state"] for f in pending] == ["queued"]
            assert "another professional" in pending[0]["last_error"]
            pin_prompts = [h for h in bench.display.history
                           if h[0].startswith("PIN CPS") and h[1:] == [""]]
            assert len(pin_prompts) == 1  # the GP's login; never from the background
            await asyncio.to_thread(slots.remove, 0)
            await asyncio.to_thread(slots.insert, 0, Cps3Card("gp"))
            await until(lambda: bench.daemon.slots.find("cps") is not None)
            bench.keypad.press("1234", "OK")  # the GP is back and logs in: the feed goes
            assert (await client.call("dmp.exists", {"ins": PIERRE}))["exists"]
            for _ in range(200):
                if not (await client.call("dmp.queue"))["feeds"]:
                    break
                await asyncio.sleep(0.05)
            done = (await client.call("dmp.queue", {"all": True}))["feeds"]
            assert [f["state"] for f in done] == ["delivered"]
        finally:
            dmp_sim.stop_dmp()


async def test_a_feed_resent_after_a_lost_answer_is_registered_once(edged, slots, pcscd,
                                                                    dmp_sim, world) -> None:
    world.create("gp", ins=PIERRE)
    bench = await start(edged, slots, dmp_sim, retry_base=0.1, retry_max=0.3)
    service = bench.daemon.services.dmp
    sent: list[str] = []

    def keep(envelope):
        sent.append(b64(json.dumps(envelope).encode()))
        return envelope
    service.test_tamper_consent = keep
    doc = cda(PIERRE)
    async with await bench.client("desk", "dmp:read", "dmp:write") as client:
        fed = await answered(bench, client.call("dmp.feed", {"ins": PIERRE, "cda": b64(doc)}),
                             "OK")
        # As if the answer had been lost and edged had crashed with the feed in the queue:
        # the same bytes and the same (now spent) consent are sent again, in a new session.
        service.session = None
        await service.enqueue(PIERRE, GP, "", doc, sent[0])
        for _ in range(200):
            if not (await client.call("dmp.queue"))["feeds"]:
                break
            await asyncio.sleep(0.05)
        done = (await client.call("dmp.queue", {"all": True}))["feeds"]
        assert [(f["state"], f["document_id"]) for f in done] == [
            ("delivered", fed["document"]["id"])]
        found = await answered(bench, client.call("dmp.find", {"ins": PIERRE}), "OK")
        assert [d["id"] for d in found["documents"]] == [fed["document"]["id"]]
    delivered = [r.data() for r in bench.daemon.audit.records()
                 if r.event == "dmp.feed.delivered"]
    assert [d["already_registered"] for d in delivered] == [True]


async def test_pharmacist_sees_biology_not_consultations(edged, slots, pcscd, dmp_sim,
                                                             world) -> None:
    world.create("gp", ins=PIERRE)
    biology = world.fed(PIERRE, "gp", BIOLOGY)
    report = world.fed(PIERRE, "gp", "11488-4")
    bench = await start(edged, slots, dmp_sim, cps="pharmacist")
    async with await bench.client("officine", "dmp:read") as client:
        found = await answered(bench, client.call("dmp.find", {"ins": PIERRE}), "OK")
        assert [d["id"] for d in found["documents"]] == [biology]
        err = await refused(answered(bench, client.call("dmp.get", {
            "ins": PIERRE, "document_id": report}), "OK"))
        assert err.reason == "outside_access_matrix"


async def test_session_renewed_after_a_host_restart(edged, slots, pcscd, dmp_sim) -> None:
    bench = await start(edged, slots, dmp_sim)
    service = bench.daemon.services.dmp
    async with await bench.client("desk", "dmp:read") as client:
        assert (await client.call("dmp.exists", {"ins": PIERRE}))["exists"] is False
        first = service.session
        dmp_sim.stop_dmp()  # sessions live in the host's memory: gone
        dmp_sim.start_dmp()
        try:
            assert (await client.call("dmp.exists", {"ins": PIERRE}))["exists"] is False
            assert service.session is not None and service.session.token != first.token
            # the card still holds its PIN: typed once, at the first login
            assert [lines for lines in bench.display.history if lines == ["Code correct"]] == [
                ["Code correct"]]
        finally:
            dmp_sim.stop_dmp()


# -- D21 at the desk: the patient's login code shown on the terminal ------------------------------
def patient_code_login(host: DmpHost, ins: str, password: str, code: str) -> tuple[int, str]:
    """The patient's web login with INS + password + the code read off the terminal."""
    client = DmpClient(host.url, host.cafile)
    try:
        r = client.post("/api/patient/login", {"ins": ins, "password": password})
        assert r.status == 202, r.body
        assert r.json()["code_sent_via"] == "terminal"
        r = client.post("/api/patient/login/code", {"login": r.json()["login"], "code": code})
        return r.status, str(r.json().get("token", "") if r.status == 200 else r.reason)
    finally:
        client.close()


async def test_patient_code_shown_on_the_terminal_only(edged, slots, pcscd, host, dmp_sim,
                                                           caplog) -> None:
    caplog.set_level(logging.DEBUG)
    bench = await start(edged, slots, dmp_sim)
    async with await bench.client("desk", "dmp:read", "dmp:write") as client:
        created = await answered(bench, client.call("dmp.create", {"ins": PIERRE}), "OK")
        password = created["patient_password"]
        result = await answered(bench, client.call("dmp.patient_code", {"ins": PIERRE}), "OK")
        assert result["shown"] is True and 0 < result["expires_in"] <= 600
        assert set(result) == {"shown", "expires_in"}  # no code for the RPC caller
        assert any("code de connexion" in p for p in prompts(bench))  # the patient consented
        lines = bench.display.screen().splitlines()
        assert lines[0] == "Votre code DMP"
        assert 0 < bench.display.secret_s <= 30  # a secret screen: it leaves the terminal
        code = lines[1]
        assert len(code) == 6 and code.isdigit()
        assert code not in json.dumps(result)
        audit = [r for r in bench.daemon.audit.records() if r.event == "dmp.patient_code"]
        assert [r.data()["outcome"] for r in audit] == ["started", "ok"]  # intent first (L3)
        assert all(code not in str(r.fields) for r in bench.daemon.audit.records())
        assert code not in caplog.text
        status, token = patient_code_login(host, PIERRE, password, code)
        assert status == 200, token
        patient = DmpClient(host.url, host.cafile)
        r = patient.get("/api/patient/dmp", token=token)
        assert r.status == 200 and r.json()["status"] == "open"
        traces = patient.get("/api/patient/traces", token=token).json()["traces"]
        assert "patient_code_issued" in {t["action"] for t in traces}
        assert code not in json.dumps(traces)
        patient.close()
        # Single use: the same code does not open a second login.
        client2 = DmpClient(host.url, host.cafile)
        r = client2.post("/api/patient/login", {"ins": PIERRE, "password": password})
        assert r.status == 202 and r.json()["code_sent_via"] == "outbox"
        r = client2.post("/api/patient/login/code", {"login": r.json()["login"], "code": code})
        assert r.reason == "code_invalid"
        client2.close()
        # Refused consent: nothing shown, no code issued.
        bench.display.history.clear()
        err = await refused(answered(bench, client.call("dmp.patient_code", {"ins": PIERRE}),
                                     "CANCEL"))
        assert err.reason == "consent_refused"
        assert "Votre code DMP" not in bench.display.screen()


async def test_patient_code_needs_dmp_read(edged, slots, pcscd, dmp_sim, world) -> None:
    world.create("gp", ins=PIERRE)
    bench = await start(edged, slots, dmp_sim)
    async with await bench.client("writer", "dmp:write", "dmp:emergency") as client:
        err = await refused(client.call("dmp.patient_code", {"ins": PIERRE}))
        assert "dmp:read" in str(err)
    assert not any("login code" in p for p in prompts(bench))


async def test_cli_patient_code(edged, slots, pcscd, dmp_sim, tmp_path, monkeypatch,
                                world) -> None:
    world.create("gp", ins=PIERRE)
    bench = await start(edged, slots, dmp_sim)
    monkeypatch.setenv("BIFENTE_CLIENT_DIR", str(tmp_path / "client"))
    (await bench.pair("cli", "dmp:read")).save()
    task = asyncio.ensure_future(asyncio.to_thread(_cli, "dmp", "patient-code", PIERRE))
    await until(lambda: task.done() or "OK / Annuler" in bench.display.screen())
    bench.keypad.press("OK")
    code, out, err = await task
    assert code == 0 and "terminal display" in out, err
    shown = bench.display.screen().splitlines()[1]
    assert shown.isdigit() and shown not in out + err


# -- D2, D3, D15 ----------------------------------------------------------------------------------
async def test_dmp_through_the_software_with_cps_and_vitale_in_pcsc_readers(
        edged, slots, pcscd, host, dmp_sim) -> None:
    """D2: the DMP-compatible software (the RPC client) works with the CPS and Vitale cards
    in PC/SC readers; the INS it sends is the one read from the Vitale card in its reader."""
    bench = await start(edged, slots, dmp_sim)
    assert bench.daemon.slots.find("cps").source == "pcsc"
    assert bench.daemon.slots.find("vitale").source == "pcsc"
    async with await bench.client("software", "identity:read", "dmp:read",
                                  "dmp:write") as client:
        listed = {s["kind"]: s for s in (await client.call("readers.list", {}))["slots"]}
        assert listed["cps"]["source"] == listed["vitale"]["source"] == "pcsc"
        card = await client.call("vitale.read", {})
        insured = next(b for b in card["beneficiaries"]
                       if b["nir"] == card["insured"]["nir"])
        ins = insured["ins"]["value"]
        assert ins == PIERRE  # read through the reader, not typed
        created = await answered(bench, client.call("dmp.create", {"ins": ins}), "OK")
        assert created["ins"] == ins and created["ins_oid"] == insured["ins"]["oid"]
        fed = await answered(bench, client.call("dmp.feed", {"ins": ins,
                                                             "cda": b64(cda(ins))}), "OK")
        found = await answered(bench, client.call("dmp.find", {"ins": ins}), "OK")
        assert [d["id"] for d in found["documents"]] == [fed["document"]["id"]]
    record = host.storage.get_dmp(ins)
    assert record is not None and record.created_by == GP


async def test_patient_identified_by_the_ins_from_the_vitale_card(edged, slots, pcscd,
                                                                     host, dmp_sim) -> None:
    """D3: the INS (NIR with its assigning authority OID) comes from the Vitale card; the
    INS-C is computed for the insured; the host registers exactly that INS and OID."""
    from bifente.apdu.identity import InsAuthority, compute_ins_c, parse_nir

    bench = await start(edged, slots, dmp_sim)
    async with await bench.client("software", "identity:read", "dmp:read",
                                  "dmp:write") as client:
        card = await client.call("vitale.read", {})
        by_ins = {b["ins"]["value"]: b for b in card["beneficiaries"]}
        assert {PIERRE, ANNE} <= set(by_ins)  # both beneficiaries of the family card
        for ins in (PIERRE, ANNE):
            b = by_ins[ins]
            assert b["ins"]["value"] == b["nir"] == parse_nir(b["nir"]).value
            assert b["ins"]["oid"] in {a.value for a in InsAuthority}
            assert b["ins"]["oid"] != InsAuthority.NIA and not b["temporary"]
        insured = next(b for b in card["beneficiaries"] if b["nir"] == card["insured"]["nir"])
        assert insured["ins_c"] and len(insured["ins_c"]) == 22 and insured["ins_c"].isdigit()
        assert insured["ins_c"] == compute_ins_c(insured["first_name"], insured["birth_date"],
                                                 parse_nir(insured["nir"]))
        for ins in (PIERRE, ANNE):
            created = await answered(bench, client.call("dmp.create", {"ins": ins}), "OK")
            assert (created["ins"], created["ins_oid"]) == (ins, by_ins[ins]["ins"]["oid"])
            record = host.storage.get_dmp(ins)
            assert record is not None
            assert (record.ins, record.ins_oid) == (ins, by_ins[ins]["ins"]["oid"])
        err = await refused(client.call("dmp.create", {"ins": ADULT}))
        assert err.reason == "ins_not_on_card"  # not a beneficiary of the card in the reader
    assert host.storage.get_dmp(ADULT) is None


async def test_patient_rights_over_sensitive_information(edged, slots, pcscd, host, dmp_sim,
                                                             world) -> None:
    """D15: a sensitive document stays invisible to the patient until the announcement; the
    patient may then mask it from professionals (its author still sees it)."""
    bench = await start(edged, slots, dmp_sim)
    async with await bench.client("desk", "dmp:read", "dmp:write") as client:
        created = await answered(bench, client.call("dmp.create", {"ins": PIERRE}), "OK")
        patient, token = patient_login(host, PIERRE, created["patient_password"])
        fed = await answered(bench, client.call("dmp.feed", {
            "ins": PIERRE, "cda": b64(cda(PIERRE, type_code=CARE, title="Résultat sensible")),
            "metadata": {"invisible_patient": True}}), "OK")
        doc = fed["document"]["id"]

        def patient_sees() -> list[str]:
            r = patient.get("/api/patient/documents", token=token)
            assert r.status == 200, r.body
            return [d["id"] for d in r.json()["documents"]]
        assert patient_sees() == []  # not until it is announced to the patient
        assert world.found(PIERRE, "nurse") == [doc]  # professionals see it meanwhile
        await client.call("dmp.visibility", {"ins": PIERRE, "document_id": doc,
                                             "announced": True})
        assert patient_sees() == [doc]
        r = patient.post(f"/api/patient/documents/{doc}/visibility", {"masked_ps": True},
                         token=token)
        assert r.status == 200, r.body
        assert world.found(PIERRE, "nurse") == []  # masked by the patient
        found = await answered(bench, client.call("dmp.find", {"ins": PIERRE}), "OK")
        assert [d["id"] for d in found["documents"]] == [doc]  # its author still sees it
        traces = patient.get("/api/patient/traces", token=token).json()["traces"]
        assert {"feed", "visibility"} <= {t["action"] for t in traces}
        patient.close()


async def test_a_cda_the_xml_parser_cannot_read_is_refused_not_queued(
        edged, slots, pcscd, dmp_sim, world) -> None:
    # D3: encoding="U" made the host's checker raise: the host answered 500, edged queued the
    # feed and retried it. Now the host lists the problem and edged passes the refusal on.
    world.create("gp", ins=PIERRE)
    bench = await start(edged, slots, dmp_sim)
    async with await bench.client("desk", "dmp:read", "dmp:write") as client:
        for declaration in (b'<?xml version="1.0" encoding="U"?>',
                            b'<?xml version="1.0" encoding="UTF-7"?>'):
            doc = declaration + cda(PIERRE).split(b"?>", 1)[1]
            err = await refused(answered(bench, client.call("dmp.feed", {
                "ins": PIERRE, "cda": b64(doc)}), "OK"))
            assert err.reason == "cda_invalid"
            assert {d["reason"] for d in err.data["details"]} == {"xml_malformed"}
        assert _service(bench.daemon).queue.list(include_done=True) == []
