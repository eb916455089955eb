"""`bifente ins`: NIR check, INS-C and INS from the command line (no card needed)."""

from __future__ import annotations

import json
import subprocess
import sys

from bifente.apdu.identity import compute_ins_c, parse_nir


def bifente(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "bifente.edged.cli.main",
                           *args], capture_output=True,
                          text=True, timeout=60, check=False)


def test_ins_text_and_json() -> None:
    result = bifente("ins", "1 78 02 75 056 012 09", "--first-name", "Pierre",
                     "--birth-date", "1978-02-14", "--environment", "test")
    assert result.returncode == 0, result.stderr
    expected = compute_ins_c("Pierre", "19780214", parse_nir("178027505601209"))
    assert f"INS-C  {expected}" in result.stdout
    assert "valid, key 09" in result.stdout and "1.2.250.1.213.1.4.10" in result.stdout
    data = json.loads(bifente("ins", "178027505601209", "--json").stdout)
    assert data["key"] == "09" and data["ins"]["oid"] == "1.2.250.1.213.1.4.8"
    assert data["ins_c"] is None  # no first name given


def test_ins_computes_a_missing_key() -> None:
    data = json.loads(bifente("ins", "172062A004012", "--json").stdout)
    assert data["nir"] == "172062A00401244"


def test_ins_temporary_number() -> None:
    result = bifente("ins", "890079912345626", "--first-name", "Ana")
    assert result.returncode == 0
    assert "no INS-C for a temporary number" in result.stdout
    assert "NIA, OID 1.2.250.1.213.1.4.9" in result.stdout


def test_bad_nir_is_one_line_and_exit_2() -> None:
    result = bifente("ins", "178027505601208")  # wrong key
    assert result.returncode == 2
    assert result.stderr.strip() == "bifente: NIR key does not match: the number is mistyped"
    assert "Traceback" not in result.stderr and "178027505601208" not in result.stderr


def test_usage_error_exit_2() -> None:
    result = bifente("ins")
    assert result.returncode == 2 and "usage:" in result.stderr


def test_expired_rights_and_card_are_flagged() -> None:
    from bifente.apdu.protocol import CardProtocol
    from bifente.apdu.transport import InProcessTransport
    from bifente.apdu.vitale import VitaleSession
    from bifente.edged.cli.render import _past, vitale_text
    from bifente.simulators.vitale import Vitale2Card

    assert _past("20260115", today="20261205") and not _past("20331231", today="20261205")
    card = VitaleSession(CardProtocol(InProcessTransport(Vitale2Card("family")))).read()
    assert "EXPIRED" not in vitale_text(card)  # rights until 2033
    text = vitale_text(VitaleSession(CardProtocol(InProcessTransport(
        Vitale2Card("temporary")))).read())
    assert ("RIGHTS EXPIRED" in text) == _past("20260115")
