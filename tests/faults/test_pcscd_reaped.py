"""D9: a pcscd we started and someone killed is reaped at once, so a new one can start."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

from bifente.simulators.pcscd import spawn_reaped


def _state(pid: int) -> str | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return None
    return stat.rsplit(")", 1)[1].split()[0]


def test_a_killed_child_does_not_stay_a_zombie() -> None:
    process = spawn_reaped(["sleep", "60"], stdout=subprocess.DEVNULL)
    assert _state(process.pid) in ("S", "R", "D")  # alive (D: waiting on the disk)
    os.kill(process.pid, signal.SIGKILL)  # killed from outside, as a test or an admin does
    for _ in range(200):
        if _state(process.pid) is None:
            break
        time.sleep(0.01)
    assert _state(process.pid) is None  # reaped: no Z entry holding the PID
    assert process.returncode == -signal.SIGKILL


def test_stop_still_works_on_a_reaped_child() -> None:
    from bifente.simulators.pcscd import PcscdHandle

    process = spawn_reaped(["sleep", "60"], stdout=subprocess.DEVNULL)
    handle = PcscdHandle(process)  # type: ignore[arg-type]
    handle.stop()
    assert process.returncode == -signal.SIGTERM and _state(process.pid) is None
