"""The trust space's rules without sockets: addresses, masking, S/MIME detection, ports file."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from bifente.simulators.mail import MailOperator, OperatorInfo, TrustSpace, is_smime, parse_address
from bifente.simulators.mail.addresses import mask_text

NIR = "178027505601209"


def test_addresses_are_parsed_and_lower_cased() -> None:
    a = parse_address("<Claire.Martin@Cabinet.TEST>")
    assert (a.local, a.domain) == ("claire.martin", "cabinet.test")
    assert str(a) == "claire.martin@cabinet.test"
    for bad in ("", "no-at", "a@b", "a@@b.test", "a b@c.test", "a@-x.test", "x" * 65 + "@c.test",
                f"a@{'b' * 250}.test", ".a@c.test"):
        with pytest.raises(ValueError):
            parse_address(bad)


def test_patient_addresses_are_masked() -> None:
    a = parse_address(f"{NIR}@patient.chu.test")
    assert a.is_patient and a.masked == "178************@patient.chu.test"
    assert mask_text(f"to {NIR}@x and 172062a00401244 but not 8100010001011234") == (
        "to 178************@x and 172************ but not 8100010001011234")


def test_trust_space_serves_patient_subdomains() -> None:
    space = TrustSpace.of(["cabinet.test", "CHU.test"])
    assert space.operator_of("chu.test") == "chu.test"
    assert space.operator_of("patient.cabinet.test") == "cabinet.test"
    assert space.operator_of("patient.gmail.com") is None
    assert space.operator_of("evil.cabinet.test") is None


@pytest.mark.parametrize(("header", "carried"), [
    ("application/pkcs7-mime; smime-type=enveloped-data", True),
    ("application/x-pkcs7-mime; smime-type=enveloped-data", True),
    ("Application/PKCS7-MIME; smime-type=authEnveloped-data", True),
    ('multipart/signed; protocol="application/pkcs7-signature"; micalg=sha-256', True),
    ('multipart/signed; protocol="application/pgp-signature"', False),
    ("multipart/signed", False),
    ("text/plain", False),
    ("multipart/mixed", False),
    (None, False),  # RFC 2045: text/plain by default
])
def test_only_smime_is_carried(header: str | None, carried: bool) -> None:
    head = f"Content-Type: {header}\r\n" if header else ""
    assert is_smime(f"From: a@b.test\r\n{head}\r\nbody\r\n".encode()) is carried


def test_served_domains_must_be_trusted(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="must be trusted"):
        MailOperator(tmp_path, domains=["cabinet.test"], trusted=["chu.test"])
    operator = MailOperator(tmp_path, domains=["labo.test"])
    assert operator.addresses() == ["structure@labo.test"]  # no CPS profile in labo.test


@pytest.mark.interop
@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs openssl")
def test_openssl_verifies_starttls_against_the_test_root(tmp_path: Path) -> None:
    with MailOperator(tmp_path, domains=["chu.test"]) as op:
        ports = op.info.domains["chu.test"]
        result = subprocess.run(
            ["openssl", "s_client", "-starttls", "smtp", "-connect",
             f"127.0.0.1:{ports.submission}", "-CAfile", op.info.ca_file,
             "-verify_return_error", "-verify_hostname", "smtp.chu.test", "-brief"],
            input="QUIT\r\n", capture_output=True, text=True, timeout=20, check=False)
    assert result.returncode == 0, result.stderr
    assert "Verification: OK" in result.stderr
    assert OperatorInfo.load(tmp_path).domains["chu.test"] == ports
