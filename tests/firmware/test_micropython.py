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
import time
from pathlib import Path

import pytest

from tests.needs import missing

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
    "t_t1": 19,
    "t_pinentry": 13,
    "t_keypad": 7,
    "t_display": 4,
    "t_terminal": 26,
    "t_policy": 9,
    "t_screens": 14,
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
        missing(f"`{name}` not found (make setup installs the firmware toolchain)")
    return str(found)



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


def _read_exactly(fd: int, n: int, timeout: float) -> bytes:
    """n bytes from fd, or fewer if timeout seconds pass first."""
    import select

    out = b""
    deadline = time.monotonic() + timeout
    while len(out) < n:
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            break
        chunk = os.read(fd, n - len(out))
        if not chunk:
            break
        out += chunk
    return out


def test_short_frame_answered_on_an_open_pipe(mpy_build: Path) -> None:
    # docs/terminal.md, "Limits" (fixed): a bare-metal readinto(buf) waits for len(buf) bytes.
    # StreamPort must answer an 11-byte HELLO arriving on a blocking pipe that stays open (no
    # EOF, no more bytes), as on the Pico's USB CDC, and then a HELLO split in two writes.
    import json

    micropython = _tool("micropython")
    frames = {f["name"]: bytes.fromhex(f["hex"])
              for f in json.loads((ROOT / "docs" / "link-vectors.json").read_text())["frames"]}
    hello, ack = frames["hello_1"], frames["hello_ack"]
    assert len(hello) == 11
    env = dict(os.environ, MICROPYPATH=f".frozen:{mpy_build}")
    proc = subprocess.Popen([micropython, "-X", f"heapsize={HEAP}", "-m", "stdio_board"],
                            cwd=ROOT, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, bufsize=0)
    assert proc.stdin is not None and proc.stdout is not None
    try:
        os.set_blocking(proc.stdin.fileno(), True)
        proc.stdin.write(hello)
        got = _read_exactly(proc.stdout.fileno(), len(ack), 5.0)
        assert got == ack, f"HELLO not answered while the pipe stays open: {got.hex()}"
        proc.stdin.write(hello[:4])
        time.sleep(0.1)
        proc.stdin.write(hello[4:])
        got = _read_exactly(proc.stdout.fileno(), len(ack), 5.0)
        assert got == ack, f"split HELLO not answered: {got.hex()}"
        assert proc.poll() is None
        proc.stdin.close()  # EOF: the port reads 0 and the terminal returns
        assert proc.wait(timeout=10) == 0, proc.stderr.read() if proc.stderr else ""
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


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
        missing(f"{WASM_PKG.relative_to(ROOT)} missing (make setup runs npm ci in firmware/tools)")
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
    assert {"link", "iso7816", "slot", "t1", "pinentry", "keypad", "display", "main", "slot_hw",
            "board",
            "terminal", "port", "pinmap"} <= names


def test_firmware_typechecks_against_rp2_stubs() -> None:
    if not (ROOT / "typings" / "rp2").is_dir():
        missing("typings/ has no RP2040 stubs (make setup installs micropython-rp2-stubs)")
    try:
        import mypy  # noqa: F401
    except ImportError:
        missing("mypy is not installed (make setup installs it)")
    result = subprocess.run([sys.executable, "-m", "mypy", "--config-file",
                             str(FIRMWARE / "tools" / "mypy.ini"), "firmware"], cwd=ROOT,
                            capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues found in" in result.stdout, result.stdout


def test_virtual_board_typechecks_against_micropython_stubs() -> None:
    """The virtual terminal's board runs on the MicroPython unix port beside the firmware
    modules it imports: it is checked as they are, against the same stubs."""
    if not (ROOT / "typings" / "rp2").is_dir():
        missing("typings/ has no RP2040 stubs (make setup installs micropython-rp2-stubs)")
    try:
        import mypy  # noqa: F401
    except ImportError:
        missing("mypy is not installed (make setup installs it)")
    board = ROOT / "simulators" / "terminal" / "mp"
    result = subprocess.run([sys.executable, "-m", "mypy", "--config-file",
                             str(FIRMWARE / "tools" / "mypy.ini"), "-m", "sim_board"], cwd=ROOT,
                            env=dict(os.environ, MYPYPATH=str(board)), capture_output=True,
                            text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues found in 1 source file" in result.stdout, result.stdout
