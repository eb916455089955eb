"""Host code is type-checked under the names it installs with: mypy over `bifente.apdu`,
`bifente.contracts` and the client SDK (`bifente.client`) strict, and over `bifente.edged` and
`bifente.simulators` with the project's settings (pyproject [tool.mypy]). tools/typecheck.py
lays the namespace out for mypy, which does not follow an editable install's import hooks."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _mypy(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "tools/typecheck.py", "--no-error-summary", *args],
                          cwd=ROOT, capture_output=True, text=True, timeout=900, check=False)


def test_apdu_is_strictly_typed() -> None:
    """The card stack and the shared contracts, the floors the rest builds on, pass --strict."""
    result = _mypy("--package", "bifente.apdu", "--package", "bifente.contracts")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "'bifente.apdu.*'" not in result.stderr  # the strict override did apply


def test_the_client_sdk_is_strictly_typed() -> None:
    """The client SDK, which integrators type-check their code against (it ships py.typed),
    passes --strict (pyproject's override; mypy_path finds it in sdk/python)."""
    result = _mypy("--package", "bifente.client")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "'bifente.client.*'" not in result.stderr  # the strict override did apply


def test_edged_is_typed() -> None:
    """The daemon, its API, services, readers, state and CLI pass mypy."""
    result = _mypy("--package", "bifente.edged")
    assert result.returncode == 0, result.stdout + result.stderr


def test_simulators_are_typed() -> None:
    """The simulators (cards, terminal, mail and DMP hosts, the test helpers) pass mypy with
    the project's settings; the board that runs on MicroPython is checked with the firmware."""
    result = _mypy("--package", "bifente.simulators")
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_type_check_can_fail(tmp_path: Path) -> None:
    """The gate is not vacuous: a wrongly typed module under the same settings is refused."""
    bad = tmp_path / "bad.py"
    bad.write_text("def f(x: int) -> str:\n    return x\n")
    result = _mypy("--strict", str(bad))
    assert result.returncode == 1
    assert "Incompatible return value type" in result.stdout


def test_a_layer_s_error_is_reported_under_its_folder(tmp_path: Path) -> None:
    """An error in a layer reached through the namespace names the checkout's file, and the
    namespace's imports resolve (a wrong call into bifente.apdu is caught)."""
    bad = tmp_path / "uses_apdu.py"
    bad.write_text("from bifente.apdu.tlv import encode_length\nencode_length(\"3\")\n")
    result = _mypy(str(bad))
    assert result.returncode == 1, result.stdout + result.stderr
    assert "uses_apdu.py:2: error" in result.stdout
    assert "build/namespace" not in result.stdout
