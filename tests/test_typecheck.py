"""Host code is type-checked: mypy over `apdu/`, `contracts/` and the client SDK
(`sdk/python/bifente_client`) strict, and over `edged/` and `simulators/` with the project's
settings (pyproject [tool.mypy])."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _mypy(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "mypy", "--no-error-summary", *args],
                          cwd=ROOT, capture_output=True, text=True, timeout=600, check=False)


def test_apdu_is_strictly_typed() -> None:
    """The card stack and the shared contracts, the floors the rest builds on, pass --strict."""
    result = _mypy("apdu", "contracts")
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_client_sdk_is_strictly_typed() -> None:
    """The client SDK, which integrators type-check their code against (it ships py.typed),
    passes --strict (pyproject's override; mypy_path finds it in sdk/python)."""
    result = _mypy("-p", "bifente_client")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "'bifente_client.*'" not in result.stderr  # the strict override did apply


def test_edged_is_typed() -> None:
    """The daemon, its API, services, readers, state and CLI pass mypy (pyproject lists the
    modules still waiting for their split)."""
    result = _mypy("edged")
    assert result.returncode == 0, result.stdout + result.stderr


def test_simulators_are_typed() -> None:
    """The simulators (cards, terminal, mail and DMP hosts, the test helpers) pass mypy with
    the project's settings; the board that runs on MicroPython is checked with the firmware."""
    result = _mypy("simulators")
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_type_check_can_fail(tmp_path: Path) -> None:
    """The gate is not vacuous: a wrongly typed module under the same settings is refused."""
    bad = tmp_path / "bad.py"
    bad.write_text("def f(x: int) -> str:\n    return x\n")
    result = _mypy("--strict", str(bad))
    assert result.returncode == 1
    assert "Incompatible return value type" in result.stdout
