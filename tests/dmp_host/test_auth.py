"""Professionals authenticate with their simulated CPS card (direct) or through a structure."""

from __future__ import annotations

import base64

from cryptography.hazmat.primitives import serialization

from bifente.simulators.dmp.testing import DmpClient, card_login, national_id, structure_login
from bifente.simulators.dmp.testing import DmpWorld as World
from bifente.simulators.pki import card_keys


def _client(world: World) -> DmpClient:
    return DmpClient(world.host.url, world.host.cafile)


def test_health_over_https_trusting_only_the_test_root(world: World) -> None:
    r = world.client.get("/api/health")
    assert r.status == 200 and r.json()["status"] == "ok"


def test_a_card_opens_a_session_with_directory_data(world: World) -> None:
    r = card_login(_client(world), "gp")
    assert r.status == 200, r.body
    body = r.json()
    assert body["token"] and body["expires_in"] > 0
    prof = body["professional"]
    assert prof["national_id"] == national_id("gp")
    assert (prof["profession"], prof["specialty"], prof["card_type"], prof["sector"]) == (
        "10", "SM54", 0, "31")
    assert prof["auth_mode"] == "direct"


def test_an_expired_card_is_refused(world: World) -> None:
    r = card_login(_client(world), "expired")
    assert (r.status, r.reason) == (401, "certificate_expired")


def test_a_challenge_is_single_use_and_the_signature_must_match(world: World) -> None:
    c = _client(world)
    keys = card_keys("gp")
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding
    challenge = c.post("/api/auth/challenge").json()["challenge"]
    der = keys.authentication_cert.public_bytes(serialization.Encoding.DER)
    good = keys.authentication_key.sign(base64.b64decode(challenge), padding.PKCS1v15(),
                                        hashes.SHA256())
    body = {"challenge": challenge, "certificate": base64.b64encode(der).decode(),
            "signature": base64.b64encode(good).decode()}
    # signed by another card's key: refused, and the challenge is spent
    other = card_keys("nurse").authentication_key.sign(base64.b64decode(challenge),
                                                       padding.PKCS1v15(), hashes.SHA256())
    r = c.post("/api/auth/session", {**body, "signature": base64.b64encode(other).decode()})
    assert (r.status, r.reason) == (401, "signature_invalid")
    r = c.post("/api/auth/session", body)
    assert (r.status, r.reason) == (401, "challenge_invalid")
    r = c.post("/api/auth/session", {**body, "challenge": base64.b64encode(b"x" * 32).decode()})
    assert (r.status, r.reason) == (401, "challenge_invalid")


def test_a_challenge_expires(own_world: World) -> None:
    c = own_world.client
    keys = card_keys("gp")
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding
    challenge = c.post("/api/auth/challenge").json()["challenge"]
    own_world.clock.advance(seconds=61)
    sig = keys.authentication_key.sign(base64.b64decode(challenge), padding.PKCS1v15(),
                                       hashes.SHA256())
    r = c.post("/api/auth/session", {
        "challenge": challenge,
        "certificate": base64.b64encode(keys.authentication_cert.public_bytes(
            serialization.Encoding.DER)).decode(),
        "signature": base64.b64encode(sig).decode()})
    assert (r.status, r.reason) == (401, "challenge_invalid")


def test_no_token_no_access(world: World) -> None:
    ins = world.new_ins()
    r = world.client.get(f"/api/dmp/{ins}", token="not-a-token")
    assert (r.status, r.reason) == (401, "unauthenticated")


def test_indirect_mode_a_structure_vouches_for_its_member(world: World) -> None:
    r = structure_login(_client(world), national_id("emergency"))
    assert r.status == 200, r.body
    prof = r.json()["professional"]
    assert prof["auth_mode"] == "indirect"
    assert prof["specialty"] == "SM59" and prof["structure"]["id"] == "499700001005001"


def test_indirect_mode_refuses_non_members_and_a_missing_user(world: World) -> None:
    r = structure_login(_client(world), national_id("gp"))
    assert (r.status, r.reason) == (403, "not_member_of_structure")
    r = structure_login(_client(world), None)
    assert (r.status, r.reason) == (400, "bad_request")
    r = structure_login(_client(world), "810009999999")
    assert (r.status, r.reason) == (403, "unknown_professional")
