"""The short fuzz run of `make test`: each harness for a few thousand inputs, no finding."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import atheris  # noqa: F401 - make setup installs it (dev extra): missing fails, never skips
import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
from fuzz.run import HARNESSES  # noqa: E402

# Enough inputs to leave the seeds and exercise the mutators on every harness; the long run
# (docs/reliability.md) is `make fuzz`.
RUNS = int(os.environ.get("BIFENTE_FUZZ_SHORT_RUNS", "2000"))


@pytest.mark.parametrize("harness", HARNESSES)
def test_harness_short_run_finds_nothing(harness: str, tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "fuzz.run", "--runs", str(RUNS),
                           "--seconds", "60", "--only", harness, "--workdir", str(tmp_path)],
                          cwd=ROOT, capture_output=True, text=True, timeout=110, check=False)
    lines = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    assert lines, proc.stderr[-2000:]
    result = lines[-1]
    log = Path(result["log"]).read_text(encoding="utf-8")[-3000:]
    assert result["exit"] == 0 and not result["findings"], log
    assert result["inputs"] >= RUNS
