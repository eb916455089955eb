"""Every command, given bad input, answers with one clear line and a documented exit code.

README.md documents the exit codes: 0 ok, 1 refused or failed, 2 usage (bad argument, file,
profile, port, not paired), 3 no card or reader, 4 PIN, 5 card error, 130 interrupted.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from bifente.edged.cli.main import build_parser

ROOT = Path(__file__).resolve().parents[2]
DOCUMENTED = {1, 2, 3, 4, 5}
INS = "178027505601209"


def _leaves(parser: argparse.ArgumentParser, prefix: list[str]) -> Iterator[
        tuple[list[str], argparse.ArgumentParser]]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _leaves(sub, [*prefix, name])
            return
    yield prefix, parser


LEAVES = list(_leaves(build_parser(), []))


def _run(argv: list[str], home: Path, program: str = "bifente.edged.cli.main",
         timeout: float = 60) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HOME": str(home), "PYTHONPATH": str(ROOT),
           "BIFENTE_STATE_DIR": str(home / "state"), "XDG_CONFIG_HOME": str(home / ".config")}
    return subprocess.run([sys.executable, "-m", program, *argv], capture_output=True,
                          text=True, timeout=timeout, env=env, cwd=home, check=False)


def _assert_clean(done: subprocess.CompletedProcess[str], argv: list[str]) -> None:
    both = done.stdout + done.stderr
    assert "Traceback" not in both, f"{argv}: a traceback reached the user:\n{both}"
    assert done.returncode in DOCUMENTED, f"{argv}: exit {done.returncode}\n{both}"
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert lines, f"{argv}: failed silently"
    last = lines[-1]
    assert last.startswith(("bifente", "edged")), f"{argv}: unclear error line {last!r}"
    assert len(last) < 400, f"{argv}: a wall of text: {last!r}"


@pytest.mark.parametrize("command", [" ".join(c) for c, _ in LEAVES])
def test_every_command_has_help_and_refuses_an_unknown_flag(command: str,
                                                            tmp_path: Path) -> None:
    argv = command.split()
    assert _run([*argv, "--help"], tmp_path).returncode == 0
    _assert_clean(_run([*argv, "--no-such-flag"], tmp_path), argv)


def _credentials(home: Path, *, port: int, corrupt: bool = False) -> None:
    folder = home / ".config" / "bifente" / "terminals"
    folder.mkdir(parents=True)
    if corrupt:
        (folder / "0123456789abcdef.json").write_text('{"host": "127.0.0.1"}')
        return
    # A real key and certificate: the connection itself must be what fails.
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "desk")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(1).not_valid_before(now)
            .not_valid_after(now + datetime.timedelta(days=1)).sign(key, hashes.SHA256()))
    (folder / "0123456789abcdef.json").write_text(json.dumps({
        "name": "desk", "host": "127.0.0.1", "port": port,
        "fingerprint": "0123456789abcdef" * 4, "scopes": ["identity:read"],
        "certificate_pem": cert.public_bytes(serialization.Encoding.PEM).decode(),
        "key_pem": key.private_bytes(serialization.Encoding.PEM,
                                     serialization.PrivateFormat.PKCS8,
                                     serialization.NoEncryption()).decode()}))


BAD_INPUTS = [
    ["ins", "garbage"],
    ["ins", INS, "--first-name", "Pierre", "--birth-date", "garbage"],
    ["ins", INS, "--birth-date", "1978-02-14"],
    ["ins", INS, "--first-name", "   ", "--birth-date", "1978-02-14"],
    ["demo", "--cps", "nosuch"],
    ["dmp", "exists", "1 78 02 75 056 012 0"],
    ["vitale", "read", "--reader", "terminal:/nonexistent/tty"],
    ["cps", "info", "--reader", "terminal:/nonexistent/tty"],
    ["status"],
    ["clients", "revoke", "x"],
    ["mail", "send", "--to", "a@cabinet.test", "--subject", "s", "--text", "t",
     "--attach", "/nonexistent/file.pdf"],
    ["dmp", "find", INS],
    ["dmp", "get", INS, "doc", "-o", "/nonexistent/dir/x.xml"],
    ["dmp", "feed", INS, "/nonexistent.xml"],
    ["sim", "press", "1", "--control", "unix:/nonexistent/control.sock"],
    ["sim", "screen", "--control", "unix:/nonexistent/control.sock"],
    ["sim", "terminal", "--heap", "abc"],
    ["sim", "terminal", "--cps", "nosuch"],
    ["sim", "dmp", "--data", "D", "--port", "99999"],
    ["audit", "verify", "--db", "/nonexistent/audit.db"],
    ["proxy", "user", "list", "--db", "/nonexistent/users.db"],
    ["sim", "press", "1", "--wait", "-5"],
    ["discover", "--interface", "192.0.2.77", "--timeout", "1"],
]


@pytest.mark.parametrize("argv", BAD_INPUTS, ids=[" ".join(a) for a in BAD_INPUTS])
def test_bad_inputs_give_one_line(argv: list[str], tmp_path: Path) -> None:
    _assert_clean(_run(argv, tmp_path), argv)


@pytest.mark.parametrize("corrupt", [False, True], ids=["daemon down", "corrupt credentials"])
def test_remote_commands_with_no_daemon_or_bad_credentials(corrupt: bool,
                                                           tmp_path: Path) -> None:
    _credentials(tmp_path, port=1, corrupt=corrupt)
    for argv in (["status"], ["clients", "list"], ["dmp", "queue"], ["mail", "list"],
                 ["--remote", "desk", "vitale", "read"], ["--json", "status"]):
        done = _run(argv, tmp_path)
        _assert_clean(done, argv)
        if not corrupt:
            assert "connection refused" in done.stderr, done.stderr


def test_read_only_listing_creates_nothing(tmp_path: Path) -> None:
    done = _run(["proxy", "--state-dir", str(tmp_path / "state"), "user", "list"], tmp_path)
    assert done.returncode == 0 and done.stdout.strip() == "no proxy users"
    assert not (tmp_path / "state").exists()


def test_version(tmp_path: Path) -> None:
    for program in ("bifente.edged.cli.main", "bifente.edged"):
        done = _run(["--version"], tmp_path, program=program)
        assert done.returncode == 0 and done.stdout.split()[1][0].isdigit(), done


def test_every_command_has_json() -> None:
    for command, parser in LEAVES:
        assert any("--json" in a.option_strings for a in parser._actions), command


EDGED_BAD = [
    ["--simulate", "--cps", "nosuch", "--no-mdns"],
    ["--simulate", "--vitale", "nosuch", "--no-mdns"],
    ["--port", "-5"],
    ["--port", "99999"],
    ["--simulate", "--simulate-pcsc"],
    ["--config", "/nonexistent.toml"],
]


@pytest.mark.parametrize("argv", EDGED_BAD, ids=[" ".join(a) for a in EDGED_BAD])
def test_edged_bad_arguments_give_one_line(argv: list[str], tmp_path: Path) -> None:
    _assert_clean(_run(argv, tmp_path, program="bifente.edged"), argv)


def test_edged_bad_config_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[server\nport = 'x'")
    _assert_clean(_run(["--config", str(bad)], tmp_path, program="bifente.edged"),
                  ["--config", "bad"])
