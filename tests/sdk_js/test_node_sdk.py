"""The TypeScript SDK in Node (`node --test`) against a real `edged --simulate`."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.sdk_js.jsrun import Edged, run_node


@pytest.mark.timeout(360)
def test_node_sdk_against_edged(js_build: Path, edged_sim: Edged, tmp_path: Path) -> None:
    clients = tmp_path / "clients"
    run = run_node(js_build, "test/node/*.test.js", {
        "EDGED_HOST": edged_sim.host, "EDGED_PORT": str(edged_sim.port),
        "EDGED_FINGERPRINT": edged_sim.fingerprint, "EDGED_CONTROL": edged_sim.control,
        "BIFENTE_CLIENT_DIR": str(clients)})
    assert run.returncode == 0 and run.failed == 0, run.output[-6000:]
    assert run.passed == 11, run.output[-6000:]
    # The Python CLI uses the pairing the Node SDK saved: one credentials format.
    status = subprocess.run([sys.executable, "-m", "bifente.edged.cli.main", "status", "--json"],
                            env={"BIFENTE_CLIENT_DIR": str(clients), "PATH": "/usr/bin:/bin",
                                 "PYTHONPATH": str(Path(__file__).resolve().parents[2])},
                            capture_output=True, text=True, timeout=60, check=False)
    assert status.returncode == 0, status.stderr
    assert json.loads(status.stdout)["system"]["fingerprint"] == edged_sim.fingerprint


def test_generated_types_are_up_to_date(js_build: Path) -> None:
    run = run_node(js_build, "test/unit/*.test.js", {})
    assert run.returncode == 0 and run.failed == 0, run.output[-6000:]
    assert run.passed >= 1, run.output[-6000:]
