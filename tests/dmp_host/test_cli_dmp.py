"""`bifente sim dmp`: the host as a process, enrollment over HTTP with the admin token, SIGTERM."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
from pathlib import Path

from bifente.simulators.dmp.testing import ConsentSigner, DmpClient, test_nir


def test_bifente_sim_dmp_serves_until_sigterm(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "bifente.edged.cli.main",
         "-v", "sim", "dmp", "--data", str(tmp_path),
         "--port", "0", "--admin-token", "admin-secret", "--test-mode"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        url = cafile = ""
        for line in proc.stdout:
            if m := re.match(r"reference DMP host \(TEST\) on (https://\S+)", line):
                url = m.group(1)
            if line.startswith("trust: "):
                cafile = line.removeprefix("trust: ").strip()
            if line.startswith("TEST MODE"):
                break
        assert url and cafile, "the host did not announce itself"
        client = DmpClient(url, Path(cafile))
        assert client.get("/api/health").json()["test_mode"] is True
        signer = ConsentSigner("cli-terminal")
        r = client.post("/api/admin/devices", {"device": "cli-terminal",
                                               "public_key": signer.public_pem},
                        token="wrong")
        assert r.reason == "admin_required"
        r = client.post("/api/admin/devices", {"device": "cli-terminal",
                                               "public_key": signer.public_pem},
                        token="admin-secret")
        assert r.status == 201
        ins = test_nir(4242)
        assert client.get(f"/api/dmp/{ins}").reason == "unauthenticated"
        assert client.get(f"/api/test/last-code?ins={ins}").reason == "not_found"
        client.close()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
        assert (tmp_path / "dmp.sqlite3").exists() and (tmp_path / "tls" / "host.key.pem").exists()
        log = proc.stderr.read() if proc.stderr else ""
        assert "GET /api/dmp/{ins} -> 401" in log  # the route pattern, never the path
        assert ins not in log and ins[:13] not in log and "admin-secret" not in log
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
