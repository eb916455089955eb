"""The front desk through the daemon: `bifente --remote NAME ...`, warnings, `--json`."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

import pytest

from bifente.simulators.cps3 import Cps3Card
from bifente.simulators.vitale import Vitale2Card

pytestmark = [pytest.mark.asyncio, pytest.mark.pcsc]
ROOT = Path(__file__).resolve().parents[2]


async def bifente(clients: Path, *argv: str) -> tuple[int, str, str]:
    """The CLI as a process (asynchronously: the daemon runs in this test's event loop)."""
    env = {**os.environ, "BIFENTE_CLIENT_DIR": str(clients), "PYTHONPATH": str(ROOT)}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bifente.edged.cli.main", *argv, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert b"Traceback" not in err, err.decode()
    return proc.returncode or 0, out.decode(), err.decode()


async def desk(edged, slots, tmp_path: Path, cps: str, vitale: str):
    await asyncio.to_thread(slots.insert, 0, Cps3Card(cps))
    await asyncio.to_thread(slots.insert, 1, Vitale2Card(vitale))
    bench = await edged(pcsc=True)
    for _ in range(250):
        if bench.daemon.slots.find("cps") and bench.daemon.slots.find("vitale"):
            break
        await asyncio.sleep(0.02)
    credentials = await bench.pair("Front desk", "identity:read", "cps:sign")
    credentials.save(tmp_path / "clients")
    return bench


async def test_vitale_read_and_cps_info_through_the_daemon(edged, slots, pcscd,
                                                           tmp_path: Path) -> None:
    await desk(edged, slots, tmp_path, "gp", "family")
    clients = tmp_path / "clients"
    rc, out, _ = await bifente(clients, "--remote", "Front desk", "vitale", "read")
    assert rc == 0 and "Pierre LEFEBVRE, insured" in out and "WARNING" not in out
    rc, out, _ = await bifente(clients, "--json", "--remote", "front desk", "vitale", "read")
    assert rc == 0 and json.loads(out)["beneficiaries"][0]["first_name"] == "Pierre"
    rc, out, _ = await bifente(clients, "--remote", "Front desk", "cps", "info")
    assert rc == 0 and "Dr Claire MARTIN" in out and "certificate valid until" in out
    # A command without a JSON form of its own: JSON Lines, the refusal as an error object.
    rc, out, err = await bifente(clients, "--json", "dmp", "exists", "178027505601209")
    assert rc == 1 and "missing_scope" in err
    lines = [json.loads(line) for line in out.splitlines()]
    assert lines[-1]["error"]["reason"] == "missing_scope"
    assert lines[-1]["error"]["exit_code"] == 1
    rc, out, _ = await bifente(clients, "--json", "clients", "list", "--target", "Front desk")
    assert rc == 1  # identity:read only: the terminal refuses (missing_scope), as JSON
    assert json.loads(out.splitlines()[-1])["error"]["reason"] == "missing_scope"


async def test_json_lines_for_a_command_without_its_own_json(edged, tmp_path: Path) -> None:
    bench = await edged()
    admin = await bench.pair("Admin desk", "admin")
    admin.save(tmp_path / "clients")
    await bench.pair("Spare", "identity:read")
    rc, out, _ = await bifente(tmp_path / "clients", "clients", "revoke", "Spare", "--json")
    assert rc == 0
    lines = [json.loads(line) for line in out.splitlines()]
    assert {"method": "clients.revoke",
            "result": {"revoked": "Spare", "connections_closed": 0}} in lines
    assert any("line" in line for line in lines)


async def test_expired_rights_and_certificates_are_flagged(edged, slots, pcscd,
                                                           tmp_path: Path) -> None:
    await desk(edged, slots, tmp_path, "expired", "temporary")
    clients = tmp_path / "clients"
    rc, out, _ = await bifente(clients, "--remote", "Front desk", "cps", "info")
    assert rc == 0 and "WARNING: the signature certificate expired" in out
    rc, out, _ = await bifente(clients, "--remote", "Front desk", "vitale", "read")
    assert rc == 0
    from bifente.edged.cli.render import _past

    if _past("20260115"):  # the temporary profile's rights end on 2026-01-15
        assert "(droits expirés)" in out and "(carte expirée)" in out


async def test_pair_asks_again_lists_refuses_overwrite_and_self_revoke(edged,
                                                                     tmp_path: Path) -> None:
    bench = await edged()
    clients = tmp_path / "clients"
    target = f"127.0.0.1:{bench.port}#sha256:{bench.fingerprint}"
    env = {**os.environ, "BIFENTE_CLIENT_DIR": str(clients), "PYTHONPATH": str(ROOT)}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bifente.edged.cli.main", "pair", target, "--name", "Admin desk",
        "--scope", "identity:read", env=env, stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    assert proc.stdin is not None
    for _ in range(200):
        if "Code:" in bench.display.screen():
            break
        await asyncio.sleep(0.05)
    right = bench.code_on_display()
    wrong = f"{(int(right) + 1) % 1_000_000:06d}"
    proc.stdin.write(f"12345\n{wrong}\n{right[:3]} {right[3:]}\n".encode())
    await proc.stdin.drain()
    _out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err.decode()
    assert "the code is 6 digits" in err.decode()
    assert "wrong code: 2 attempt(s) left" in err.decode()

    rc, out_text, _ = await bifente(clients, "pairings", "--json")
    assert rc == 0 and [p["name"] for p in json.loads(out_text)] == ["Admin desk"]
    rc, _, err_text = await bifente(clients, "pair", target, "--code", "000000")
    assert rc == 2 and "already paired with that terminal as 'Admin desk'" in err_text
    rc, _, err_text = await bifente(clients, "clients", "revoke", "admin desk")
    assert rc == 2 and "this computer's own pairing" in err_text
    rc, _, err_text = await bifente(clients, "pair", target, "--scope", "root")
    assert rc == 2 and "invalid choice" in err_text
    rc, out_text, _ = await bifente(clients, "unpair", "Admin desk")
    assert rc == 0 and "forgot the pairing" in out_text
    assert not list(clients.glob("*.json"))
