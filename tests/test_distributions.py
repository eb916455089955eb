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
import sysconfig
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
    assert {"bifente/edged/daemon.py", "bifente/apdu/cps.py",
            "bifente/contracts/consent.py"} <= set(names)
    assert not [n for n in names if n.startswith("bifente/simulators/")]
    assert not [n for n in names if n.endswith((".pem", ".key"))]
    assert not [n for n in names if b"PRIVATE KEY-----" in product.read(n)]
    assert not [r for r in _requires(product) if "bifente-sim" in r]
    # ...but they are one extra away: `pip install 'bifente[sim]'`.
    metadata = next(n for n in names if n.endswith(".dist-info/METADATA"))
    extras = [line for line in product.read(metadata).decode().splitlines()
              if line.startswith("Requires-Dist: bifente-sim")]
    sim = tomllib.loads((ROOT / "simulators" / "pyproject.toml").read_text())["project"]
    assert extras == [f'Requires-Dist: bifente-sim=={sim["version"]}; extra == "sim"']


@pytest.mark.parametrize("distribution", ["bifente", "bifente-sim", "bifente-client"])
def test_each_distribution_installs_under_the_one_name_bifente(
        wheels: dict[str, zipfile.ZipFile], distribution: str) -> None:
    # No generic top-level name (`edged`, `apdu`, `contracts`, `simulators`) in site-packages,
    # and `bifente` stays a namespace the three share: a `bifente/__init__.py` in one would
    # hide the others' packages.
    names = wheels[distribution].namelist()
    top = {n.split("/")[0] for n in names if ".dist-info/" not in n}
    assert top == {"bifente"}, top
    assert "bifente/__init__.py" not in names


# Run in a virtual environment where the three wheels are installed for real (not editable).
_INSTALLED = """
import importlib, importlib.util, json, subprocess, sys
from pathlib import Path
import bifente.apdu.cps, bifente.client, bifente.contracts.consent, bifente.edged.daemon
import bifente.simulators.world
files = {m: sys.modules[m].__file__ for m in ("bifente.apdu.cps", "bifente.client",
         "bifente.edged.daemon", "bifente.simulators.world")}
folders = {m: importlib.util.find_spec(m) is not None
           for m in ("edged", "apdu", "contracts", "simulators", "bifente_client")}
version = subprocess.run([str(Path(sys.executable).parent / "edged"), "--version"],
                         capture_output=True, text=True, check=False)
print(json.dumps({"files": files, "folders": folders, "prefix": sys.prefix,
                  "edged": version.stdout.strip(), "rc": version.returncode}))
"""


def test_the_three_wheels_install_side_by_side(wheels: dict[str, zipfile.ZipFile],
                                               tmp_path: Path) -> None:
    # Three distributions, one namespace: installed together (as `pip install 'bifente[sim]'`
    # does), each finds the others' packages under `bifente`, and no generic name exists.
    venv = tmp_path / "venv"
    # Nothing of the checkout on the path: its bifente.egg-info would pass for an install.
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300, env=env)
    python = venv / "bin" / "python"
    site = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                          capture_output=True, text=True, check=True, env=env).stdout.strip()
    installed = subprocess.run(  # its own pip, which sees nothing of this environment
        [python, "-m", "pip", "install", "-q", "--no-deps", "--no-index",
         *(str(w.filename) for w in wheels.values())],
        capture_output=True, text=True, timeout=300, check=False, env=env)
    assert installed.returncode == 0, installed.stdout + installed.stderr
    # The dependencies (pyscard, cryptography ...) come from this environment as a plain path,
    # added after the install (pip would take this checkout's editable install for the
    # product); its editable installs' hooks are not run from there.
    (Path(site) / "dependencies.pth").write_text(sysconfig.get_path("purelib") + "\n")
    result = subprocess.run([python, "-c", _INSTALLED], cwd=tmp_path, capture_output=True,
                            text=True, timeout=120, check=False, env=env)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert all(f.startswith(site) for f in report["files"].values()), report["files"]
    assert not any(report["folders"].values()), report["folders"]
    assert report["rc"] == 0 and report["edged"].startswith("edged "), report


def _package_list_matches_the_tree(project: Path, setuptools: dict[str, object]) -> None:
    """Every package folder (an __init__.py) mapped by `package-dir` is in `packages`."""
    listed = set(setuptools["packages"])  # type: ignore[call-overload]
    on_disk = set()
    for name, folder in setuptools["package-dir"].items():  # type: ignore[attr-defined]
        base = project / folder
        on_disk |= {".".join((name, *init.parent.relative_to(base).parts))
                    for init in base.rglob("__init__.py")}
    assert listed == on_disk, (sorted(on_disk - listed), sorted(listed - on_disk))


def test_the_product_package_list_is_complete() -> None:
    # setuptools cannot prefix what it finds, so pyproject lists the packages: a new one
    # missing from the list would be missing from every install.
    _package_list_matches_the_tree(
        ROOT, tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"])


def test_the_client_sdk_is_apart_from_the_product(wheels: dict[str, zipfile.ZipFile]) -> None:
    client = set(wheels["bifente-client"].namelist())
    assert {"bifente/client/client.py", "bifente/client/tls.py", "bifente/client/codes.py",
            "bifente/client/py.typed"} <= client
    assert not [n for n in client if not n.startswith(("bifente/client/", "bifente_client-"))]
    requires = _requires(wheels["bifente-client"])
    assert requires and not [r for r in requires if r.startswith(("pyscard", "zeroconf",
                                                                   "bifente"))]
    # The product uses the SDK and no longer carries a copy of it.
    product = set(wheels["bifente"].namelist())
    assert not [n for n in product if n.startswith(("bifente/client/", "bifente/edged/sdk/"))]
    assert [r for r in _requires(wheels["bifente"]) if r.startswith("bifente-client")]


# Makes the product's packages, the simulators, pyscard and zeroconf unimportable, the way a
# clinic workstation with only bifente-client installed has them.
_BLOCK = """
import importlib.abc, sys
BLOCKED = ("bifente.edged", "bifente.apdu", "bifente.contracts", "bifente.simulators",
           "smartcard", "zeroconf")
def blocked(name):
    return any(name == b or name.startswith(b + ".") for b in BLOCKED)
assert not [m for m in sys.modules if blocked(m)], "loaded before the blocker"
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if blocked(name):
            raise ModuleNotFoundError(f"No module named {name!r} (blocked)", name=name)
sys.meta_path.insert(0, Block())
"""

# Every module of the unpacked wheel, then what a client does before it meets a terminal.
_USE_THE_CLIENT = """
import importlib, json, pkgutil, ssl, sys, tempfile
from pathlib import Path
import bifente.client
assert bifente.client.__file__.startswith(sys.argv[1]), bifente.client.__file__
names = [info.name for info in pkgutil.walk_packages(bifente.client.__path__, "bifente.client.")]
for name in names:
    importlib.import_module(name)
from cryptography import x509
from bifente.client import Credentials, contract
from bifente.client.tls import generate_client_key_and_csr, pinned_ssl_context
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
    assert {"bifente.client.client", "bifente.client.credentials", "bifente.client.tls",
            "bifente.client.contract", "bifente.client.codes"} <= set(report["modules"])
    assert report["csr_valid"] and report["cn"] == "CN=Front desk" and report["tls13"]
    assert report["found"] == "Front desk"
    # Checking answers needs a document: without one it says how to give it (no edged import).
    assert "use_document()" in report["unchecked"]


def test_the_blocker_blocks(tmp_path: Path) -> None:
    # The check above is not vacuous: behind the same blocker, each hidden package fails to
    # import even though this virtual environment has it.
    for module in ("bifente.edged.daemon", "bifente.apdu", "smartcard", "bifente.simulators",
                   "bifente.contracts"):
        result = _client_only(f"import {module}\n", tmp_path)
        assert result.returncode == 1
        assert "(blocked)" in result.stderr, result.stderr


def test_the_simulators_ship_their_data(wheels: dict[str, zipfile.ZipFile]) -> None:
    names = set(wheels["bifente-sim"].namelist())
    assert {"bifente/simulators/cps3/card.py",
            "bifente/simulators/terminal/mp/sim_board.py"} <= names
    assert any(n.startswith("bifente/simulators/pki/") and n.endswith(".pem") for n in names)
    assert any(n.startswith("bifente/simulators/profiles/") and n.endswith(".toml")
               for n in names)
    assert not [n for n in names if n.startswith(("bifente/edged/", "bifente/apdu/"))]


def test_the_simulators_package_list_is_complete() -> None:
    project = ROOT / "simulators"
    _package_list_matches_the_tree(
        project, tomllib.loads((project / "pyproject.toml").read_text())["tool"]["setuptools"])


def test_the_package_list_check_can_fail(tmp_path: Path) -> None:
    (tmp_path / "layer" / "sub").mkdir(parents=True)
    (tmp_path / "layer" / "__init__.py").write_text("")
    (tmp_path / "layer" / "sub" / "__init__.py").write_text("")
    with pytest.raises(AssertionError, match=r"bifente\.layer\.sub"):
        _package_list_matches_the_tree(tmp_path, {"package-dir": {"bifente.layer": "layer"},
                                                  "packages": ["bifente.layer"]})


def test_simulated_commands_say_what_is_missing_without_the_simulators(tmp_path: Path) -> None:
    # A product install: the simulators package cannot be found (a meta path hook hides it).
    hide = ("import sys, importlib.abc\n"
            "class Hide(importlib.abc.MetaPathFinder):\n"
            "    def find_spec(self, name, path=None, target=None):\n"
            "        if name.startswith('bifente.simulators'):\n"
            "            raise ModuleNotFoundError(name, name=name)\n"
            "sys.meta_path.insert(0, Hide())\n")
    for module, argv in (("bifente.edged.cli.main", ["demo"]),
                         ("bifente.edged.__main__", ["--simulate"])):
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
