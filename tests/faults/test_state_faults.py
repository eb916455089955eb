"""edged started on a broken state directory: one line naming the file, exit 1, nothing lost.

Real processes on real file systems: a tmpfs mounted read-only or filled to the last byte
(this needs root, as CI and the development machines have), and files corrupted on disk.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.needs import tmpfs

ROOT = Path(__file__).resolve().parents[2]
CONFIG = '[server]\nhost = "127.0.0.1"\nport = 0\n[state]\nstate_dir = "{state}"\n' \
         "[cards]\npcsc = false\n"


def run_edged(tmp: Path, state: Path, *, until_ready: bool = False) -> tuple[int, str]:
    """Start edged on `state`; when it comes up, SIGTERM it. (exit status, stderr)."""
    config = tmp / "edged.toml"
    config.write_text(CONFIG.format(state=state))
    # The state key (edged/state/keywrap.py) stays beside, never inside, the state directory.
    env = dict(os.environ, PYTHONPATH=str(ROOT), BIFENTE_STATE_KEY_FILE=str(tmp / "state.key"))
    process = subprocess.Popen([sys.executable, "-m", "bifente.edged", "--config", str(config),
                                "--no-mdns"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, env=env)
    line = process.stdout.readline()  # type: ignore[union-attr]
    if re.search(r"fingerprint sha256:", line):
        process.send_signal(signal.SIGTERM)
    _out, err = process.communicate(timeout=60)
    if until_ready:
        assert process.returncode == 0, err
    return process.returncode, err


def fill(fs: Path) -> None:
    """Write until the file system refuses another byte."""
    fd = os.open(fs / "filler", os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        for size in (65536, 4096, 1):
            with contextlib.suppress(OSError):
                while True:
                    os.write(fd, b"\0" * size)
    finally:
        os.close(fd)


def one_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert "Traceback" not in err, err
    return lines[-1]


def snapshot(state: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(state.iterdir())
            if p.is_file() and not p.name.endswith(("-wal", "-shm", ".lock"))}


@pytest.mark.parametrize("populated", [False, True])
def test_read_only_state_dir(tmp_path: Path, populated: bool) -> None:
    with tmpfs(tmp_path / "fs") as fs:
        state = fs / "state"
        if populated:
            run_edged(tmp_path, state, until_ready=True)
        else:
            state.mkdir()
        before = snapshot(state)
        subprocess.run(["mount", "-o", "remount,ro", str(fs)], check=True)
        code, err = run_edged(tmp_path, state)
        assert code == 1
        line = one_line(err)
        assert str(state) in line and "Read-only file system" in line, line
        assert snapshot(state) == before


@pytest.mark.parametrize("populated", [False, True])
def test_full_disk_at_start(tmp_path: Path, populated: bool) -> None:
    with tmpfs(tmp_path / "fs", size="2m") as fs:
        state = fs / "state"
        if populated:
            run_edged(tmp_path, state, until_ready=True)
        before = snapshot(state) if populated else {}
        fill(fs)
        code, err = run_edged(tmp_path, state)
        assert code == 1
        line = one_line(err)
        assert line.startswith("edged: ") and str(state) in line, line
        assert re.search(r"full|No space left", line), line
        (fs / "filler").unlink()
        if populated:
            for name, data in before.items():  # the audit chain may only have grown
                assert (state / name).read_bytes()[:len(data)] == data or name.endswith(".db")
            run_edged(tmp_path, state, until_ready=True)  # space back: it starts again
            from bifente.edged.state.audit import AuditLog, read_anchor_key
            from bifente.edged.state.keywrap import load_key_wrapper

            wrapper = load_key_wrapper(state, str(tmp_path / "state.key"), create=False)
            key = read_anchor_key(state / "audit.key", wrapper)
            with AuditLog(state / "audit.db", readonly=True, anchor_key=key) as log:
                report = log.verify()
            assert report.ok, report.reason


@pytest.mark.parametrize("name", ["clients.db", "audit.db"])
@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_corrupted_state_file_is_named_and_left_alone(tmp_path: Path, name: str,
                                                      damage: str) -> None:
    state = tmp_path / "state"
    run_edged(tmp_path, state, until_ready=True)
    target = state / name
    data = target.read_bytes()
    broken = (b"this is not a database" * 200 if damage == "garbage"
              else data[:len(data) // 3])
    for extra in ("-wal", "-shm"):
        with contextlib.suppress(FileNotFoundError):
            (state / (name + extra)).unlink()
    target.write_bytes(broken)
    code, err = run_edged(tmp_path, state)
    assert code == 1, err
    line = one_line(err)
    assert str(target) in line, line
    assert target.read_bytes() == broken  # nothing overwritten: the evidence stays
