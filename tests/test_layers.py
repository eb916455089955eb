"""The import graph of the README's "Layout" (layers point down), checked for real.

Each package is imported whole in a fresh interpreter, then sys.modules must hold nothing from
the layers it may not know. The firmware is checked statically: it runs on MicroPython.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from tools.typecheck import mapped_folders

ROOT = Path(__file__).resolve().parent.parent
# Everything installs under the one name `bifente`; each layer keeps its folder in the checkout
# (pyproject's package-dir: `bifente.<folder>` is `<folder>/`).
APDU, CONTRACTS, EDGED, SIMULATORS = (
    "bifente.apdu", "bifente.contracts", "bifente.edged", "bifente.simulators")
CLIENT = "bifente.client"  # the distribution bifente-client, in sdk/python
HOST_PACKAGES = (APDU, CONTRACTS, EDGED, SIMULATORS)
CLIENT_SDK = ROOT / "sdk" / "python"
FOLDERS = {APDU: ROOT / "apdu", CONTRACTS: ROOT / "contracts", EDGED: ROOT / "edged",
           SIMULATORS: ROOT / "simulators", CLIENT: CLIENT_SDK / "bifente" / "client"}
# The names the layers had before the namespace, still folder names in the checkout: an
# import of one works from a source tree and fails in every install.
FOLDER_NAMES = ("apdu", "contracts", "edged", "simulators", "bifente_client")
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
loaded = sorted(m for m in sys.modules
                if any(m == p or m.startswith(p + ".") for p in sys.argv[2:]))
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
    imported, forbidden = import_all(CONTRACTS, APDU, EDGED, SIMULATORS)
    assert {"bifente.contracts.consent", "bifente.contracts.iso7816_3"} <= set(imported)
    assert forbidden == []


def test_apdu_imports_no_daemon_and_no_simulator() -> None:
    imported, forbidden = import_all(APDU, EDGED, SIMULATORS)
    assert {f"{APDU}.{m}" for m in ("protocol", "cps", "vitale", "pcsc")} <= set(imported)
    assert forbidden == []


def test_simulators_never_import_edged() -> None:
    imported, forbidden = import_all(SIMULATORS, EDGED)
    assert {f"{SIMULATORS}.{m}.card" for m in ("cardos", "cps3", "vitale")} <= set(imported)
    assert forbidden == []


def test_edged_leaves_simulators_out() -> None:
    # edged's cli.sim and cli.demo wire the simulators in, lazily inside functions only.
    imported, forbidden = import_all(EDGED, SIMULATORS)
    assert {f"{EDGED}.cli.{m}" for m in ("sim", "demo", "main")} <= set(imported)
    assert forbidden == []


def test_the_client_sdk_imports_no_product_package() -> None:
    imported, forbidden = import_all(CLIENT, *NOT_IN_THE_CLIENT)
    assert {f"{CLIENT}.{m}" for m in ("client", "tls", "contract")} <= set(imported)
    assert forbidden == []


def test_the_check_can_fail() -> None:
    # The same probe sees a layer when it is imported: the tests above are not vacuous.
    _imported, forbidden = import_all(SIMULATORS, APDU)
    assert "bifente.apdu.command" in forbidden


def _callee(call: ast.Call) -> str | None:
    """The called name: `f` for `f(...)` and for `x.f(...)`."""
    if isinstance(call.func, ast.Name):
        return call.func.id
    return call.func.attr if isinstance(call.func, ast.Attribute) else None


def imported_names(source: str) -> set[str]:
    """Every package `source` imports (anywhere, lazily too): a layer as `bifente.<layer>`,
    anything else by its top-level name."""
    modules: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            modules.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            modules.add(node.module)
        elif (isinstance(node, ast.Call) and _callee(node) in ("__import__", "import_module")
              and node.args and isinstance(node.args[0], ast.Constant)):
            modules.add(str(node.args[0].value))
    return {".".join(m.split(".")[:2]) if m.startswith("bifente.") else m.split(".")[0]
            for m in modules}


FIRMWARE = sorted((ROOT / "firmware").glob("*.py"))


def test_firmware_files_exist() -> None:
    assert FIRMWARE, "no firmware/*.py found: the static check below would check nothing"


@pytest.mark.parametrize("path", FIRMWARE, ids=lambda p: p.name)
def test_firmware_imports_no_host_package(path: Path) -> None:
    used = imported_names(path.read_text(encoding="utf-8"))
    host = {u for u in used if u == "bifente" or u.startswith("bifente.")} \
        | (used & set(FOLDER_NAMES))
    assert not host, f"{path.name} imports {sorted(host)}"


def python_files() -> list[Path]:
    """The checkout's Python files that run on CPython (the firmware and the board beside it
    run on MicroPython with modules of their own names)."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard",
                             "*.py"], cwd=ROOT, capture_output=True, check=True).stdout
    return [ROOT / name for name in filter(None, listed.decode().split("\0"))
            if not name.startswith(("firmware/", "typings/", "simulators/terminal/mp/"))
            and (ROOT / name).is_file() and not (ROOT / name).is_symlink()]


def folder_name_imports(paths: list[Path], root: Path) -> dict[str, list[str]]:
    """file -> the layers it imports by folder name instead of `bifente.<layer>`."""
    found = {}
    for path in paths:
        used = imported_names(path.read_text(encoding="utf-8")) & set(FOLDER_NAMES)
        if used:
            found[path.relative_to(root).as_posix()] = sorted(used)
    return found


def test_every_import_names_the_bifente_namespace() -> None:
    # From the checkout's root `import edged` would work (the folder is there) and load a
    # second copy of every module; in an install it fails. Product, simulators, SDK, tests,
    # bench, fuzz and tools all import `bifente.<layer>`.
    paths = python_files()
    assert len(paths) > 300
    assert folder_name_imports(paths, ROOT) == {}


def test_the_namespace_check_can_fail(tmp_path: Path) -> None:
    (tmp_path / "a.py").write_text("from edged.daemon import Daemon\nimport bifente.apdu.tlv\n")
    (tmp_path / "b.py").write_text("import importlib\nimportlib.import_module('simulators')\n")
    (tmp_path / "c.py").write_text("from bifente.edged import daemon\n")
    paths = sorted(tmp_path.glob("*.py"))
    assert folder_name_imports(paths, tmp_path) == {"a.py": ["edged"], "b.py": ["simulators"]}


def test_the_layer_folders_are_the_packaging_s() -> None:
    # The folders above must be what the distributions' pyproject files map `bifente.<layer>`
    # to (read as tools/typecheck.py reads them), or the checks would look at the wrong tree.
    mapped = mapped_folders()
    client = tomllib.loads((CLIENT_SDK / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert CLIENT in client["packages"]
    assert mapped == {name: path.resolve() for name, path in FOLDERS.items() if name != CLIENT}


def client_outside_imports(package: Path) -> dict[str, list[str]]:
    """file -> what it imports that a client-only install lacks (anywhere, lazy ones too)."""
    found = {}
    for path in sorted(package.rglob("*.py")):
        used = imported_names(path.read_text(encoding="utf-8")) & set(NOT_IN_THE_CLIENT)
        if used:
            found[path.relative_to(package).as_posix()] = sorted(used)
    return found


def test_the_client_sdk_imports_nothing_of_the_product_even_lazily() -> None:
    # The import probe above sees module-level imports only; a function-local one would break
    # a client-only install the first time the function runs.
    assert len(list(FOLDERS[CLIENT].glob("*.py"))) > 3
    assert client_outside_imports(FOLDERS[CLIENT]) == {}


def test_the_client_check_can_fail(tmp_path: Path) -> None:
    (tmp_path / "__init__.py").write_text("")
    (tmp_path / "contract.py").write_text(
        "def _document():\n    from bifente.edged.api.openrpc import document\n"
        "    return document()\n")
    (tmp_path / "tls.py").write_text("from smartcard.System import readers\n")
    assert client_outside_imports(tmp_path) == {"contract.py": [EDGED], "tls.py": ["smartcard"]}


@pytest.mark.parametrize(("source", "layer"), [
    ("import bifente.apdu.tlv", APDU), ("from bifente.edged.cli import sim", EDGED),
    ("def f():\n    from bifente.simulators import cps3\n", SIMULATORS),
    ("__import__('bifente.apdu')", APDU),
    ("import importlib\nimportlib.import_module('bifente.simulators.world')", SIMULATORS)])
def test_the_static_check_sees_host_imports(source: str, layer: str) -> None:
    assert layer in imported_names(source)


# -- inside edged: daemon / cli -> api -> services -> readers, state -------------------------
# A module may import its own layer or lower ones, never a higher one; function-local and
# TYPE_CHECKING imports count too (they are how an import circle hides).
EDGED_LAYERS = {f"{EDGED}.{module}": rank for module, rank in {
    "__main__": 4, "daemon": 4, "cli": 4, "bridge": 4, "simulation": 4, "early": 4,
    "api": 3,
    "services": 2,
    "readers": 1, "state": 1, "events": 1, "config": 1, "discovery": 1, "systemd": 1,
    "limits": 1, "peers": 1, "version": 1, "shutdown": 1, "memory": 1,
}.items()}


def layer_of(module: str, layers: dict[str, int]) -> int | None:
    """The rank of the longest layer prefix of module (None: not in a layer)."""
    best = max((p for p in layers if module == p or module.startswith(p + ".")),
               key=len, default=None)
    return None if best is None else layers[best]


def package_modules(folder: Path, package: str) -> dict[str, Path]:
    """module name -> file, for the package `package` whose folder is `folder`."""
    modules: dict[str, Path] = {}
    for path in folder.rglob("*.py"):
        parts = (package, *path.relative_to(folder).with_suffix("").parts)
        modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return modules


def package_imports(folder: Path, package: str) -> dict[str, set[str]]:
    """module -> the modules of `package` it imports (every import statement, anywhere)."""
    modules = package_modules(folder, package)
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
    graph = package_imports(FOLDERS[EDGED], EDGED)
    assert {f"{EDGED}.{m}" for m in ("api.methods", "services.dmp", "readers.arbiter")} \
        <= set(graph)
    outside = sorted(m for m in graph if m != EDGED and layer_of(m, EDGED_LAYERS) is None)
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


@pytest.mark.parametrize("package", [APDU, CONTRACTS, EDGED, CLIENT])
def test_the_product_has_no_import_circle(package: str) -> None:
    # Across packages the layer tests above already forbid a way back (the client,
    # contracts <- apdu <- edged), so a circle could only live inside one package.
    graph = package_imports(FOLDERS[package], package)
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
    (pkg / "api" / "methods.py").write_text("from bifente.edged.services import dmp\n")
    (pkg / "services" / "dmp.py").write_text(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    import bifente.edged.api.methods\n")
    graph = package_imports(pkg, EDGED)
    assert upward_imports(graph, EDGED_LAYERS) == [
        "bifente.edged.services.dmp -> bifente.edged.api.methods"]
    assert import_cycles(graph) == [[f"{EDGED}.api.methods", f"{EDGED}.services.dmp"]]


def test_the_firmware_circle_check_can_fail(tmp_path: Path) -> None:
    (tmp_path / "firmware").mkdir()
    (tmp_path / "firmware" / "link.py").write_text("import terminal\n")
    (tmp_path / "firmware" / "terminal.py").write_text("from link import Frame\n")
    assert import_cycles(firmware_imports(tmp_path)) == [["link", "terminal"]]


# -- one door from edged to the simulated parts ------------------------------------------------
# edged/simulation.py alone builds simulated parts (one SimulatedWorld, simulators/world.py);
# the other edged modules may use the simulators' tools (the terminal's control client, profiles,
# key names) but never start a card bench, a terminal, a mail operator or a DMP host by hand.
SIM_SEAM = f"{EDGED}.simulation"
SIM_PART_MODULES = {f"{SIMULATORS}.{m}" for m in ("world", "slots", "pcscd")}
SIM_PART_PACKAGES = SIM_PART_MODULES | {f"{SIMULATORS}.{m}" for m in (
    "terminal", "terminal.supervisor", "mail", "mail.operator", "dmp", "dmp.host")}
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
            elif module == SIMULATORS or module.startswith(SIMULATORS + "."):
                found += [f"{module}.{a.name}" for a in node.names
                          if a.name in SIM_PARTS or f"{module}.{a.name}" in SIM_PART_PACKAGES]
    return found


def test_only_the_simulation_seam_starts_simulated_parts() -> None:
    modules = package_modules(FOLDERS[EDGED], EDGED)
    assert SIM_SEAM in modules
    offenders = {}
    for module, path in sorted(modules.items()):
        if module == SIM_SEAM:
            continue
        if found := simulated_parts_imported(path.read_text(encoding="utf-8")):
            offenders[module] = found
    assert offenders == {}
    seam = (ROOT / "edged" / "simulation.py").read_text(encoding="utf-8")
    assert "bifente.simulators.world" in seam  # the seam is where the world comes from


@pytest.mark.parametrize("source", [
    "from bifente.simulators.slots import SimulatedSlots",
    "def f():\n    from bifente.simulators.terminal import VirtualTerminal\n",
    "from bifente.simulators.terminal.supervisor import VirtualTerminal",
    "from bifente.simulators.mail import MailOperator, mail_table",
    "from bifente.simulators.dmp import DmpHost",
    "import bifente.simulators.dmp.host",
    "from bifente.simulators import mail",
    "from bifente.simulators.world import CardsOn",
    "from bifente.simulators.pcscd import ensure_pcscd",
])
def test_the_simulation_seam_check_sees_parts(source: str) -> None:
    assert simulated_parts_imported(source)


@pytest.mark.parametrize("source", [
    "from bifente.simulators.terminal.control import TerminalControl",
    "from bifente.simulators.terminal.supervisor import expand_keys",
    "from bifente.simulators.profiles import load_cps",
    "from bifente.simulators.mail import TEST_PASSWORD, describe",
    "from bifente.edged.simulation import simulated_world",
])
def test_the_simulation_seam_check_lets_tools_through(source: str) -> None:
    assert simulated_parts_imported(source) == []


# -- the reference DMP host: two doors over one patient domain --------------------------------
# The JSON API and the patient pages both call the patient domain (simulators/dmp/patient/),
# where the patient's session, the rules and the traces are: neither door goes through the
# other (no page forging requests to the API's handlers), and the domain knows no door and no
# HTTP.
DMP_DOORS = ("bifente.simulators.dmp.api", "bifente.simulators.dmp.pages")
DMP_DOMAIN = "bifente.simulators.dmp.patient"
DMP_HTTP = ("bifente.simulators.dmp.server", "bifente.simulators.dmp.host")


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
    graph = package_imports(FOLDERS[SIMULATORS], SIMULATORS)
    assert DMP_DOMAIN in graph["bifente.simulators.dmp.api.base"]
    assert DMP_DOMAIN in graph["bifente.simulators.dmp.pages.context"]
    assert dmp_door_crossings(graph) == []


def test_the_dmp_door_check_can_fail() -> None:
    graph = {"bifente.simulators.dmp.pages.context": {"bifente.simulators.dmp.api"},
             "bifente.simulators.dmp.patient.base": {"bifente.simulators.dmp.server"},
             "bifente.simulators.dmp.api.patient": {"bifente.simulators.dmp.patient"}}
    assert dmp_door_crossings(graph) == [
        "bifente.simulators.dmp.pages.context -> bifente.simulators.dmp.api",
        "bifente.simulators.dmp.patient.base -> bifente.simulators.dmp.server"]
