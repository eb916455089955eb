"""The firmware on real MicroPython: unix port (heap capped), WebAssembly port, mpy-cross, mypy.

The MicroPython-side tests live in tests/firmware/mp (run by mp/mptest.py); this file runs them
in subprocesses and fails on any failure or on fewer tests than expected. The toolchain comes
from `make setup` (mk/firmware.mk); without it these tests skip with the reason, except under
CI=true, where a missing tool is a failure.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FIRMWARE = ROOT / "firmware"
HERE = Path(__file__).resolve().parent
MP_DIR = HERE / "mp"
FAKES = HERE / "fakes"
BIN = Path(sys.executable).parent
WASM_PKG = (FIRMWARE / "tools" / "node_modules" / "@micropython"
            / "micropython-webassembly-pyscript" / "micropython.mjs")
HEAP = "192K"  # a Pico's MicroPython heap is about this size

# Tests each MicroPython module must at least run: the suite cannot pass by finding nothing.
MIN_TESTS = {
    "t_link": 13,
    "t_iso7816": 33,
    "t_pinentry": 13,
    "t_keypad": 7,
    "t_display": 4,
    "t_terminal": 21,
    "t_slot_hw": 11,
    "t_heap": 1,
}
WASM_SKIPS = 1  # t_slot_hw's board test: the WebAssembly port has no asyncio streams
CLOSING = re.compile(r"^(\d+) passed, (\d+) failed, (\d+) skipped$", re.MULTILINE)
FIRMWARE_FILES = sorted(FIRMWARE.glob("*.py"))


def _tool(name: str) -> str:
    """Path of a toolchain program, from the venv first; skip (or fail under CI) if absent."""
    found = BIN / name if (BIN / name).exists() else shutil.which(name)
    if not found:
        _missing(f"`{name}` not found (make setup installs the firmware toolchain)")
    return str(found)


def _missing(reason: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"{reason}; CI must run the firmware tests")
    pytest.skip(reason)


def _closing(output: str) -> tuple[int, int]:
    """(passed, failed) from the runner's closing line; fails if there is none."""
    found = CLOSING.findall(output)
    assert found, f"no closing 'N passed, N failed, N skipped' line in:\n{output[-3000:]}"
    passed, failed, _skipped = found[-1]
    return int(passed), int(failed)


@pytest.fixture(scope="module")
def mpy_build(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every firmware, test and fake module compiled to .mpy (as deployed; saves parse heap)."""
    mpy_cross = _tool("mpy-cross")
    out = tmp_path_factory.mktemp("mpy")
    for src in [*FIRMWARE_FILES, *MP_DIR.glob("*.py"), *FAKES.glob("*.py")]:
        result = subprocess.run([mpy_cross, "-o", str(out / (src.stem + ".mpy")), str(src)],
                                capture_output=True, text=True, timeout=60, check=False)
        assert result.returncode == 0, f"{src.name}: {result.stderr}"
    return out


def _run_unix(path: str, args: list[str], heap: str) -> tuple[str, int]:
    micropython = _tool("micropython")
    env = dict(os.environ, MICROPYPATH=f".frozen:{path}")
    result = subprocess.run([micropython, "-X", f"heapsize={heap}", "-m", "run_unix", *args],
                            cwd=ROOT, env=env, capture_output=True, text=True, timeout=600,
                            check=False)
    output = result.stdout + result.stderr
    return output, result.returncode


@pytest.mark.parametrize("module", sorted(MIN_TESTS))
def test_unix_port_heap_capped(module: str, mpy_build: Path) -> None:
    output, code = _run_unix(str(mpy_build), [module], HEAP)
    passed, failed = _closing(output)
    heap = [line for line in output.splitlines() if line.startswith("HEAP")]
    print(f"{module}: {passed} passed under -X heapsize={HEAP}; " + "; ".join(heap))
    assert failed == 0 and code == 0, output[-4000:]
    assert passed >= MIN_TESTS[module], f"{module}: only {passed} tests ran\n{output[-2000:]}"


def test_unix_port_from_source() -> None:
    # The same suite compiled on the device side from .py, all modules in one process.
    path = ":".join(str(p) for p in (FIRMWARE, FAKES, MP_DIR))
    output, code = _run_unix(path, [], "4M")
    passed, failed = _closing(output)
    assert failed == 0 and code == 0, output[-4000:]
    assert passed >= sum(MIN_TESTS.values()), output[-2000:]


def test_webassembly_port() -> None:
    node = _tool("node")
    if not WASM_PKG.exists():
        _missing(f"{WASM_PKG.relative_to(ROOT)} missing (make setup runs npm ci in firmware/tools)")
    result = subprocess.run([node, str(HERE / "run_wasm.mjs"), "192", "300"], cwd=ROOT,
                            capture_output=True, text=True, timeout=400, check=False)
    output = result.stdout + result.stderr
    passed, failed = _closing(output)
    print(f"wasm: {passed} passed")
    assert failed == 0 and result.returncode == 0, output[-4000:]
    assert passed >= sum(MIN_TESTS.values()) - WASM_SKIPS, output[-2000:]


@pytest.mark.parametrize("path", FIRMWARE_FILES, ids=lambda p: p.name)
def test_mpy_cross_armv6m(path: Path) -> None:
    mpy_cross = _tool("mpy-cross")
    result = subprocess.run([mpy_cross, "-march=armv6m", "-o", os.devnull, str(path)],
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr


def test_every_firmware_module_is_checked() -> None:
    names = {p.stem for p in FIRMWARE_FILES}
    assert {"link", "iso7816", "pinentry", "keypad", "display", "main", "slot_hw", "board",
            "terminal", "port", "pinmap"} <= names


def test_firmware_typechecks_against_rp2_stubs() -> None:
    if not (ROOT / "typings" / "rp2").is_dir():
        _missing("typings/ has no RP2040 stubs (make setup installs micropython-rp2-stubs)")
    try:
        import mypy  # noqa: F401
    except ImportError:
        _missing("mypy is not installed (make setup installs it)")
    result = subprocess.run([sys.executable, "-m", "mypy", "--config-file",
                             str(FIRMWARE / "tools" / "mypy.ini"), "firmware"], cwd=ROOT,
                            capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues found in" in result.stdout, result.stdout
