"""The TypeScript SDK's tests (sdk/js) and docs/integrators.md's Java client, run by pytest.

`js_build` compiles sdk/js with tsc (node_modules comes from `npm ci` in the Makefile's
.stamp-sdk-js step); `edged_sim` starts a real `edged --simulate` (virtual terminal, CPS `gp`,
Vitale `family`) on 127.0.0.1 without mDNS; `run_node` runs `node --test` on compiled test
files with the daemon's coordinates in the environment, and returns the parsed summary.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.needs import missing
from tests.sdk_js.jsrun import Edged

ROOT = Path(__file__).resolve().parents[2]
SDK = ROOT / "sdk" / "js"


def _missing(what: str) -> None:
    missing(f"{what} is missing (make setup installs it)")


@pytest.fixture(scope="session")
def js_build() -> Path:
    """sdk/js compiled into sdk/js/dist (tsc, strict); the path of sdk/js."""
    if shutil.which("node") is None:
        _missing("node")
    tsc = SDK / "node_modules" / "typescript" / "bin" / "tsc"
    if not tsc.exists():
        _missing("sdk/js/node_modules (npm ci)")
    result = subprocess.run(["node", str(tsc), "-p", str(SDK / "tsconfig.json")], cwd=SDK,
                            capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    return SDK


@pytest.fixture(scope="module")
def edged_sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Edged]:
    """edged with the virtual terminal and simulated cards, on 127.0.0.1, no mDNS."""
    tmp = tmp_path_factory.mktemp("edged-js")
    config = tmp / "edged.toml"
    config.write_text(f'[server]\nhost = "127.0.0.1"\nport = 0\n[state]\n'
                      f'state_dir = "{tmp}/state"\n[log]\nlog_level = "warning"\n')
    process = subprocess.Popen(
        [sys.executable, "-m", "bifente.edged", "--simulate", "--no-mdns", "--config", str(config)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        control = None
        while True:
            line = process.stdout.readline()  # type: ignore[union-attr]
            if not line:
                raise AssertionError("edged stopped: " + process.stderr.read()[-3000:])  # type: ignore[union-attr]
            if m := re.search(r"control (\S+)", line):
                control = m.group(1)
            if m := re.search(r":(\d+) fingerprint sha256:([0-9a-f]{64})", line):
                break
        assert control is not None, "edged did not report the virtual terminal's control address"
        yield Edged("127.0.0.1", int(m.group(1)), m.group(2), control, tmp / "state")
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)
