"""The import graph of the README's "Layout" (layers point down), checked for real.

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
CLIENT_SDK = ROOT / "sdk" / "python"  # the distribution bifente-client, package bifente_client
# What a clinic workstation's install of bifente-client does not have: the product's packages
# (the daemon, the card stack, the shared contracts), the simulators, pyscard, zeroconf.
NOT_IN_THE_CLIENT = (*HOST_PACKAGES, "smartcard", "zeroconf")

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


def test_the_client_sdk_imports_no_product_package() -> None:
    imported, forbidden = import_all("bifente_client", *NOT_IN_THE_CLIENT)
    assert {"bifente_client.client", "bifente_client.tls", "bifente_client.contract"} \
        <= set(imported)
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


def client_outside_imports(root: Path) -> dict[str, list[str]]:
    """file -> what it imports that a client-only install lacks (anywhere, lazy ones too)."""
    found = {}
    for path in sorted((root / "bifente_client").rglob("*.py")):
        used = top_level_imports(path.read_text(encoding="utf-8")) & set(NOT_IN_THE_CLIENT)
        if used:
            found[path.relative_to(root).as_posix()] = sorted(used)
    return found


def test_the_client_sdk_imports_nothing_of_the_product_even_lazily() -> None:
    # The import probe above sees module-level imports only; a function-local one would break
    # a client-only install the first time the function runs.
    assert len(list((CLIENT_SDK / "bifente_client").glob("*.py"))) > 3
    assert client_outside_imports(CLIENT_SDK) == {}


def test_the_client_check_can_fail(tmp_path: Path) -> None:
    package = tmp_path / "bifente_client"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "contract.py").write_text(
        "def _document():\n    from edged.api.openrpc import document\n    return document()\n")
    (package / "tls.py").write_text("from smartcard.System import readers\n")
    assert client_outside_imports(tmp_path) == {"bifente_client/contract.py": ["edged"],
                                                "bifente_client/tls.py": ["smartcard"]}


@pytest.mark.parametrize("source", ["import apdu.tlv", "from edged.cli import sim",
                                    "def f():\n    from simulators import cps3\n",
                                    "__import__('apdu')"])
def test_the_static_check_sees_host_imports(source: str) -> None:
    assert top_level_imports(source) & set(HOST_PACKAGES)


# -- inside edged: daemon / cli -> api -> services -> readers, state -------------------------
# A module may import its own layer or lower ones, never a higher one; function-local and
# TYPE_CHECKING imports count too (they are how an import circle hides).
EDGED_LAYERS = {
    "edged.__main__": 4, "edged.daemon": 4, "edged.cli": 4, "edged.bridge": 4,
    "edged.simulation": 4, "edged.early": 4,
    "edged.api": 3,
    "edged.services": 2,
    "edged.readers": 1, "edged.state": 1, "edged.events": 1, "edged.config": 1,
    "edged.discovery": 1, "edged.systemd": 1, "edged.limits": 1, "edged.peers": 1,
    "edged.version": 1, "edged.shutdown": 1, "edged.memory": 1,
}


def layer_of(module: str, layers: dict[str, int]) -> int | None:
    """The rank of the longest layer prefix of module (None: not in a layer)."""
    best = max((p for p in layers if module == p or module.startswith(p + ".")),
               key=len, default=None)
    return None if best is None else layers[best]


def package_imports(root: Path, package: str) -> dict[str, set[str]]:
    """module -> the modules of `package` it imports (every import statement, anywhere)."""
    modules: dict[str, Path] = {}
    for path in (root / package).rglob("*.py"):
        parts = path.relative_to(root).with_suffix("").parts
        modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        found: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets = [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
            else:
                continue
            found.update(t for t in targets if t in modules and t != name)
        graph[name] = found
    return graph


def upward_imports(graph: dict[str, set[str]], layers: dict[str, int]) -> list[str]:
    """Every import of a higher layer, as 'a -> b'."""
    out = []
    for module, targets in sorted(graph.items()):
        rank = layer_of(module, layers)
        for target in sorted(targets):
            other = layer_of(target, layers)
            if rank is not None and other is not None and other > rank:
                out.append(f"{module} -> {target}")
    return out


def import_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return cycles


def test_edged_layers_point_one_way() -> None:
    graph = package_imports(ROOT, "edged")
    assert {"edged.api.methods", "edged.services.dmp", "edged.readers.arbiter"} <= set(graph)
    outside = sorted(m for m in graph if m != "edged" and layer_of(m, EDGED_LAYERS) is None)
    assert outside == [], f"modules outside every layer (add them to EDGED_LAYERS): {outside}"
    assert upward_imports(graph, EDGED_LAYERS) == []


def firmware_imports(root: Path) -> dict[str, set[str]]:
    """firmware module -> the firmware modules it imports (flat: MicroPython's own path)."""
    modules = {path.stem: path for path in (root / "firmware").glob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        found: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                found.update(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                found.add(node.module)
        graph[name] = {m for m in found if m in modules and m != name}
    return graph


@pytest.mark.parametrize(("root", "package"), [(ROOT, "apdu"), (ROOT, "contracts"),
                                               (ROOT, "edged"), (CLIENT_SDK, "bifente_client")],
                         ids=["apdu", "contracts", "edged", "bifente_client"])
def test_the_product_has_no_import_circle(root: Path, package: str) -> None:
    # Across packages the layer tests above already forbid a way back (bifente_client,
    # contracts <- apdu <- edged), so a circle could only live inside one package.
    graph = package_imports(root, package)
    assert len(graph) > 2
    assert import_cycles(graph) == []


def test_the_firmware_has_no_import_circle() -> None:
    graph = firmware_imports(ROOT)
    assert {"main", "terminal", "link"} <= set(graph)
    assert import_cycles(graph) == []


def test_the_edged_checks_can_fail(tmp_path: Path) -> None:
    # A service importing the API (upward) and two modules importing each other are seen.
    pkg = tmp_path / "edged"
    for sub in ("api", "services"):
        (pkg / sub).mkdir(parents=True)
        (pkg / sub / "__init__.py").write_text("")
    (pkg / "__init__.py").write_text("")
    (pkg / "api" / "methods.py").write_text("from edged.services import dmp\n")
    (pkg / "services" / "dmp.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import edged.api.methods\n")
    graph = package_imports(tmp_path, "edged")
    assert upward_imports(graph, EDGED_LAYERS) == ["edged.services.dmp -> edged.api.methods"]
    assert import_cycles(graph) == [["edged.api.methods", "edged.services.dmp"]]


def test_the_firmware_circle_check_can_fail(tmp_path: Path) -> None:
    (tmp_path / "firmware").mkdir()
    (tmp_path / "firmware" / "link.py").write_text("import terminal\n")
    (tmp_path / "firmware" / "terminal.py").write_text("from link import Frame\n")
    assert import_cycles(firmware_imports(tmp_path)) == [["link", "terminal"]]


# -- one door from edged to the simulated parts ------------------------------------------------
# edged.simulation alone builds simulated parts (one SimulatedWorld, simulators/world.py); the
# other edged modules may use the simulators' tools (the terminal's control client, profiles,
# key names) but never start a card bench, a terminal, a mail operator or a DMP host by hand.
SIM_SEAM = "edged.simulation"
SIM_PART_MODULES = {"simulators.world", "simulators.slots", "simulators.pcscd"}
SIM_PART_PACKAGES = SIM_PART_MODULES | {
    "simulators.terminal", "simulators.terminal.supervisor", "simulators.mail",
    "simulators.mail.operator", "simulators.dmp", "simulators.dmp.host"}
SIM_PARTS = {"SimulatedWorld", "SimulatedSlots", "VirtualTerminal", "MailOperator", "DmpHost",
             "ensure_pcscd"}


def simulated_parts_imported(source: str) -> list[str]:
    """The imports in source that reach a simulated part (anywhere: functions count too)."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [a.name for a in node.names if a.name in SIM_PART_PACKAGES]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            module = node.module
            if module in SIM_PART_MODULES:
                found.append(module)
            elif module == "simulators" or module.startswith("simulators."):
                found += [f"{module}.{a.name}" for a in node.names
                          if a.name in SIM_PARTS or f"{module}.{a.name}" in SIM_PART_PACKAGES]
    return found


def test_only_the_simulation_seam_starts_simulated_parts() -> None:
    graph = package_imports(ROOT, "edged")  # the module names, to find every file
    assert SIM_SEAM in graph
    offenders = {}
    for module in sorted(graph):
        if module == SIM_SEAM:
            continue
        parts = module.split(".")
        path = ROOT.joinpath(*parts).with_suffix(".py")
        if not path.exists():
            path = ROOT.joinpath(*parts, "__init__.py")
        if found := simulated_parts_imported(path.read_text(encoding="utf-8")):
            offenders[module] = found
    assert offenders == {}
    seam = (ROOT / "edged" / "simulation.py").read_text(encoding="utf-8")
    assert "simulators.world" in seam  # the seam is where the world comes from


@pytest.mark.parametrize("source", [
    "from simulators.slots import SimulatedSlots",
    "def f():\n    from simulators.terminal import VirtualTerminal\n",
    "from simulators.terminal.supervisor import VirtualTerminal",
    "from simulators.mail import MailOperator, mail_table",
    "from simulators.dmp import DmpHost",
    "import simulators.dmp.host",
    "from simulators import mail",
    "from simulators.world import CardsOn",
    "from simulators.pcscd import ensure_pcscd",
])
def test_the_simulation_seam_check_sees_parts(source: str) -> None:
    assert simulated_parts_imported(source)


@pytest.mark.parametrize("source", [
    "from simulators.terminal.control import TerminalControl",
    "from simulators.terminal.supervisor import expand_keys",
    "from simulators.profiles import load_cps",
    "from simulators.mail import TEST_PASSWORD, describe",
    "from edged.simulation import simulated_world",
])
def test_the_simulation_seam_check_lets_tools_through(source: str) -> None:
    assert simulated_parts_imported(source) == []


# -- the reference DMP host: two doors over one patient domain --------------------------------
# The JSON API and the patient pages both call the patient domain (simulators.dmp.patient),
# where the patient's session, the rules and the traces are: neither door goes through the
# other (no page forging requests to the API's handlers), and the domain knows no door and no
# HTTP.
DMP_DOORS = ("simulators.dmp.api", "simulators.dmp.pages")
DMP_DOMAIN = "simulators.dmp.patient"
DMP_HTTP = ("simulators.dmp.server", "simulators.dmp.host")


def _under(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def dmp_door_crossings(graph: dict[str, set[str]]) -> list[str]:
    """Imports from one DMP door into the other, or from the patient domain into a door or
    the HTTP plumbing, as 'a -> b'."""
    out = []
    for module, targets in sorted(graph.items()):
        door = next((d for d in DMP_DOORS if _under(module, d)), None)
        for target in sorted(targets):
            if door is not None:
                crossing = any(_under(target, d) for d in DMP_DOORS if d != door)
            else:
                crossing = _under(module, DMP_DOMAIN) and any(
                    _under(target, p) for p in (*DMP_DOORS, *DMP_HTTP))
            if crossing:
                out.append(f"{module} -> {target}")
    return out


def test_the_dmp_doors_share_the_patient_domain() -> None:
    graph = package_imports(ROOT, "simulators")
    assert DMP_DOMAIN in graph["simulators.dmp.api.base"]
    assert DMP_DOMAIN in graph["simulators.dmp.pages.context"]
    assert dmp_door_crossings(graph) == []


def test_the_dmp_door_check_can_fail() -> None:
    graph = {"simulators.dmp.pages.context": {"simulators.dmp.api"},
             "simulators.dmp.patient.base": {"simulators.dmp.server"},
             "simulators.dmp.api.patient": {"simulators.dmp.patient"}}
    assert dmp_door_crossings(graph) == [
        "simulators.dmp.pages.context -> simulators.dmp.api",
        "simulators.dmp.patient.base -> simulators.dmp.server"]
