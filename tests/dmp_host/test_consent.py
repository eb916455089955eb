"""Consent records (docs/dmp-api.md; D4/D9/D10): required, verified, single use, bound, traced."""

from __future__ import annotations

import base64

import pytest

from bifente.simulators.dmp.consent import CONSENT_HEADER, encode_header
from bifente.simulators.dmp.testing import TEST_OID, ConsentSigner, national_id
from bifente.simulators.dmp.testing import DmpWorld as World


def refused(world: World, ins: str, password: str) -> list[str]:
    token = world.patient(ins, password)
    return [t["reason"] for t in world.traces(ins, token) if t["outcome"] == "refused"]


def test_creation_needs_consent(world: World) -> None:
    ins = world.new_ins()
    r = world.call("POST", f"/api/dmp/{ins}", "gp", json_body={"ins_oid": TEST_OID})
    assert (r.status, r.reason) == (403, "consent_missing")
    assert world.call("GET", f"/api/dmp/{ins}", "gp").json()["exists"] is False


def test_feeding_needs_consent(world: World) -> None:
    ins, password = world.create()
    r = world.feed(ins, consent=None)
    assert (r.status, r.reason) == (403, "consent_missing")
    r = world.feed(ins, consent="read")  # a consent for another action
    assert (r.status, r.reason) == (403, "consent_mismatch")
    assert world.found(ins, "gp") == []
    assert {"consent_missing", "consent_mismatch"} <= set(refused(world, ins, password))


def test_reading_needs_consent_then_the_grant_lasts_until_expiry(world: World) -> None:
    ins, _ = world.create()
    doc = world.fed(ins)
    r = world.find(ins, "nurse", consent=None)
    assert (r.status, r.reason) == (403, "consent_missing")
    assert world.find(ins, "pharmacist").status == 200  # with a consent
    # the consent is spent; the grant it opened covers this session's next reads
    r = world.call("GET", f"/api/dmp/{ins}/documents/{doc}", "pharmacist")
    assert (r.status, r.reason) == (403, "outside_access_matrix")
    r = world.find(ins, "pharmacist", consent=None)
    assert r.status == 200


def test_consent_expired_is_refused_and_traced(world: World) -> None:
    ins, password = world.create()
    headers = world.consent(ins, "gp", "read", now=world.clock() - 3600, lifetime=600)
    r = world.call("GET", f"/api/dmp/{ins}/documents", "nurse", headers=headers)
    assert r.reason == "consent_mismatch"  # for the gp, not the nurse
    r = world.call("GET", f"/api/dmp/{ins}/documents", "gp", headers=headers)
    assert (r.status, r.reason) == (403, "consent_expired")
    headers = world.consent(ins, "gp", "read", now=world.clock() + 3600)
    r = world.call("GET", f"/api/dmp/{ins}/documents", "gp", headers=headers)
    assert (r.status, r.reason) == (403, "consent_not_yet_valid")
    assert {"consent_expired", "consent_not_yet_valid", "consent_mismatch"} <= set(
        refused(world, ins, password))


def test_consent_forged_is_refused_and_traced(world: World) -> None:
    ins, password = world.create()
    envelope = world.signer.sign(world.signer.record(ins, national_id("gp"), "read",
                                                     now=world.clock()))
    tampered = {**envelope, "record": {**envelope["record"], "express": True}}  # type: ignore[dict-item]
    r = world.call("GET", f"/api/dmp/{ins}/documents", "gp",
                   headers={CONSENT_HEADER: encode_header(tampered)})
    assert (r.status, r.reason) == (403, "consent_forged")
    stranger = ConsentSigner("terminal-test")  # same device name, another key
    r = world.call("GET", f"/api/dmp/{ins}/documents", "gp",
                   headers=stranger.header(ins, national_id("gp"), "read", now=world.clock()))
    assert (r.status, r.reason) == (403, "consent_forged")
    unknown = ConsentSigner("never-enrolled")
    r = world.call("GET", f"/api/dmp/{ins}/documents", "gp",
                   headers=unknown.header(ins, national_id("gp"), "read", now=world.clock()))
    assert (r.status, r.reason) == (403, "consent_forged")
    assert refused(world, ins, password).count("consent_forged") == 3


def test_consent_replayed_is_refused_and_traced(world: World) -> None:
    ins, password = world.create()
    headers = world.consent(ins, "gp", "feed")
    r = world.call("POST", f"/api/dmp/{ins}/documents", "gp", body=world.cda(ins),
                   headers={**headers, "Content-Type": "application/hl7-v3+xml"})
    assert r.status == 201
    r = world.call("POST", f"/api/dmp/{ins}/documents", "gp", body=world.cda(ins),
                   headers={**headers, "Content-Type": "application/hl7-v3+xml"})
    assert (r.status, r.reason) == (403, "consent_replayed")
    assert len(world.found(ins, "gp")) == 1
    assert "consent_replayed" in refused(world, ins, password)


def test_consent_for_another_patient_or_professional(world: World) -> None:
    ins, password = world.create()
    other = world.new_ins()
    r = world.call("GET", f"/api/dmp/{ins}/documents", "gp",
                   headers=world.consent(other, "gp", "read"))
    assert (r.status, r.reason) == (403, "consent_mismatch")
    r = world.call("GET", f"/api/dmp/{ins}/documents", "gp",
                   headers=world.consent(ins, "nurse", "read"))
    assert (r.status, r.reason) == (403, "consent_mismatch")
    assert refused(world, ins, password).count("consent_mismatch") == 2


@pytest.mark.parametrize("mutate", [
    lambda r: r.pop("nonce"),
    lambda r: r.update(v=2),
    lambda r: r.update(issued=True),
    lambda r: r.update(nonce=base64.b64encode(b"short").decode()),
    lambda r: r.update(extra="field"),
    lambda r: r.update(expires=r["issued"] + 10 * 86400),
], ids=["no-nonce", "version", "bool-time", "short-nonce", "extra-field", "too-long"])
def test_malformed_consent_records(world: World, mutate) -> None:
    ins, _ = world.create()
    record = world.signer.record(ins, national_id("gp"), "read", now=world.clock())
    mutate(record)
    r = world.call("GET", f"/api/dmp/{ins}/documents", "gp",
                   headers={CONSENT_HEADER: encode_header(world.signer.sign(record))})
    assert (r.status, r.reason) == (400, "consent_invalid")


def test_a_revoked_device_cannot_vouch(own_world: World) -> None:
    w = own_world
    ins, _ = w.create()
    r = w.client.delete(f"/api/admin/devices/{w.signer.device}", token="wrong")
    assert (r.status, r.reason) == (403, "admin_required")
    r = w.client.delete(f"/api/admin/devices/{w.signer.device}", token=w.host.admin_token)
    assert r.status == 200
    assert w.find(ins, "gp").reason == "consent_forged"
    r = w.client.post("/api/admin/devices", {"device": w.signer.device,
                                              "public_key": w.signer.public_pem},
                      token=w.host.admin_token)
    assert r.status == 201
    assert w.find(ins, "gp").status == 200
