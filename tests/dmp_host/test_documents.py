"""Documents: conformance (D7), index and retrieval (D12), atomic feeding, durability."""

from __future__ import annotations

import base64
import hashlib
import socket
import ssl
import time

from bifente.simulators.dmp.storage import DB_NAME
from bifente.simulators.dmp.testing import DmpClient, card_login, national_id
from bifente.simulators.dmp.testing import DmpWorld as World

PDF = b"%PDF-1.4\n% test document\n" + bytes(range(256)) * 4


def reasons(result) -> list[str]:
    return [d["reason"] for d in result.json()["error"].get("details", [])]


# -- D7: conformance, every problem listed -------------------------------------------------
def test_a_conforming_cda_is_registered(world: World) -> None:
    ins, _ = world.create()
    for data in (world.cda(ins), world.cda(ins, pdf=PDF),
                 world.cda(ins, media_type="text/plain", text="Tension 12/8")):
        r = world.feed(ins, data=data)
        assert r.status == 201, r.body
        doc = r.json()["document"]
        assert doc["sha256"] == hashlib.sha256(data).hexdigest() and doc["size"] == len(data)
        assert doc["author"]["id"] == national_id("gp") and doc["fed_by"] == national_id("gp")


def test_missing_loinc_code_and_other_header_fields_all_listed(world: World) -> None:
    ins, _ = world.create()
    data = world.cda(ins).replace(b'<code code="11488-4" codeSystem="2.16.840.1.113883.6.1" '
                                  b'displayName="Compte rendu"/>', b"")
    data = data.replace(b"<title>Compte rendu</title>", b"")
    data = data.replace(b"<custodian>", b"<notcustodian>").replace(b"</custodian>",
                                                                   b"</notcustodian>")
    r = world.feed(ins, data=data)
    assert (r.status, r.reason) == (422, "cda_invalid")
    assert reasons(r) == ["code_missing", "title_missing", "custodian_missing"]
    assert world.found(ins, "gp") == []


def test_wrong_code_system_and_type_not_allowed(world: World) -> None:
    ins, _ = world.create()
    r = world.feed(ins, data=world.cda(ins).replace(b"2.16.840.1.113883.6.1",
                                                    b"1.2.250.1.213.1.1.4.12"))
    assert (r.status, r.reason) == (422, "cda_invalid")
    assert reasons(r) == ["code_system_not_loinc"]
    r = world.feed(ins, data=world.cda(ins, "99999-9"))
    assert reasons(r) == ["code_not_allowed"]


def test_ins_mismatch(world: World) -> None:
    ins, _ = world.create()
    other = world.new_ins()
    r = world.feed(ins, data=world.cda(other))
    assert (r.status, r.reason) == (422, "ins_mismatch")
    assert reasons(r) == ["ins_mismatch"]
    r = world.feed(ins, data=world.cda(ins).replace(b"1.2.250.1.213.1.4.10", b"1.2.3.4"))
    assert reasons(r) == ["ins_oid_invalid"]


def test_malformed_xml_and_wrong_namespace(world: World) -> None:
    ins, _ = world.create()
    r = world.feed(ins, data=world.cda(ins)[:-40])
    assert (r.status, r.reason) == (422, "cda_invalid") and reasons(r) == ["xml_malformed"]
    r = world.feed(ins, data=world.cda(ins).replace(b'xmlns="urn:hl7-org:v3"',
                                                    b'xmlns="urn:other"'))
    assert reasons(r) == ["not_clinical_document"]
    r = world.feed(ins, data=b"")
    assert reasons(r) == ["xml_malformed"]


def test_dtd_and_entity_bombs_are_refused_unexpanded(world: World) -> None:
    ins, _ = world.create()
    lol = "".join(f'<!ENTITY l{i} "{f"&l{i - 1};" * 10}">' for i in range(1, 10))
    bomb = (f'<?xml version="1.0"?><!DOCTYPE d [<!ENTITY l0 "lol">{lol}]>'
            '<ClinicalDocument xmlns="urn:hl7-org:v3"><title>&l9;</title></ClinicalDocument>')
    started = time.perf_counter()
    r = world.feed(ins, data=bomb.encode())
    assert time.perf_counter() - started < 2
    assert (r.status, r.reason) == (422, "cda_invalid") and reasons(r) == ["dtd_forbidden"]
    xxe = (b'<?xml version="1.0"?><!DOCTYPE d [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
           b'<ClinicalDocument xmlns="urn:hl7-org:v3">&x;</ClinicalDocument>')
    assert reasons(world.feed(ins, data=xxe)) == ["dtd_forbidden"]


def test_a_bad_pdf_body(world: World) -> None:
    ins, _ = world.create()
    r = world.feed(ins, data=world.cda(ins, pdf=b"not a pdf"))
    assert reasons(r) == ["body_invalid"]


# -- D12: index and retrieval ------------------------------------------------------------------
def test_index_then_retrieve_json_and_raw(world: World) -> None:
    ins, _ = world.create()
    data = world.cda(ins, "11502-2", pdf=PDF, title="Bilan sanguin")
    r = world.feed(ins, data=data)
    doc_id = r.json()["document"]["id"]
    index = world.find(ins, "gp").json()
    assert index["total"] == 1
    entry = index["documents"][0]
    assert (entry["id"], entry["type_code"], entry["type_name"], entry["title"],
            entry["media_type"]) == (doc_id, "11502-2", "Biology report", "Bilan sanguin",
                                     "application/pdf")
    r = world.call("GET", f"/api/dmp/{ins}/documents/{doc_id}", "gp")
    assert r.status == 200 and base64.b64decode(r.json()["cda"]) == data
    r = world.call("GET", f"/api/dmp/{ins}/documents/{doc_id}", "gp",
                   headers={"Accept": "application/hl7-v3+xml"})
    assert r.body == data and r.headers["x-dmp-sha256"] == hashlib.sha256(data).hexdigest()


def test_unknown_document(world: World) -> None:
    ins, password = world.create()
    world.find(ins, "gp")
    r = world.call("GET", f"/api/dmp/{ins}/documents/no-such-id", "gp")
    assert (r.status, r.reason) == (404, "unknown_document")
    token = world.patient(ins, password)
    assert ("retrieve", "unknown_document") in [
        (t["action"], t["reason"]) for t in world.traces(ins, token)]


def test_a_retried_feed_is_idempotent_for_its_submitter(world: World) -> None:
    ins, _ = world.create()
    data = world.cda(ins)
    first = world.feed(ins, data=data)
    again = world.feed(ins, data=data, consent=None)  # e.g. edged retrying after a cut answer
    assert first.status == 201 and again.status == 200
    assert again.json()["already_registered"] is True
    assert again.json()["document"]["id"] == first.json()["document"]["id"]
    changed = data.replace(b"Compte rendu</title>", b"Autre</title>")
    assert world.feed(ins, data=changed).reason == "document_exists"
    assert len(world.found(ins, "gp")) == 1


def test_a_feed_cut_mid_transfer_leaves_nothing(world: World) -> None:
    ins, password = world.create()
    data = world.cda(ins, pdf=PDF * 200)
    headers = world.consent(ins, "gp", "feed")
    context = ssl.create_default_context(cafile=str(world.host.cafile))
    with socket.create_connection(("127.0.0.1", world.host.port)) as raw, \
            context.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
        head = (f"POST /api/dmp/{ins}/documents HTTP/1.1\r\nHost: dmp.test\r\n"
                f"Authorization: Bearer {world.token('gp')}\r\n"
                "Content-Type: application/hl7-v3+xml\r\n"
                + "".join(f"{k}: {v}\r\n" for k, v in headers.items())
                + f"Content-Length: {len(data)}\r\n\r\n")
        tls.sendall(head.encode() + data[: len(data) // 2])
    deadline = time.monotonic() + 5
    token = world.patient(ins, password)
    while time.monotonic() < deadline:
        traces = world.traces(ins, token)
        if any(t["reason"] == "transfer_incomplete" for t in traces):
            break
        time.sleep(0.05)
    assert any(t["action"] == "feed" and t["reason"] == "transfer_incomplete" for t in traces)
    assert world.found(ins, "gp") == []
    # the consent was not spent: the same record still feeds the whole document
    r = world.call("POST", f"/api/dmp/{ins}/documents", "gp", body=data,
                   headers={**headers, "Content-Type": "application/hl7-v3+xml"})
    assert r.status == 201, r.body


def test_limits_too_large_and_no_length(world: World) -> None:
    ins, _ = world.create()
    context = ssl.create_default_context(cafile=str(world.host.cafile))
    with socket.create_connection(("127.0.0.1", world.host.port)) as raw, \
            context.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
        tls.sendall((f"POST /api/dmp/{ins}/documents HTTP/1.1\r\nHost: dmp.test\r\n"
                     f"Authorization: Bearer {world.token('gp')}\r\n"
                     "Content-Type: application/hl7-v3+xml\r\n"
                     f"Content-Length: {64 * 1024 * 1024}\r\n\r\n").encode())
        answer = tls.recv(4096)
    assert answer.startswith(b"HTTP/1.1 413") and b"too_large" in answer


def test_host_restart_loses_nothing(own_world: World, tmp_path) -> None:
    w = own_world
    ins, password = w.create()
    doc = w.fed(ins, query="?invisible_patient=true")
    token = w.patient(ins, password)
    w.client.post("/api/patient/settings", {"oppose_bris_de_glace": True}, token=token)
    before = w.traces(ins, token)
    w.host.stop()
    assert (w.host.data_dir / DB_NAME).exists()
    w.host.start()  # same data directory, new port
    w.client = DmpClient(w.host.url, w.host.cafile)
    w.tokens.clear()  # sessions end with the process; data does not
    assert card_login(w.client, "gp").status == 200
    r = w.call("GET", f"/api/dmp/{ins}/documents/{doc}", "gp", consent="read", ins=ins)
    assert r.status == 200 and r.json()["document"]["visibility"]["invisible_patient"] is True
    token = w.patient(ins, password)
    after = w.traces(ins, token)
    assert [t["id"] for t in before] == [t["id"] for t in after][-len(before):]
    assert w.client.get("/api/patient/dmp", token=token).json()["settings"][
        "oppose_bris_de_glace"] is True
    # the device enrollment survived too: the consent above verified


def test_feed_needs_a_cda_content_type(world: World) -> None:
    ins, _ = world.create()
    r = world.call("POST", f"/api/dmp/{ins}/documents", "gp", consent="feed", ins=ins,
                   body=world.cda(ins), headers={"Content-Type": "application/pdf"})
    assert (r.status, r.reason) == (400, "bad_request")


def test_a_professional_reads_traces_with_consent(world: World) -> None:
    ins, _ = world.create()
    r = world.call("GET", f"/api/dmp/{ins}/traces", "nurse")
    assert (r.status, r.reason) == (403, "consent_missing")
    r = world.call("GET", f"/api/dmp/{ins}/traces", "nurse", consent="read", ins=ins)
    assert r.status == 200
    actions = [(t["actor"]["id"], t["action"], t["outcome"]) for t in r.json()["traces"]]
    assert (national_id("gp"), "create", "ok") in actions
    assert (national_id("nurse"), "traces", "refused") in actions


def test_concurrent_feeds_from_several_connections(world: World) -> None:
    from concurrent.futures import ThreadPoolExecutor

    records = [world.create()[0] for _ in range(4)]
    token = world.token("gp")

    def feed(ins: str) -> int:
        client = DmpClient(world.host.url, world.host.cafile, token=token)
        try:
            statuses = []
            for _ in range(3):
                headers = {**world.consent(ins, "gp", "feed"),
                           "Content-Type": "application/hl7-v3+xml"}
                statuses.append(client.post(f"/api/dmp/{ins}/documents", None,
                                            body=world.cda(ins), headers=headers).status)
            return statuses.count(201)
        finally:
            client.close()

    with ThreadPoolExecutor(4) as pool:
        assert list(pool.map(feed, records)) == [3, 3, 3, 3]
    assert [len(world.found(ins, "gp")) for ins in records] == [3, 3, 3, 3]
