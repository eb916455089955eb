"""The product and the simulators are separate distributions; a Pi install gets no test key.

Both wheels are built for real (setuptools, no network) from a copy of the tracked tree, and
their contents read back.
"""

from __future__ import annotations

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
            "bifente-sim": _wheel(tree / "simulators", tmp_path_factory.mktemp("sim"))}


def test_the_product_ships_no_simulator_and_no_private_key(
        wheels: dict[str, zipfile.ZipFile]) -> None:
    product = wheels["bifente"]
    names = product.namelist()
    assert {"edged/daemon.py", "apdu/cps.py", "contracts/consent.py"} <= set(names)
    assert not [n for n in names if n.startswith("simulators/")]
    assert not [n for n in names if n.endswith((".pem", ".key"))]
    assert not [n for n in names if b"PRIVATE KEY-----" in product.read(n)]
    metadata = next(n for n in names if n.endswith(".dist-info/METADATA"))
    requires = [line for line in product.read(metadata).decode().splitlines()
                if line.startswith("Requires-Dist:") and "extra ==" not in line]
    assert not [r for r in requires if "bifente-sim" in r]


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
