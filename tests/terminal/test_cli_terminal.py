"""`bifente sim terminal | press | screen | insert | remove` and `--reader terminal:PATH`,
each a real process, against one `bifente sim terminal` process for the module."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

ENV_STATE = "BIFENTE_SIM_TERMINAL"


def bifente(*args: str, env: dict[str, str] | None = None,
            timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "bifente.edged.cli.main",
                           *args], capture_output=True,
                          text=True, timeout=timeout, check=False, env=env)


class SimProcess:
    """A running `bifente sim terminal` and what it printed."""

    def __init__(self, proc: subprocess.Popen[str], env: dict[str, str], state: Path) -> None:
        self.proc = proc
        self.env = env
        self.state = state
        self.lines: list[str] = []
        self.pty = ""
        self.control = ""

    def wait_ready(self, timeout: float = 30.0) -> None:
        assert self.proc.stdout is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                break
            self.lines.append(line.rstrip())
            if line.startswith("pty: "):
                self.pty = line.split(": ", 1)[1].strip()
            elif line.startswith("control: "):
                self.control = line.split(": ", 1)[1].strip()
            elif line.startswith("ready."):
                return
        stderr = ""
        if self.proc.poll() is not None and self.proc.stderr is not None:
            stderr = self.proc.stderr.read()
        raise AssertionError(f"no 'ready.' line: {self.lines} {stderr}")

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return bifente(*args, env=self.env)


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory, firmware_tools: None) -> Iterator[SimProcess]:
    state = tmp_path_factory.mktemp("sim") / "terminal.json"
    env = dict(os.environ, **{ENV_STATE: str(state)})
    proc = subprocess.Popen([sys.executable, "-m", "bifente.edged.cli.main", "sim", "terminal"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    running = SimProcess(proc, env, state)
    try:
        running.wait_ready()
        yield running
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def in_background(sim: SimProcess, *args: str) -> Callable[[], subprocess.CompletedProcess[str]]:
    """Start a bifente command; the returned function waits for it."""
    proc = subprocess.Popen([sys.executable, "-m", "bifente.edged.cli.main", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=sim.env)

    def finish() -> subprocess.CompletedProcess[str]:
        out, err = proc.communicate(timeout=60)
        return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)

    return finish


def test_sim_terminal_prints_its_addresses_and_writes_the_state_file(sim: SimProcess) -> None:
    assert sim.pty.startswith("/dev/") and Path(sim.pty).exists()
    assert sim.control.startswith("unix:")
    state = json.loads(sim.state.read_text())
    assert state["pty"] == sim.pty and state["control"] == sim.control
    assert "slot 0: Cps3Card profile 'gp'" in sim.lines
    screen = sim.run("sim", "screen")
    assert screen.returncode == 0, screen.stderr
    assert screen.stdout.split("\n")[:2] == ["bifente", "pret"]


def test_cps_info_and_vitale_read_through_the_terminal(sim: SimProcess) -> None:
    info = sim.run("cps", "info", "--reader", f"terminal:{sim.pty}")
    assert info.returncode == 0, info.stderr
    assert "MARTIN" in info.stdout and "3 of 3 tries left" in info.stdout
    read = sim.run("vitale", "read", "--reader", f"terminal:{sim.pty}", "--json")
    assert read.returncode == 0, read.stderr
    assert len(json.loads(read.stdout)["beneficiaries"]) == 4
    # The local --json has the API's shapes: one parser for both paths.
    from bifente.client.contract import check_result

    check_result("vitale.read", json.loads(read.stdout))
    info = sim.run("cps", "info", "--reader", f"terminal:{sim.pty}", "--json")
    assert info.returncode == 0, info.stderr
    check_result("cps.info", json.loads(info.stdout))


def test_cps_verify_asks_on_the_terminal(sim: SimProcess) -> None:
    reader = f"terminal:{sim.pty}"
    for keys, out, code in ((["9999", "OK"], "wrong (2 tries left)", 4),
                            (["1234", "OK"], "ok", 0), (["12", "CANCEL"], "cancelled", 4)):
        verify = in_background(sim, "cps", "verify", "--reader", reader)
        pressed = sim.run("sim", "press", *keys)
        assert pressed.returncode == 0, pressed.stderr
        result = verify()
        assert result.stdout.strip().splitlines()[-1] == out, result
        assert result.returncode == code, result.stderr
    screen = sim.run("sim", "screen", "--json")
    assert json.loads(screen.stdout) == ["Annule"]


def test_remove_and_insert_cards(sim: SimProcess) -> None:
    assert sim.run("sim", "remove", "vitale").returncode == 0
    gone = sim.run("vitale", "read", "--reader", f"terminal:{sim.pty}")
    assert gone.returncode == 3
    assert gone.stderr.strip() == f"bifente: no card in terminal slot 1 ({sim.pty})"
    inserted = sim.run("sim", "insert", "1", "--profile", "adult")
    assert inserted.returncode == 0, inserted.stderr
    read = sim.run("vitale", "read", "--reader", f"terminal:{sim.pty}", "--json")
    assert read.returncode == 0, read.stderr
    assert len(json.loads(read.stdout)["beneficiaries"]) == 1


def test_bad_keys_and_no_terminal_are_one_line(sim: SimProcess, tmp_path: Path) -> None:
    bad = sim.run("sim", "press", "ENTER")
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1, bad.stderr
    assert "no key 'ENTER'" in bad.stderr
    none = bifente("sim", "screen", env=dict(os.environ, **{ENV_STATE: str(tmp_path / "x")}))
    assert none.returncode == 1
    assert none.stderr == "bifente: no virtual terminal is running (start `bifente sim " \
                          "terminal`)\n"


def test_f1_shows_the_fingerprint_screen_at_once(sim: SimProcess) -> None:
    # docs/terminal.md: F1 acts while no prompt runs, so `sim press F1` does not wait for one.
    started = time.monotonic()
    done = sim.run("sim", "press", "F1")
    assert done.returncode == 0, done.stderr
    assert time.monotonic() - started < 8  # not the 10 s wait for a prompt
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        screen = json.loads(sim.run("sim", "screen", "--json").stdout)
        if screen[0] == "Empreinte":
            break
        time.sleep(0.1)
    assert screen[:2] == ["Empreinte", "inconnue"], screen  # no edged behind this terminal
    assert sim.run("sim", "press", "OK", "--wait", "0").returncode == 0  # OK closes it


@pytest.mark.pcsc
def test_cps_verify_refuses_a_pcsc_reader_without_pin_pad(cps) -> None:  # type: ignore[no-untyped-def]
    cps("gp")
    result = bifente("cps", "verify")
    assert result.returncode == 4
    assert result.stderr == ("bifente: this reader has no PIN pad: the PIN is typed on a "
                             "terminal keypad (--reader terminal:PATH), never on the "
                             "computer\n")
    assert "type the PIN" not in result.stdout


def test_cps_unblock_with_the_puk_on_the_keypad(sim: SimProcess) -> None:
    reader = f"terminal:{sim.pty}"
    assert sim.run("sim", "insert", "0", "--profile", "blocked").returncode == 0
    info = sim.run("cps", "info", "--reader", reader)
    assert "BLOCKED" in info.stdout and "WARNING: the PIN is blocked" in info.stdout
    unblock = in_background(sim, "cps", "unblock", "--reader", reader)
    pressed = sim.run("sim", "press", "12345678", "OK", "1234", "OK", "1234", "OK")
    assert pressed.returncode == 0, pressed.stderr
    result = unblock()
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "PIN unblocked: the new PIN is set"
    assert "3 of 3 tries left" in sim.run("cps", "info", "--reader", reader).stdout
    assert sim.run("sim", "insert", "0", "--profile", "gp").returncode == 0


def test_edged_simulate_writes_the_state_file_for_sim_commands(tmp_path: Path,
                                                               firmware_tools: None) -> None:
    state = tmp_path / "terminal.json"
    env = dict(os.environ, **{ENV_STATE: str(state)})
    proc = subprocess.Popen([sys.executable, "-m", "bifente.edged",
                             "--simulate", "--no-mdns", "--port",
                             "0", "--state-dir", str(tmp_path / "state")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            if line.startswith("edged "):
                break
        else:
            raise AssertionError(proc.stderr.read() if proc.stderr else "edged stopped")
        screen = bifente("sim", "screen", env=env)
        assert screen.returncode == 0, screen.stderr
        assert screen.stdout.split("\n")[:2] == ["bifente", "pret"]
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
    assert not state.exists()
