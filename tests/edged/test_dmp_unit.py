"""edged's DMP pieces on their own: the [dmp] settings, the consent signer against the host's
vector and verifier (docs/dmp-api.md, "Consent records"), the durable feed queue."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bifente.contracts.consent import canonical_json as canonical
from bifente.edged.config import ConfigError
from bifente.edged.services.consent import ConsentSigner
from bifente.edged.services.dmp_host import DmpSettings, query_string
from bifente.edged.state.dmp_queue import FeedQueue
from bifente.simulators.dmp.consent import load_device_key, verify_consent
from bifente.simulators.pki import DATA

CA = str(DATA / "ca" / "test-root.crt.pem")
VECTOR = {"v": 1, "ins": "285036912304579", "professional": "810001000101", "action": "read",
          "express": False, "issued": 1767225600, "expires": 1767226200,
          "nonce": "AAECAwQFBgcICQoLDA0ODw==", "device": "terminal-0001"}
SIGNED = ('{"action":"read","device":"terminal-0001","expires":1767226200,"express":false,'
          '"ins":"285036912304579","issued":1767225600,"nonce":"AAECAwQFBgcICQoLDA0ODw==",'
          '"professional":"810001000101","v":1}')


def test_settings_defaults_and_off() -> None:
    assert DmpSettings.from_table({}) is None
    s = DmpSettings.from_table({"url": "https://dmp.test:8443/", "ca_file": CA})
    assert s is not None
    assert (s.url, s.admin_token, s.consent_ttl, s.feed_consent_ttl) == (
        "https://dmp.test:8443", None, 900, 86400)


@pytest.mark.parametrize("table, message", [
    ({"url": "http://dmp.test", "ca_file": CA}, "https"),
    ({"url": "https://dmp.test"}, "ca_file"),
    ({"url": "https://dmp.test", "ca_file": "/nonexistent.pem"}, "no file"),
    ({"url": "https://dmp.test", "ca_file": CA, "consent_ttl": 90000}, "consent_ttl"),
    ({"url": "https://dmp.test", "ca_file": CA, "consent_ttl": True}, "consent_ttl"),
    ({"url": "https://dmp.test", "ca_file": CA, "admin_token": ""}, "admin_token"),
    ({"url": "https://dmp.test", "ca_file": CA, "colour": "blue"}, "dmp.colour"),
])
def test_settings_refused(table: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        DmpSettings.from_table(table)


def test_consent_canonical_form_is_the_hosts_vector() -> None:
    assert canonical(VECTOR) == SIGNED.encode()


def test_consent_signed_by_edged_verifies_with_the_hosts_verifier(tmp_path: Path) -> None:
    signer = ConsentSigner(tmp_path / "keys", clock=lambda: 1767225600.0)
    envelope = signer.sign(ins="285036912304579", professional="810001000101",
                           action="feed", express=True, ttl=600)
    assert envelope["record"]["device"] == signer.device_id
    assert set(envelope["record"]) == set(VECTOR)
    key = load_device_key(signer.public_key_pem)
    record = verify_consent(json.loads(json.dumps(envelope)),
                            device_key=lambda d: key if d == signer.device_id else None,
                            ins="285036912304579", professional="810001000101",
                            action="feed", now=1767225700, max_lifetime=86400, skew=120)
    assert record.express is True and record.expires == 1767226200
    # the key is kept: the same device after a restart
    assert ConsentSigner(tmp_path / "keys").device_id == signer.device_id
    assert (tmp_path / "keys" / "consent-signing.key.pem").stat().st_mode & 0o777 == 0o600


def test_feed_queue_survives_a_restart_and_a_crash_mid_send(tmp_path: Path) -> None:
    path = tmp_path / "q.db"
    queue = FeedQueue(path)
    first = queue.add("285036912304579", "810001000101", "", b"<cda/>", "hdr")
    queue.add("285036912304579", "810001000101", "?masked_ps=true", b"<cda2/>", "hdr2")
    claimed = queue.claim()
    assert claimed is not None and claimed.queue_id == first
    queue.close()  # a crash while sending
    queue = FeedQueue(path)
    items = queue.list()
    assert (items[0].queue_id, items[0].state) == (first, "queued")
    assert items[0].describe()["patient"] == "285************"
    queue.delivered(first, "doc-1")
    queue.failed(items[1].queue_id, "consent_expired")
    assert queue.list() == []
    assert [i.state for i in queue.list(include_done=True)] == ["delivered", "failed"]
    queue.close()


def test_a_feed_that_keeps_failing_does_not_take_every_turn(tmp_path: Path) -> None:
    # Claimed by due time: a feed retried after its backoff goes behind the ones that were
    # waiting, instead of the oldest feed being claimed again each time an attempt ends.
    now = [1000.0]
    queue = FeedQueue(tmp_path / "q.db", clock=lambda: now[0])
    try:
        slow = queue.add("285036912304579", "810001000101", "", b"<big/>", "hdr")
        now[0] += 1
        other = queue.add("285036912304579", "810001000101", "", b"<small/>", "hdr")
        claimed = queue.claim()
        assert claimed is not None and claimed.queue_id == slow
        now[0] += 30  # the attempt timed out after 30 s; its backoff was shorter than that
        queue.retry(slow, "timed out", delay=5)
        now[0] += 5
        claimed = queue.claim()
        assert claimed is not None and claimed.queue_id == other
        claimed = queue.claim()
        assert claimed is not None and claimed.queue_id == slow
    finally:
        queue.close()


def test_nothing_is_sent_before_the_consent_device_is_enrolled(tmp_path: Path) -> None:
    # A feed sent before enrollment is refused consent_forged (the host does not know the
    # device), a verdict that fails it for good: the loop waits for the enrollment instead.
    import asyncio
    from types import SimpleNamespace

    from bifente.edged.services.dmp import DmpService

    settings = DmpSettings.from_table({"url": "https://dmp.test:8443/", "ca_file": CA,
                                       "admin_token": "t", "retry_base": 0.05})
    assert settings is not None
    service = DmpService(SimpleNamespace(config=SimpleNamespace(state_dir=tmp_path),
                                         key_wrapper=None), settings)
    asked: list[str] = []

    def http(method: str, path: str, *_args: object) -> tuple[int, dict, bytes]:
        asked.append(path)
        if path == "/api/admin/devices":
            return 503, {}, b""  # the host is starting: enrollment deferred
        return 201, {}, b'{"document":{"id":"d"}}'

    service._http = http  # type: ignore[method-assign]
    queued = service.queue.add("285036912304579", "810001000101", "", b"<cda/>", "hdr")
    try:
        asyncio.run(service._queue_step())
        assert asked == ["/api/admin/devices"]
        assert [(f.queue_id, f.state, f.attempts) for f in service.queue.list()] == [
            (queued, "queued", 0)]
    finally:
        service.queue.close()


def test_query_string() -> None:
    assert query_string({"a": None}) == ""
    assert query_string({"masked_ps": True, "invisible_patient": False}) == (
        "?masked_ps=true&invisible_patient=false")


@pytest.mark.parametrize("status, body, outage", [
    (503, b'{"error":{"reason":"unavailable","message":"maintenance"}}', True),
    (502, b"<html>Bad Gateway</html>", True),
    (504, b"", True),
    (500, b"<html>oops</html>", True),  # not the host's own answer: a gateway's page
    (500, b'{"error":{"reason":"internal_error","message":"internal error"}}', False),
    (422, b'{"error":{"reason":"cda_invalid","message":"bad","details":[1]}}', False),
    (429, b"<html>Too Many Requests</html>", True),  # a proxy in front: not now
    (408, b"", True),
    (429, b'{"error":{"reason":"login_locked","message":"15 minutes"}}', False),  # the host's
])
def test_a_refusal_is_told_from_an_outage(tmp_path: Path, status: int, body: bytes,
                                          outage: bool) -> None:
    # D3: every 5xx was "unreachable", so a document the host failed on was queued and
    # retried; only a host that is not serving (or no answer of its own) is an outage.
    import asyncio
    from types import SimpleNamespace

    from bifente.edged.services.dmp import DmpService
    from bifente.edged.services.dmp_host import DmpError, HostUnreachable

    settings = DmpSettings.from_table({"url": "https://dmp.test:8443/", "ca_file": CA})
    assert settings is not None
    service = DmpService(SimpleNamespace(config=SimpleNamespace(state_dir=tmp_path),
                                         key_wrapper=None), settings)
    service._http = lambda *_args: (status, {}, body)  # type: ignore[method-assign]
    with pytest.raises(HostUnreachable if outage else DmpError) as caught:
        asyncio.run(service.request("POST", "/api/dmp/x/documents", body=b"<x/>"))
    if not outage:
        assert caught.value.status == status and caught.value.reason in (
            "internal_error", "cda_invalid", "login_locked")
    service.queue.close()


def test_dmp_errors_map_through_the_error_table_wherever_they_are_raised() -> None:
    # The host's refusals and outages, "not configured" and the queue's card check are typed
    # domain errors: the API maps them by type lookup, not only inside dmp_methods._run.
    from bifente.client.codes import CARD_ERROR, DMP_ERROR
    from bifente.edged.api.errors import to_rpc_error
    from bifente.edged.services.dmp_card import NotThisProfessional
    from bifente.edged.services.dmp_host import DmpError, DmpNotConfigured, HostUnreachable

    refused = to_rpc_error(DmpError("cda_invalid", "bad CDA", 422, [{"line": 3}]))
    assert (refused.code, refused.message, refused.data) == (
        DMP_ERROR, "bad CDA", {"reason": "cda_invalid", "status": 422,
                               "details": [{"line": 3}]})
    plain = to_rpc_error(DmpError("consent_expired", "expired", 403))
    assert plain.data == {"reason": "consent_expired", "status": 403}
    down = to_rpc_error(HostUnreachable("the DMP host answered 503"))
    assert (down.code, down.message, down.data) == (
        DMP_ERROR, "the DMP host answered 503", {"reason": "host_unreachable"})
    off = to_rpc_error(DmpNotConfigured())
    assert (off.code, off.data) == (DMP_ERROR, {"reason": "dmp_not_configured"})
    other = to_rpc_error(NotThisProfessional("another professional's card"))
    assert (other.code, other.data) == (CARD_ERROR, {"reason": "other_professional"})


def test_a_host_session_never_shows_its_bearer_token() -> None:
    from bifente.edged.services.dmp_card import ProSession

    session = ProSession("tok-3f9a1c77e2", "810001000101", "Dr Test", arbiter=None)
    assert "tok-3f9a1c77e2" not in repr(session) and "tok-3f9a1c77e2" not in str(session)
    assert "810001000101" in repr(session)  # the rest still shows
