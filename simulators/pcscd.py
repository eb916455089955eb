"""Start pcscd when it is not running, so simulated cards in vpcd are reachable over PC/SC."""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

from bifente.apdu.errors import TransportError
from bifente.apdu.pcsc import list_readers

__all__ = ["VPCD_READERS", "PcscdError", "PcscdHandle", "ensure_pcscd", "spawn_reaped"]

log = logging.getLogger(__name__)
VPCD_READERS = ("Virtual PCD 00 00", "Virtual PCD 00 01")
SOCKET = Path("/run/pcscd/pcscd.comm")


class PcscdError(RuntimeError):
    """pcscd is missing, cannot start, or has no vpcd readers."""


class PcscdHandle:
    """pcscd as found or started; `stop()` only stops what we started."""

    def __init__(self, process: subprocess.Popen[bytes] | None) -> None:
        self.process = process

    @property
    def started_here(self) -> bool:
        """True when this process started pcscd."""
        return self.process is not None

    def stop(self) -> None:
        """SIGTERM the pcscd we started and wait for it (close PC/SC connections first)."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None


def spawn_reaped(argv: list[str], **kwargs: Any) -> subprocess.Popen[bytes]:
    """Start a child and reap it the moment it exits, whoever ends it.

    A pcscd killed from outside stayed a zombie of ours: its PID stayed "alive", and the next
    pcscd refused to start ("Another pcscd seems to be running"), so `edged --simulate-pcsc`
    could never recover (D9 of the reliability review).
    """
    process = subprocess.Popen(argv, **kwargs)
    threading.Thread(target=process.wait, name=f"reap-{process.pid}", daemon=True).start()
    return process


def _vpcd_readers() -> list[str]:
    try:
        return [r for r in list_readers() if r.startswith("Virtual PCD")]
    except TransportError:
        return []


def ensure_pcscd(timeout: float = 10.0, log_path: Path | None = None) -> PcscdHandle:
    """Return once pcscd answers with both vpcd readers, starting `pcscd -f` if needed."""
    if len(_vpcd_readers()) >= 2:
        return PcscdHandle(None)
    binary = shutil.which("pcscd") or ("/usr/sbin/pcscd" if Path("/usr/sbin/pcscd").exists()
                                       else None)
    if binary is None:
        raise PcscdError("pcscd is not installed (apt-get install pcscd vsmartcard-vpcd)")
    if not Path("/etc/reader.conf.d/vpcd").exists():
        raise PcscdError("vpcd is not configured (apt-get install vsmartcard-vpcd)")
    if os.geteuid() != 0:
        raise PcscdError("pcscd is not running and only root can start it: "
                         "run `sudo pcscd` or start the pcscd service")
    running = subprocess.run(["pgrep", "-x", "pcscd"], capture_output=True, check=False)
    if running.returncode == 0:
        # A pcscd is running without vpcd readers (or is stuck): give it a moment.
        return _wait(PcscdHandle(None), timeout)
    out = open(log_path, "ab") if log_path else subprocess.DEVNULL  # noqa: SIM115
    process = spawn_reaped([binary, "-f"], stdout=out, stderr=out)
    log.info("started pcscd (pid %d)", process.pid)
    return _wait(PcscdHandle(process), timeout)


def _wait(handle: PcscdHandle, timeout: float) -> PcscdHandle:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if handle.process is not None and handle.process.poll() is not None:
            raise PcscdError(f"pcscd exited with code {handle.process.returncode}")
        if len(_vpcd_readers()) >= 2:
            return handle
        time.sleep(0.05)
    handle.stop()
    raise PcscdError(f"pcscd did not list the vpcd readers within {timeout:.0f} s")
