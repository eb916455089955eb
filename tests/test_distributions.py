"""The product, the simulators and the client SDK are separate distributions: a Pi install
gets no test key, a clinic workstation gets the client without the daemon or pyscard.

The three wheels are built for real (setuptools, no network) from a copy of the tracked tree,
and their contents read back; the client's is also unpacked and run with the product's
packages and pyscard made unimportable.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _tree_copy(dest: Path) -> Path:
    """The tracked (and new, not ignored) files of the checkout, copied to `dest`."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                            cwd=ROOT, capture_output=True, check=True).stdout
    for name in filter(None, listed.decode().split("\0")):
        source = ROOT / name
        if source.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, dest / name)
    return dest


def _wheel(project: Path, out: Path) -> zipfile.ZipFile:
    """Build the wheel of `project` offline; the opened wheel."""
    result = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps",
                             "--no-build-isolation", "--no-index", str(project), "-w", str(out)],
                            capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    (wheel,) = out.glob("*.whl")
    return zipfile.ZipFile(wheel)


@pytest.fixture(scope="module")
def wheels(tmp_path_factory: pytest.TempPathFactory) -> dict[str, zipfile.ZipFile]:
    tree = _tree_copy(tmp_path_factory.mktemp("tree"))
    return {"bifente": _wheel(tree, tmp_path_factory.mktemp("product")),
            "bifente-sim": _wheel(tree / "simulators", tmp_path_factory.mktemp("sim")),
            "bifente-client": _wheel(tree / "sdk" / "python", tmp_path_factory.mktemp("client"))}


def _requires(wheel: zipfile.ZipFile) -> list[str]:
    """The wheel's Requires-Dist lines, extras left out."""
    metadata = next(n for n in wheel.namelist() if n.endswith(".dist-info/METADATA"))
    return [line.removeprefix("Requires-Dist:").strip()
            for line in wheel.read(metadata).decode().splitlines()
            if line.startswith("Requires-Dist:") and "extra ==" not in line]


def test_the_product_ships_no_simulator_and_no_private_key(
        wheels: dict[str, zipfile.ZipFile]) -> None:
    product = wheels["bifente"]
    names = product.namelist()
    assert {"edged/daemon.py", "apdu/cps.py", "contracts/consent.py"} <= set(names)
    assert not [n for n in names if n.startswith("simulators/")]
    assert not [n for n in names if n.endswith((".pem", ".key"))]
    assert not [n for n in names if b"PRIVATE KEY-----" in product.read(n)]
    assert not [r for r in _requires(product) if "bifente-sim" in r]
    # ...but they are one extra away: `pip install 'bifente[sim]'`.
    metadata = next(n for n in names if n.endswith(".dist-info/METADATA"))
    extras = [line for line in product.read(metadata).decode().splitlines()
              if line.startswith("Requires-Dist: bifente-sim")]
    sim = tomllib.loads((ROOT / "simulators" / "pyproject.toml").read_text())["project"]
    assert extras == [f'Requires-Dist: bifente-sim=={sim["version"]}; extra == "sim"']


def test_the_client_sdk_is_apart_from_the_product(wheels: dict[str, zipfile.ZipFile]) -> None:
    client = set(wheels["bifente-client"].namelist())
    assert {"bifente_client/client.py", "bifente_client/tls.py", "bifente_client/codes.py",
            "bifente_client/py.typed"} <= client
    assert not [n for n in client if n.startswith(("edged/", "apdu/", "contracts/",
                                                   "simulators/"))]
    assert not [n for n in client if not n.startswith(("bifente_client/", "bifente_client-"))]
    requires = _requires(wheels["bifente-client"])
    assert requires and not [r for r in requires if r.startswith(("pyscard", "zeroconf",
                                                                   "bifente"))]
    # The product uses the SDK and no longer carries a copy of it.
    product = set(wheels["bifente"].namelist())
    assert not [n for n in product if n.startswith(("bifente_client/", "edged/sdk/"))]
    assert [r for r in _requires(wheels["bifente"]) if r.startswith("bifente-client")]


# Makes the product's packages, the simulators, pyscard and zeroconf unimportable, the way a
# clinic workstation with only bifente-client installed has them.
_BLOCK = """
import importlib.abc, sys
BLOCKED = {"edged", "apdu", "contracts", "simulators", "smartcard", "zeroconf"}
assert not [m for m in sys.modules if m.split(".")[0] in BLOCKED], "loaded before the blocker"
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {name!r} (blocked)", name=name)
sys.meta_path.insert(0, Block())
"""

# Every module of the unpacked wheel, then what a client does before it meets a terminal.
_USE_THE_CLIENT = """
import importlib, json, pkgutil, ssl, sys, tempfile
from pathlib import Path
import bifente_client
assert bifente_client.__file__.startswith(sys.argv[1]), bifente_client.__file__
names = [info.name for info in pkgutil.walk_packages(bifente_client.__path__, "bifente_client.")]
for name in names:
    importlib.import_module(name)
from cryptography import x509
from bifente_client import Credentials, contract
from bifente_client.tls import generate_client_key_and_csr, pinned_ssl_context
key_pem, csr_pem = generate_client_key_and_csr("Front desk")
csr = x509.load_pem_x509_csr(csr_pem)
context = pinned_ssl_context("ab" * 32)
with tempfile.TemporaryDirectory() as folder:
    Credentials("Front desk", "192.0.2.7", 8443, "ab" * 32, "cert", key_pem.decode()).save(
        Path(folder))
    (found,) = Credentials.load_all(Path(folder))
try:
    contract.check_error({"code": -32004, "message": "x", "data": {"reason": "too_large"}})
    unchecked = "no error"
except contract.ContractViolation as exc:
    unchecked = str(exc)
print(json.dumps({"modules": names, "csr_valid": csr.is_signature_valid,
                  "cn": csr.subject.rfc4514_string(),
                  "tls13": context.minimum_version == ssl.TLSVersion.TLSv1_3,
                  "found": found.name, "unchecked": unchecked}))
"""


def _client_only(code: str, site: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run code with the blocker first and `site` as the only path of ours (not the tree)."""
    env = {**os.environ, "PYTHONPATH": str(site), "BIFENTE_CHECK_ANSWERS": "1"}
    return subprocess.run([sys.executable, "-c", _BLOCK + code, str(site), *args], cwd=site,
                          env=env, capture_output=True, text=True, timeout=60, check=False)


def test_the_client_sdk_works_without_the_product_and_pyscard(
        wheels: dict[str, zipfile.ZipFile], tmp_path: Path) -> None:
    site = tmp_path / "site"
    wheels["bifente-client"].extractall(site)
    result = _client_only(_USE_THE_CLIENT, site)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert {"bifente_client.client", "bifente_client.credentials", "bifente_client.tls",
            "bifente_client.contract", "bifente_client.codes"} <= set(report["modules"])
    assert report["csr_valid"] and report["cn"] == "CN=Front desk" and report["tls13"]
    assert report["found"] == "Front desk"
    # Checking answers needs a document: without one it says how to give it (no edged import).
    assert "use_document()" in report["unchecked"]


def test_the_blocker_blocks(tmp_path: Path) -> None:
    # The check above is not vacuous: behind the same blocker, each hidden package fails to
    # import even though this virtual environment has it.
    for module in ("edged.daemon", "apdu", "smartcard", "simulators", "contracts"):
        result = _client_only(f"import {module}\n", tmp_path)
        assert result.returncode == 1
        assert "(blocked)" in result.stderr, result.stderr


def test_the_simulators_ship_their_data(wheels: dict[str, zipfile.ZipFile]) -> None:
    names = set(wheels["bifente-sim"].namelist())
    assert {"simulators/cps3/card.py", "simulators/terminal/mp/sim_board.py"} <= names
    assert any(n.startswith("simulators/pki/") and n.endswith(".pem") for n in names)
    assert any(n.startswith("simulators/profiles/") and n.endswith(".toml") for n in names)
    assert not [n for n in names if n.startswith(("edged/", "apdu/"))]


def test_the_simulators_package_list_is_complete() -> None:
    listed = tomllib.loads((ROOT / "simulators" / "pyproject.toml").read_text())
    packages = set(listed["tool"]["setuptools"]["packages"])
    on_disk = {"simulators" + ("." + ".".join(p.parent.relative_to(ROOT / "simulators").parts)
                               if p.parent != ROOT / "simulators" else "")
               for p in (ROOT / "simulators").rglob("__init__.py")}
    assert packages == on_disk


def test_simulated_commands_say_what_is_missing_without_the_simulators(tmp_path: Path) -> None:
    # A product install: the simulators package cannot be found (a meta path hook hides it).
    hide = ("import sys, importlib.abc\n"
            "class Hide(importlib.abc.MetaPathFinder):\n"
            "    def find_spec(self, name, path=None, target=None):\n"
            "        if name.split('.')[0] == 'simulators':\n"
            "            raise ModuleNotFoundError(name, name=name)\n"
            "sys.meta_path.insert(0, Hide())\n")
    for module, argv in (("edged.cli.main", ["demo"]), ("edged.__main__", ["--simulate"])):
        script = hide + f"import {module} as m\nraise SystemExit(m.main({argv!r}))\n"
        result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True,
                                text=True, timeout=60, check=False)
        assert result.returncode == 2, result.stderr
        assert "this install has no simulators: install bifente-sim" in result.stderr
        assert "Traceback" not in result.stderr


def test_the_product_installs_the_commands_install_pi_links(
        wheels: dict[str, zipfile.ZipFile]) -> None:
    """docs/install-pi.md links .venv/bin/edged and .venv/bin/bifente: the wheel makes both."""
    import configparser
    import re

    product = wheels["bifente"]
    entry_points = next(n for n in product.namelist() if n.endswith(".dist-info/entry_points.txt"))
    parser = configparser.ConfigParser()
    parser.read_string(product.read(entry_points).decode())
    scripts = dict(parser["console_scripts"])
    install = (ROOT / "docs" / "install-pi.md").read_text()
    linked = set(re.findall(r"ln -s /opt/bifente/\.venv/bin/(\w+) ", install))
    assert linked == {"edged", "bifente"}, linked
    assert linked <= set(scripts), scripts
    for name in linked:  # each names a function that exists in the product
        module, _, function = scripts[name].partition(":")
        assert f"{module.replace('.', '/')}.py" in product.namelist()
        assert f"def {function}(" in product.read(f"{module.replace('.', '/')}.py").decode()
