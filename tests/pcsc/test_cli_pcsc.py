"""`bifente cards`, `vitale read`, `cps info` against simulated cards through PC/SC."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

pytestmark = pytest.mark.pcsc


def bifente(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "bifente.edged.cli.main",
                           *args], capture_output=True,
                          text=True, timeout=60, check=False)


def test_cards_lists_both_slots(cps, vitale) -> None:
    cps("gp")
    vitale("family")
    result = bifente("cards")
    assert result.returncode == 0, result.stderr
    assert "0: Virtual PCD 00 00" in result.stdout and "CPS card" in result.stdout
    assert "Vitale 2 card" in result.stdout
    data = json.loads(bifente("cards", "--json").stdout)
    assert [d["kind"] for d in data] == ["cps", "vitale"]


def test_vitale_read_text_and_json(vitale) -> None:
    vitale("family")
    text = bifente("vitale", "read")
    assert text.returncode == 0, text.stderr
    assert "Beneficiaries  4" in text.stdout
    assert "Anne-Sophie LEFEBVRE (born GARNIER)" in text.stdout
    data = json.loads(bifente("vitale", "read", "--json").stdout)
    assert len(data["beneficiaries"]) == 4
    assert data["beneficiaries"][0]["ins"]["oid"] == "1.2.250.1.213.1.4.10"


def test_cps_info_text_and_json(cps) -> None:
    cps("emergency")
    text = bifente("cps", "info")
    assert text.returncode == 0, text.stderr
    assert "Dr Sophie LEROY" in text.stdout and "emergency medicine (SM59)" in text.stdout
    assert "3 of 3 tries left" in text.stdout
    data = json.loads(bifente("cps", "info", "--json").stdout)
    assert data["specialty"] == "SM59" and data["pin"]["tries_left"] == 3


def test_blocked_card_is_shown_blocked(cps) -> None:
    cps("blocked")
    assert "BLOCKED" in bifente("cps", "info").stdout


def test_no_card_is_one_clear_line(slots) -> None:
    result = bifente("vitale", "read")
    assert result.returncode == 3
    assert result.stderr.startswith("bifente: no Vitale card found")
    assert len(result.stderr.strip().splitlines()) == 1


def test_unknown_reader_is_one_clear_line(cps) -> None:
    cps("gp")
    result = bifente("cps", "info", "--reader", "Nope")
    assert result.returncode == 3 and "no reader 'Nope'" in result.stderr


def test_sim_cards_command_inserts_and_removes(pcscd) -> None:
    process = subprocess.Popen([sys.executable, "-m", "bifente.edged.cli.main",
                                "sim", "cards", "--cps",
                                "nurse", "--vitale", "adult"], stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        lines = []
        while not (lines and lines[-1].startswith("ready.")):
            lines.append(process.stdout.readline())
        assert "profile 'nurse'" in "".join(lines)
        info = bifente("cps", "info", "--json")
        assert json.loads(info.stdout)["profession"] == "60"
        process.stdin.write("remove cps\n")
        process.stdin.flush()
        assert process.stdout.readline().strip() == "slot 0: removed"
        assert bifente("cps", "info").returncode == 3
        process.stdin.write("insert 0 cps pharmacist\n")
        process.stdin.flush()
        assert "inserted cps 'pharmacist'" in process.stdout.readline()
        assert json.loads(bifente("cps", "info", "--json").stdout)["profession"] == "21"
        process.stdin.write("quit\n")
        process.stdin.flush()
        assert process.wait(timeout=15) == 0
    finally:
        if process.poll() is None:
            process.kill()
