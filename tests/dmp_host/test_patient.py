"""The patient's API (D8, D15-D21), used later by the patient web pages."""

from __future__ import annotations

import base64
import json

from bifente.simulators.dmp import DmpHost
from bifente.simulators.dmp.testing import DmpClient, national_id
from bifente.simulators.dmp.testing import DmpWorld as World

PDF = b"%PDF-1.7\n% my own report\n"


def patient_ids(world: World, token: str) -> tuple[list[str], list[str]]:
    r = world.client.get("/api/patient/documents", token=token)
    assert r.status == 200, r.body
    body = r.json()
    return [d["id"] for d in body["documents"]], [p["id"] for p in body["pending"]]


# -- D21: password + one-time code -------------------------------------------------------------
def test_login_with_password_and_one_time_code(world: World) -> None:
    ins, password = world.create()
    r = world.client.post("/api/patient/login", {"ins": ins, "password": "wrong-pass-word"})
    assert (r.status, r.reason) == (401, "login_failed")
    r = world.client.post("/api/patient/login", {"ins": world.new_ins(), "password": password})
    assert (r.status, r.reason) == (401, "login_failed")  # unknown record: same answer
    r = world.client.post("/api/patient/login", {"ins": ins, "password": password})
    assert r.status == 202 and r.json()["code_sent_via"] == "outbox"
    login = r.json()["login"]
    code = world.client.get(f"/api/test/last-code?ins={ins}").json()["code"]
    assert len(code) == 6 and code.isdigit()
    wrong = f"{(int(code) + 1) % 10**6:06d}"
    r = world.client.post("/api/patient/login/code", {"login": login, "code": wrong})
    assert (r.status, r.reason) == (401, "code_invalid")
    r = world.client.post("/api/patient/login/code", {"login": login, "code": code})
    assert r.status == 200
    token = r.json()["token"]
    assert world.client.get("/api/patient/dmp", token=token).json()["status"] == "open"
    r = world.client.post("/api/patient/login/code", {"login": login, "code": code})
    assert r.reason == "code_invalid"  # a code is used once
    assert world.client.get("/api/patient/dmp", token=world.token("gp")).status == 401
    outbox = (world.host.data_dir / "outbox" / "codes.jsonl").read_text()
    assert ins not in outbox  # the spool is keyed by a hash; the INS is masked
    assert json.loads(outbox.splitlines()[-1])["patient"] == ins[:3] + "*" * 12


def test_three_wrong_codes_end_the_login_and_failures_lock(own_world: World) -> None:
    w = own_world
    ins, password = w.create()
    login = w.client.post("/api/patient/login", {"ins": ins, "password": password}).json()
    code = w.client.get(f"/api/test/last-code?ins={ins}").json()["code"]
    wrong = f"{(int(code) + 1) % 10**6:06d}"
    for _ in range(3):
        w.client.post("/api/patient/login/code", {"login": login["login"], "code": wrong})
    r = w.client.post("/api/patient/login/code", {"login": login["login"], "code": code})
    assert r.reason == "code_invalid"
    for _ in range(2):  # 3 code failures + 2 password failures = 5: locked
        w.client.post("/api/patient/login", {"ins": ins, "password": "nope-nope-nope"})
    r = w.client.post("/api/patient/login", {"ins": ins, "password": password})
    assert (r.status, r.reason) == (429, "login_locked")
    w.clock.advance(seconds=15 * 60 + 1)
    assert w.patient(ins, password)


def test_the_test_code_endpoint_exists_only_in_test_mode(tmp_path) -> None:
    with DmpHost(tmp_path) as host:
        r = DmpClient(host.url, host.cafile).get("/api/test/last-code?ins=x")
        assert (r.status, r.reason) == (404, "not_found")


# -- D8: hidden from the patient until announced, or a month -----------------------------------
def test_hidden_then_prompted_then_visible_after_a_month(own_world: World) -> None:
    w = own_world
    ins, password = w.create()
    hidden = w.fed(ins, "gp", "11502-2", query="?invisible_patient=true")
    plain = w.fed(ins)
    token = w.patient(ins, password)
    assert patient_ids(w, token) == ([plain], [])
    r = w.client.get(f"/api/patient/documents/{hidden}", token=token)
    assert (r.status, r.reason) == (404, "unknown_document")
    assert hidden in w.found(ins, "gp")  # professionals see it
    w.clock.advance(days=15)
    w.tokens.clear()
    token = w.patient(ins, password)
    assert patient_ids(w, token) == ([plain], [hidden])  # prompted after 2 weeks
    w.clock.advance(days=17)  # > one calendar month after feeding
    token = w.patient(ins, password)
    visible, pending = patient_ids(w, token)
    assert sorted(visible) == sorted([hidden, plain]) and pending == []
    assert w.client.get(f"/api/patient/documents/{hidden}", token=token).status == 200


def test_announced_documents_become_visible(world: World) -> None:
    ins, password = world.create()
    hidden = world.fed(ins, query="?invisible_patient=true")
    token = world.patient(ins, password)
    assert patient_ids(world, token)[0] == []
    r = world.client.post(f"/api/patient/documents/{hidden}/visibility",
                          {"invisible_patient": False}, token=token)
    assert r.status == 404  # the patient cannot see it, hence not unhide it
    r = world.call("POST", f"/api/dmp/{ins}/documents/{hidden}/visibility", "gp",
                   json_body={"announced": True})
    assert r.status == 200, r.body
    assert patient_ids(world, token)[0] == [hidden]


# -- D17: the patient adds documents -----------------------------------------------------------
def test_patient_adds_a_document_professionals_read_it(world: World) -> None:
    ins, password = world.create()
    token = world.patient(ins, password)
    r = world.client.post("/api/patient/documents", {
        "title": "Mes directives anticipées", "type_code": "60591-5",
        "media_type": "application/pdf", "content": base64.b64encode(PDF).decode()},
        token=token)
    assert r.status == 201, r.body
    doc = r.json()["document"]
    assert doc["author"]["kind"] == "patient" and doc["media_type"] == "application/pdf"
    assert doc["id"] in world.found(ins, "nurse")  # a synthesis: in the nurse's matrix
    r = world.call("GET", f"/api/dmp/{ins}/documents/{doc['id']}", "gp", consent="read",
                   ins=ins)
    assert PDF in base64.b64decode(base64.b64decode(r.json()["cda"]).split(
        b'representation="B64">')[1].split(b"<")[0])
    r = world.client.post("/api/patient/documents", {"title": "x", "type_code": "1-1",
                                                     "content": "eA=="}, token=token)
    assert (r.status, r.reason) == (400, "bad_request")


def test_patient_adds_a_ready_made_cda(world: World) -> None:
    ins, password = world.create()
    other, _ = world.create()
    token = world.patient(ins, password)

    def add(data: bytes):
        return world.client.post("/api/patient/documents", {
            "media_type": "application/hl7-v3+xml",
            "content": base64.b64encode(data).decode()}, token=token)

    data = world.cda(ins, "60591-5", author="gp", title="Mon compte rendu")
    r = add(data)
    assert r.status == 201, r.body
    doc = r.json()["document"]
    assert doc["title"] == "Mon compte rendu" and doc["type_code"] == "60591-5"
    # registered as the patient's, whatever author the CDA names: no rights for that author
    assert doc["author"]["kind"] == "patient" and doc["fed_by"] == "patient"
    assert (add(data).status, add(data).reason) == (409, "document_exists")
    r = add(world.cda(other, "60591-5", title="Pas le mien"))
    assert (r.status, r.reason) == (422, "ins_mismatch")
    r = add(b'<ClinicalDocument xmlns="urn:hl7-org:v3"/>')
    assert (r.status, r.reason) == (422, "cda_invalid")
    assert len(r.json()["error"]["details"]) > 3  # every problem listed
    r = world.call("DELETE", f"/api/dmp/{ins}/documents/{doc['id']}", "gp")
    assert r.status == 403


# -- D19: traces -------------------------------------------------------------------------------
def test_patient_sees_accesses_refusals_and_emergencies(world: World) -> None:
    ins, password = world.create()
    doc = world.fed(ins)
    world.call("GET", f"/api/dmp/{ins}/documents/{doc}", "gp", consent="read", ins=ins)
    world.find(ins, "insurer")
    world.call("POST", f"/api/dmp/{ins}/emergency", "emergency",
               json_body={"mode": "bris_de_glace", "reason": "coma"})
    token = world.patient(ins, password)
    traces = world.traces(ins, token)
    summary = {(t["actor"]["id"], t["action"], t["outcome"], t["reason"], t["mode"])
               for t in traces}
    gp, insurer, er = national_id("gp"), national_id("insurer"), national_id("emergency")
    assert {(gp, "create", "ok", "", "normal"), (gp, "feed", "ok", "", "normal"),
            (gp, "retrieve", "ok", "", "normal"),
            (insurer, "find", "refused", "insurer_forbidden", "normal"),
            (er, "emergency", "ok", "", "bris_de_glace")} <= summary
    retrieve = next(t for t in traces if t["action"] == "retrieve")
    assert retrieve["document_id"] == doc and retrieve["actor"]["name"] == "Claire MARTIN"
    assert [t["id"] for t in traces] == sorted((t["id"] for t in traces), reverse=True)
    r = world.client.get(f"/api/dmp/{ins}/traces", token=token)  # the same, by record URL
    assert r.status == 200 and len(r.json()["traces"]) >= len(traces)
    r = world.client.get(f"/api/dmp/{world.new_ins()}/traces", token=token)
    assert (r.status, r.reason) == (403, "not_permitted")


def test_traces_are_append_only(world: World) -> None:
    import sqlite3

    import pytest
    storage = world.host.storage
    assert storage is not None
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        storage._run("UPDATE traces SET outcome = 'ok'")
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        storage._run("DELETE FROM traces")


# -- D20: deletion on request ------------------------------------------------------------------
def test_patient_asks_then_the_author_deletes(world: World) -> None:
    ins, password = world.create()
    doc = world.fed(ins)
    r = world.call("DELETE", f"/api/dmp/{ins}/documents/{doc}", "gp")
    assert (r.status, r.reason) == (409, "deletion_not_requested")
    token = world.patient(ins, password)
    r = world.client.post(f"/api/patient/documents/{doc}/deletion-request", token=token)
    assert r.json()["document"]["status"] == "deletion_requested"
    r = world.call("DELETE", f"/api/dmp/{ins}/documents/{doc}", "nurse", consent="read",
                   ins=ins)
    assert r.status in (403, 404) and r.reason in ("not_author", "unknown_document")
    r = world.call("DELETE", f"/api/dmp/{ins}/documents/{doc}", "gp")
    assert r.status == 200 and r.json()["document"]["status"] == "deleted"
    assert world.found(ins, "gp") == []
    r = world.call("GET", f"/api/dmp/{ins}/documents/{doc}", "gp")
    assert r.reason == "unknown_document"
    assert patient_ids(world, token)[0] == []


def test_patient_deletes_own_document_directly(world: World) -> None:
    ins, password = world.create()
    token = world.patient(ins, password)
    doc = world.client.post("/api/patient/documents", {
        "title": "Note", "type_code": "11488-4", "media_type": "text/plain",
        "content": base64.b64encode(b"hello").decode()}, token=token).json()["document"]
    r = world.client.post(f"/api/patient/documents/{doc['id']}/deletion-request", token=token)
    assert r.json()["document"]["status"] == "deleted"


# -- closing -----------------------------------------------------------------------------------
def test_closing_the_dmp(world: World) -> None:
    ins, password = world.create()
    world.fed(ins)
    token = world.patient(ins, password)
    r = world.client.post("/api/patient/close", {}, token=token)
    assert r.reason == "bad_request"
    r = world.client.post("/api/patient/close", {"confirm": True}, token=token)
    assert r.status == 200 and r.json()["status"] == "closed"
    assert world.find(ins, "gp").reason == "dmp_closed"
    assert world.feed(ins).reason == "dmp_closed"
    assert world.call("GET", f"/api/dmp/{ins}", "gp").json()["status"] == "closed"
    assert len(patient_ids(world, token)[0]) == 1  # kept, readable by the patient
    r = world.client.post("/api/patient/settings", {"oppose_centre_15": True}, token=token)
    assert r.reason == "dmp_closed"


def test_the_body_is_read_after_the_record_checks_and_a_bad_one_is_traced(world: World) -> None:
    ins, password = world.create()
    token = world.patient(ins, password)
    junk = {"Content-Type": "application/json"}
    r = world.client.post("/api/patient/settings", body=b"not json", headers=junk, token=token)
    assert r.reason == "bad_request"
    assert world.client.post("/api/patient/close", {"confirm": True}, token=token).status == 200
    for path in ("/api/patient/settings", "/api/patient/blocked", "/api/patient/documents"):
        r = world.client.post(path, body=b"not json", headers=junk, token=token)
        assert r.reason == "dmp_closed", path  # refused before its body is read
    traces = world.traces(ins, token)
    assert [(t["action"], t["outcome"], t["reason"]) for t in traces[:5]] == [
        ("feed", "refused", "dmp_closed"), ("patient_block", "refused", "dmp_closed"),
        ("patient_settings", "refused", "dmp_closed"), ("close", "ok", ""),
        ("patient_settings", "refused", "bad_request")]
