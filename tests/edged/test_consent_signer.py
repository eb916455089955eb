"""Consent records: canonical bytes, signature, expiry, and a stable device identity."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cryptography.exceptions import InvalidSignature

from bifente.contracts.consent import canonical_json as canonical
from bifente.edged.services.consent import ConsentSigner, verify_record


def test_signed_record_verifies_and_binds_its_fields(tmp_path: Path) -> None:
    signer = ConsentSigner(tmp_path, clock=lambda: 1_700_000_000)
    signed = signer.sign(ins="178027505601209", professional="810001000101", action="read",
                         ttl=600)
    record = verify_record(signed, signer.public_key_pem)
    assert record["expires"] - record["issued"] == 600
    assert (record["ins"], record["professional"], record["action"], record["device"]) == (
        "178027505601209", "810001000101", "read", signer.device_id)
    tampered = json.loads(json.dumps(signed))
    tampered["record"]["action"] = "feed"
    with pytest.raises(InvalidSignature):
        verify_record(tampered, signer.public_key_pem)


def test_canonical_form_is_sorted_and_compact() -> None:
    assert canonical({"b": 1, "a": "é"}) == '{"a":"é","b":1}'.encode()


def test_key_is_kept_and_private(tmp_path: Path) -> None:
    first = ConsentSigner(tmp_path)
    second = ConsentSigner(tmp_path)
    assert first.device_id == second.device_id and first.device_id.startswith("bifente-")
    assert (tmp_path / "consent-signing.key.pem").stat().st_mode & 0o777 == 0o600


def test_nonces_differ_and_bad_requests_are_refused(tmp_path: Path) -> None:
    signer = ConsentSigner(tmp_path)
    a = signer.sign(ins="x", professional="y", action="feed")
    b = signer.sign(ins="x", professional="y", action="feed")
    assert a["record"]["nonce"] != b["record"]["nonce"]
    with pytest.raises(ValueError, match="action"):
        signer.sign(ins="x", professional="y", action="delete")
    with pytest.raises(ValueError, match="between"):
        signer.sign(ins="x", professional="y", action="read", ttl=0)
