"""One test per rule the host decides (docs/dmp-api.md, D1-D18), over real HTTPS."""

from __future__ import annotations

import pytest

from bifente.simulators.dmp.testing import TEST_OID, national_id
from bifente.simulators.dmp.testing import DmpWorld as World

BIOLOGY, PRESCRIPTION, DISCHARGE, CONSULTATION, CARE_PLAN = (
    "11502-2", "57833-6", "11490-0", "11488-4", "18776-5")


def refusals(world: World, ins: str, password: str) -> list[tuple[str, str]]:
    token = world.patient(ins, password)
    return [(t["action"], t["reason"]) for t in world.traces(ins, token)
            if t["outcome"] == "refused"]


# -- D1: insurers never, occupational doctors only with express consent ----------------------
def test_insurer_refused_even_with_consent(world: World) -> None:
    ins, password = world.create()
    world.fed(ins)
    r = world.find(ins, "insurer")  # a valid, signed read consent is sent
    assert (r.status, r.reason) == (403, "insurer_forbidden")
    r = world.feed(ins, "insurer")
    assert (r.status, r.reason) == (403, "insurer_forbidden")
    assert ("find", "insurer_forbidden") in refusals(world, ins, password)


def test_occupational_doctor_needs_express_consent(world: World) -> None:
    ins, _ = world.create()
    world.fed(ins)
    r = world.find(ins, "occupational")
    assert (r.status, r.reason) == (403, "occupational_needs_express_consent")
    headers = world.consent(ins, "occupational", "read", express=True)
    r = world.call("GET", f"/api/dmp/{ins}/documents", "occupational", headers=headers)
    assert r.status == 200 and r.json()["total"] == 1


def test_occupational_with_the_patients_express_consent_flag(world: World) -> None:
    ins, password = world.create()
    world.fed(ins)
    token = world.patient(ins, password)
    r = world.client.post("/api/patient/settings", {"occupational_express_consent": True},
                          token=token)
    assert r.status == 200
    r = world.find(ins, "occupational")  # an ordinary consent now suffices
    assert r.status == 200 and r.json()["total"] == 1


def test_students_cpf_cards_are_refused(world: World) -> None:
    ins, _ = world.create()
    assert world.find(ins, "student").reason == "student_card_refused"
    assert world.feed(ins, "student").reason == "student_card_refused"
    r = world.call("POST", f"/api/dmp/{world.new_ins()}", "student", consent="create",
                   ins=world.new_ins(), json_body={"ins_oid": TEST_OID})
    assert r.status == 403


# -- D5, D6: any professional creates, with a valid INS ----------------------------------------
@pytest.mark.parametrize("profile", ["gp", "nurse", "pharmacist"])
def test_any_professional_can_create(world: World, profile: str) -> None:
    ins, password = world.create(profile)
    assert password.count("-") == 2 and len(password) == 14
    r = world.call("GET", f"/api/dmp/{ins}", profile)
    assert r.json() == {"exists": True, "status": "open"}
    r = world.call("POST", f"/api/dmp/{ins}", profile, consent="create", ins=ins,
                   json_body={"ins_oid": TEST_OID})
    assert (r.status, r.reason) == (409, "dmp_exists")


def test_creation_needs_a_valid_ins_and_its_oid(world: World) -> None:
    bad_key = world.new_ins()[:13] + "00"
    r = world.call("POST", f"/api/dmp/{bad_key}", "gp", consent="create", ins=bad_key,
                   json_body={"ins_oid": TEST_OID})
    assert (r.status, r.reason) == (422, "ins_invalid")
    ins = world.new_ins()
    for oid in (None, "1.2.3.4", "1.2.250.1.213.1.4.9"):  # missing, not INS, NIA for a NIR
        r = world.call("POST", f"/api/dmp/{ins}", "gp", consent="create", ins=ins,
                       json_body={"ins_oid": oid})
        assert (r.status, r.reason) == (422, "ins_invalid"), oid
    assert world.call("GET", f"/api/dmp/{ins}", "gp").json()["exists"] is False


def test_unknown_dmp(world: World) -> None:
    ins = world.new_ins()
    assert world.find(ins, "gp").reason == "dmp_not_found"


# -- D11: the access matrix --------------------------------------------------------------------
def test_matrix_nurse_and_pharmacist(world: World) -> None:
    ins, _ = world.create()
    ids = {code: world.fed(ins, "gp", code) for code in (BIOLOGY, PRESCRIPTION, DISCHARGE,
                                                         CARE_PLAN)}
    nurse = set(world.found(ins, "nurse"))
    assert nurse == {ids[DISCHARGE], ids[CARE_PLAN]}
    pharmacist = set(world.found(ins, "pharmacist"))
    assert pharmacist == {ids[BIOLOGY], ids[PRESCRIPTION]}
    assert len(world.found(ins, "gp")) == 4
    r = world.call("GET", f"/api/dmp/{ins}/documents/{ids[BIOLOGY]}", "nurse")
    assert (r.status, r.reason) == (403, "outside_access_matrix")
    r = world.call("GET", f"/api/dmp/{ins}/documents/{ids[DISCHARGE]}", "pharmacist")
    assert (r.status, r.reason) == (403, "outside_access_matrix")
    r = world.call("GET", f"/api/dmp/{ins}/documents/{ids[PRESCRIPTION]}", "pharmacist")
    assert r.status == 200


def test_authors_see_what_they_wrote(world: World) -> None:
    ins, _ = world.create()
    own = world.fed(ins, "nurse", BIOLOGY)  # outside the nurse's matrix, but hers
    assert own in world.found(ins, "nurse")


def test_find_filters_by_type_and_status(world: World) -> None:
    ins, _ = world.create()
    world.fed(ins, "gp", BIOLOGY)
    world.fed(ins, "gp", PRESCRIPTION)
    r = world.find(ins, "gp", query=f"?type={BIOLOGY}")
    assert [d["type_code"] for d in r.json()["documents"]] == [BIOLOGY]
    r = world.find(ins, "gp", query="?status=deletion_requested")
    assert r.json()["documents"] == []
    r = world.find(ins, "gp", query="?status=deleted")
    assert (r.status, r.reason) == (400, "bad_request")


# -- D13, D14: emergency access ----------------------------------------------------------------
def test_bris_de_glace_with_a_reason_without_consent(world: World) -> None:
    ins, password = world.create()
    doc = world.fed(ins)
    assert world.find(ins, "emergency", consent=None).reason == "consent_missing"
    r = world.call("POST", f"/api/dmp/{ins}/emergency", "emergency",
                   json_body={"mode": "bris_de_glace", "reason": "  "})
    assert (r.status, r.reason) == (400, "reason_required")
    r = world.call("POST", f"/api/dmp/{ins}/emergency", "emergency",
                   json_body={"mode": "bris_de_glace", "reason": "unconscious, head trauma"})
    assert r.status == 200, r.body
    r = world.find(ins, "emergency", consent=None)
    assert r.status == 200 and r.json()["mode"] == "bris_de_glace"
    r = world.call("GET", f"/api/dmp/{ins}/documents/{doc}", "emergency")
    assert r.status == 200
    token = world.patient(ins, password)
    seen = [(t["action"], t["mode"], t["emergency_reason"]) for t in world.traces(ins, token)
            if t["outcome"] == "ok" and t["mode"] == "bris_de_glace"]
    assert ("emergency", "bris_de_glace", "unconscious, head trauma") in seen
    assert ("retrieve", "bris_de_glace", "unconscious, head trauma") in seen
    summary = world.client.get("/api/patient/dmp", token=token).json()
    assert summary["emergency_accesses"], "the patient is told of emergency accesses"


def test_bris_de_glace_refused_when_opposed(world: World) -> None:
    ins, password = world.create()
    token = world.patient(ins, password)
    world.client.post("/api/patient/settings", {"oppose_bris_de_glace": True}, token=token)
    r = world.call("POST", f"/api/dmp/{ins}/emergency", "emergency",
                   json_body={"mode": "bris_de_glace", "reason": "cardiac arrest"})
    assert (r.status, r.reason) == (403, "emergency_opposed")
    assert world.find(ins, "emergency", consent=None).reason == "consent_missing"
    assert ("emergency", "emergency_opposed") in refusals(world, ins, password)


def test_centre_15_for_regulating_doctors_only_and_opposable_separately(world: World) -> None:
    ins, password = world.create()
    body = {"mode": "centre_15", "reason": "call to the SAMU, chest pain"}
    r = world.call("POST", f"/api/dmp/{ins}/emergency", "gp", json_body=body)
    assert (r.status, r.reason) == (403, "not_regulating_doctor")
    token = world.patient(ins, password)
    world.client.post("/api/patient/settings", {"oppose_bris_de_glace": True}, token=token)
    r = world.call("POST", f"/api/dmp/{ins}/emergency", "emergency", json_body=body)
    assert r.status == 200, r.body  # opposing bris de glace does not oppose centre 15
    other, other_pw = world.create()
    token = world.patient(other, other_pw)
    world.client.post("/api/patient/settings", {"oppose_centre_15": True}, token=token)
    r = world.call("POST", f"/api/dmp/{other}/emergency", "emergency", json_body=body)
    assert (r.status, r.reason) == (403, "emergency_opposed")


# -- D16: masked documents ---------------------------------------------------------------------
def test_masked_documents_hidden_except_chosen_doctor_and_author(world: World) -> None:
    ins, password = world.create()
    doc = world.fed(ins, "emergency", CONSULTATION)  # authored by the emergency doctor
    token = world.patient(ins, password)
    r = world.client.post(f"/api/patient/documents/{doc}/visibility", {"masked_ps": True},
                          token=token)
    assert r.status == 200 and r.json()["document"]["visibility"]["masked_ps"] is True
    assert doc not in world.found(ins, "gp")
    r = world.call("GET", f"/api/dmp/{ins}/documents/{doc}", "gp")
    assert (r.status, r.reason) == (404, "unknown_document")  # existence does not leak
    assert doc in world.found(ins, "emergency")  # the author
    r = world.client.post("/api/patient/settings", {"chosen_doctor": national_id("gp")},
                          token=token)
    assert r.json()["settings"]["chosen_doctor"]["national_id"] == national_id("gp")
    assert doc in world.found(ins, "gp")  # the chosen doctor (STAND-IN)
    assert ("retrieve", "masked_by_patient") in refusals(world, ins, password)


def test_masked_and_hidden_from_patient_cannot_both_be_set(world: World) -> None:
    ins, _ = world.create()
    r = world.feed(ins, query="?masked_ps=true&invisible_patient=true")
    assert (r.status, r.reason) == (409, "visibility_conflict")
    doc = world.fed(ins, query="?invisible_patient=true")
    r = world.call("POST", f"/api/dmp/{ins}/documents/{doc}/visibility", "gp",
                   json_body={"masked_ps": True})
    assert (r.status, r.reason) == (409, "visibility_conflict")
    r = world.call("POST", f"/api/dmp/{ins}/documents/{doc}/visibility", "nurse",
                   json_body={"announced": True})
    assert r.status in (403, 404) and r.reason in ("not_author", "unknown_document")
    r = world.call("POST", f"/api/dmp/{ins}/documents/{doc}/visibility", "gp",
                   json_body={"announced": True, "masked_ps": True})
    assert r.status == 200, r.body


# -- D18: blocked professionals ----------------------------------------------------------------
def test_blocked_professional_refused(world: World) -> None:
    ins, password = world.create()
    world.fed(ins)
    token = world.patient(ins, password)
    r = world.client.post("/api/patient/blocked", {"national_id": national_id("nurse")},
                          token=token)
    assert r.status == 200 and r.json()["blocked"][0]["national_id"] == national_id("nurse")
    assert world.find(ins, "nurse").reason == "blocked_by_patient"
    r = world.call("POST", f"/api/dmp/{ins}/emergency", "nurse",
                   json_body={"mode": "bris_de_glace", "reason": "fall"})
    assert r.reason == "blocked_by_patient"
    assert world.find(ins, "gp").status == 200  # others are not affected
    r = world.client.delete(f"/api/patient/blocked/{national_id('nurse')}", token=token)
    assert r.status == 200 and r.json()["blocked"] == []
    assert world.find(ins, "nurse").status == 200
