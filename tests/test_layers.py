"""The import graph of ARCHITECTURE.md ("Layers and who may import whom"), checked for real.

Each package is imported whole in a fresh interpreter, then sys.modules must hold nothing from
the layers it may not know. The firmware is checked statically: it runs on MicroPython.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
HOST_PACKAGES = ("apdu", "contracts", "edged", "simulators")

# Imports every module of a package, then reports what got loaded. Modules named __main__ are
# imported too: they are guarded by `if __name__ == "__main__"`.
SCRIPT = """
import importlib, json, pkgutil, sys
package = importlib.import_module(sys.argv[1])
names = [package.__name__]
for info in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
    importlib.import_module(info.name)
    names.append(info.name)
loaded = sorted(m for m in sys.modules if m.split(".")[0] in sys.argv[2:])
print(json.dumps({"imported": names, "forbidden": loaded}))
"""


def import_all(package: str, *forbidden: str) -> tuple[list[str], list[str]]:
    """Import every module of `package` in a new interpreter: (modules imported, forbidden)."""
    result = subprocess.run([sys.executable, "-c", SCRIPT, package, *forbidden], cwd=ROOT,
                            capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    return report["imported"], report["forbidden"]


def test_contracts_import_no_other_layer() -> None:
    imported, forbidden = import_all("contracts", "apdu", "edged", "simulators")
    assert {"contracts.consent", "contracts.iso7816_3"} <= set(imported)
    assert forbidden == []


def test_apdu_imports_no_daemon_and_no_simulator() -> None:
    imported, forbidden = import_all("apdu", "edged", "simulators")
    assert {"apdu.protocol", "apdu.cps", "apdu.vitale", "apdu.pcsc"} <= set(imported)
    assert forbidden == []


def test_simulators_never_import_edged() -> None:
    imported, forbidden = import_all("simulators", "edged")
    assert {"simulators.cardos.card", "simulators.cps3.card", "simulators.vitale.card"} \
        <= set(imported)
    assert forbidden == []


def test_edged_leaves_simulators_out() -> None:
    # edged.cli.sim and edged.cli.demo wire the simulators in, lazily inside functions only.
    imported, forbidden = import_all("edged", "simulators")
    assert {"edged.cli.sim", "edged.cli.demo", "edged.cli.main"} <= set(imported)
    assert forbidden == []


def test_the_check_can_fail() -> None:
    # The same probe sees a layer when it is imported: the tests above are not vacuous.
    _imported, forbidden = import_all("simulators", "apdu")
    assert "apdu.command" in forbidden


def top_level_imports(source: str) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
              and node.func.id == "__import__" and node.args
              and isinstance(node.args[0], ast.Constant)):
            names.add(str(node.args[0].value).split(".")[0])
    return names


FIRMWARE = sorted((ROOT / "firmware").glob("*.py"))


def test_firmware_files_exist() -> None:
    assert FIRMWARE, "no firmware/*.py found: the static check below would check nothing"


@pytest.mark.parametrize("path", FIRMWARE, ids=lambda p: p.name)
def test_firmware_imports_no_host_package(path: Path) -> None:
    used = top_level_imports(path.read_text(encoding="utf-8"))
    assert not used & set(HOST_PACKAGES), f"{path.name} imports {sorted(used & set(HOST_PACKAGES))}"


@pytest.mark.parametrize("source", ["import apdu.tlv", "from edged.cli import sim",
                                    "def f():\n    from simulators import cps3\n",
                                    "__import__('apdu')"])
def test_the_static_check_sees_host_imports(source: str) -> None:
    assert top_level_imports(source) & set(HOST_PACKAGES)
