"""D21, code shown on the terminal: a professional's session asks the host for the patient's
one-time login code (POST /api/dmp/{ins}/patient-code) instead of it being sent."""

from __future__ import annotations

from bifente.simulators.dmp.testing import DmpWorld as World


def _login(world: World, ins: str, password: str) -> dict:
    r = world.client.post("/api/patient/login", {"ins": ins, "password": password})
    assert r.status == 202, r.body
    return r.json()


def test_code_issued_at_the_desk_opens_the_patient_space_once(world: World) -> None:
    ins, password = world.create()
    r = world.call("POST", f"/api/dmp/{ins}/patient-code", "gp", consent="read", ins=ins)
    assert r.status == 200, r.body
    code, expires_in = r.json()["code"], r.json()["expires_in"]
    assert len(code) == 6 and code.isdigit() and 0 < expires_in <= 600
    outbox = world.host.data_dir / "outbox" / "codes.jsonl"
    before = outbox.read_text() if outbox.exists() else ""
    login = _login(world, ins, password)
    assert login["code_sent_via"] == "terminal"
    assert (outbox.read_text() if outbox.exists() else "") == before  # nothing sent
    r = world.client.post("/api/patient/login/code", {"login": login["login"], "code": code})
    assert r.status == 200, r.body
    token = r.json()["token"]
    assert world.client.get("/api/patient/dmp", token=token).json()["status"] == "open"
    r = world.client.post("/api/patient/login/code", {"login": login["login"], "code": code})
    assert r.reason == "code_invalid"  # single use
    login = _login(world, ins, password)  # the next login is back to the code sender
    assert login["code_sent_via"] == "outbox"
    r = world.client.post("/api/patient/login/code", {"login": login["login"], "code": code})
    assert r.reason == "code_invalid"
    actions = [(t["action"], t["outcome"], t["actor"]["kind"])
               for t in world.traces(ins, token)]
    assert ("patient_code_issued", "ok", "professional") in actions
    assert code not in str(world.traces(ins, token))


def test_a_consent_record_is_required(world: World) -> None:
    ins, _ = world.create()
    path = f"/api/dmp/{ins}/patient-code"
    r = world.call("POST", path, "gp")
    assert (r.status, r.reason) == (403, "consent_missing")
    world.find(ins, "gp")  # a read grant kept by the session is not enough either
    assert world.call("POST", path, "gp").reason == "consent_missing"
    r = world.call("POST", path, "gp", consent="feed", ins=ins)
    assert r.status == 403 and r.reason and r.reason.startswith("consent")
    assert world.client.post(path).reason == "unauthenticated"


def test_a_replayed_consent_or_unknown_record_is_refused(world: World) -> None:
    ins, _ = world.create()
    headers = world.consent(ins, "gp", "read")
    path = f"/api/dmp/{ins}/patient-code"
    assert world.call("POST", path, "gp", headers=headers).status == 200
    assert world.call("POST", path, "gp", headers=headers).reason == "consent_replayed"
    other = world.new_ins()
    r = world.call("POST", f"/api/dmp/{other}/patient-code", "gp", consent="read", ins=other)
    assert (r.status, r.reason) == (404, "dmp_not_found"), r.body


def test_a_new_code_replaces_the_last_and_codes_expire(own_world: World) -> None:
    w = own_world
    ins, password = w.create()
    path = f"/api/dmp/{ins}/patient-code"
    first = w.call("POST", path, "gp", consent="read", ins=ins).json()["code"]
    second = w.call("POST", path, "gp", consent="read", ins=ins).json()["code"]
    login = _login(w, ins, password)
    if first != second:
        r = w.client.post("/api/patient/login/code", {"login": login["login"], "code": first})
        assert r.reason == "code_invalid"
    r = w.client.post("/api/patient/login/code", {"login": login["login"], "code": second})
    assert r.status == 200, r.body
    code = w.call("POST", path, "gp", consent="read", ins=ins).json()["code"]
    w.clock.advance(seconds=601)
    login = _login(w, ins, password)
    assert login["code_sent_via"] == "outbox"  # the expired terminal code is not used
    r = w.client.post("/api/patient/login/code", {"login": login["login"], "code": code})
    assert r.reason == "code_invalid" or code == w.client.get(
        f"/api/test/last-code?ins={ins}").json()["code"]
