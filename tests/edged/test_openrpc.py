"""The machine-readable contract: docs/openrpc.json, rpc.discover and the error table."""

from __future__ import annotations

import ast
import json
import subprocess
from pathlib import Path

import jsonschema
import pytest

from bifente.edged.api import contract, openrpc
from bifente.edged.api.methods import METHODS

ROOT = Path(__file__).resolve().parents[2]


def test_openrpc_json_is_generated_from_the_method_table() -> None:
    assert openrpc.TARGET.read_text() == openrpc.render(), \
        "run: python -m bifente.edged.api.openrpc"


def test_every_method_has_a_complete_result_schema() -> None:
    doc = openrpc.document()
    names = {m["name"] for m in doc["methods"]}
    assert names == set(METHODS) - {"rpc.discover"}
    for method in doc["methods"]:
        schema = method["result"]["schema"]
        jsonschema.Draft7Validator.check_schema(schema)
        assert schema.get("type") == "object", method["name"]
        if schema.get("properties"):
            assert schema.get("required"), f"{method['name']}: result lists no required field"
        for param in method["params"]:
            jsonschema.Draft7Validator.check_schema(param["schema"])


def _walk(schema: object) -> list[dict]:
    found: list[dict] = []
    if isinstance(schema, dict):
        found.append(schema)
        for value in schema.values():
            found += _walk(value)
    elif isinstance(schema, list):
        for value in schema:
            found += _walk(value)
    return found


def test_patterns_are_anchored_and_maxima_fit_the_message() -> None:
    from bifente.edged.config import Config

    for method in openrpc.document()["methods"]:
        for node in _walk([p["schema"] for p in method["params"]]) + _walk(method["result"]):
            pattern = node.get("pattern")
            if isinstance(pattern, str):
                assert pattern.startswith("^") and pattern.endswith("$"), (method["name"],
                                                                           pattern)
            if isinstance(node.get("maxLength"), int):
                assert node["maxLength"] < Config().max_message_bytes - 256, method["name"]


def test_standard_validator_agrees_with_the_daemon_on_anchors() -> None:
    from bifente.edged.api.schema import SchemaError, validate

    params = METHODS["pair.complete"].params
    for code in ("1234567", "12345", "12a456"):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate({"pairing_id": "x", "code": code}, params)
        with pytest.raises(SchemaError):
            validate({"pairing_id": "x", "code": code}, params)


def _reasons_in_code() -> set[str]:
    """Every literal reason given to RpcError(code, message, reason, ...) or to the services'
    ServiceError(family, reason, ...) in edged/."""
    reasons = set()
    for path in (ROOT / "edged").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.Call):
                continue
            name = getattr(node.func, "id", None)
            if (name == "RpcError" and len(node.args) >= 3
                    and isinstance(node.args[2], ast.Constant)):
                reasons.add(node.args[2].value)
            elif (name == "ServiceError" and len(node.args) >= 2
                  and isinstance(node.args[1], ast.Constant)):
                reasons.add(node.args[1].value)
    return reasons


def test_every_error_reason_in_the_code_is_in_the_table() -> None:
    missing = _reasons_in_code() - contract.all_reasons()
    assert not missing, f"reasons missing from edged/api/contract.py: {sorted(missing)}"


def test_every_event_has_a_params_schema() -> None:
    from bifente.edged.api.methods import EVENT_NAMES

    assert set(contract.EVENTS) == set(EVENT_NAMES)
    for _summary, schema in contract.EVENTS.values():
        jsonschema.Draft7Validator.check_schema(schema)


def _node_tool(*args: str) -> subprocess.CompletedProcess[str]:
    tool = ROOT / "tools" / "openrpc"
    if not (tool / "node_modules" / "@open-rpc" / "schema-utils-js").exists():
        pytest.fail("tools/openrpc/node_modules is missing: run make setup")
    return subprocess.run(["node", str(tool / "validate.mjs"), *args], capture_output=True,
                          text=True, timeout=60, check=False)


def test_openrpc_document_passes_the_published_validator() -> None:
    """@open-rpc/schema-utils-js validateOpenRPCDocument (npm, installed by make setup)."""
    done = _node_tool(str(openrpc.TARGET))
    assert done.returncode == 0, done.stderr


def test_openrpc_document_validates_against_the_meta_schema_with_jsonschema() -> None:
    from referencing import Registry, Resource
    from referencing.jsonschema import DRAFT7

    metas = json.loads(_node_tool("--meta-schema").stdout)
    json_schema = Resource.from_contents(metas["jsonSchema"], default_specification=DRAFT7)
    registry = Registry().with_resources([("https://meta.json-schema.tools", json_schema),
                                          ("https://meta.json-schema.tools/", json_schema)])
    validator = jsonschema.Draft7Validator(metas["openrpc"], registry=registry)
    errors = [e.message for e in validator.iter_errors(json.loads(openrpc.TARGET.read_text()))]
    assert not errors


def test_the_validator_rejects_a_broken_document(tmp_path: Path) -> None:
    broken = json.loads(openrpc.TARGET.read_text())
    with_params = next(m for m in broken["methods"] if m["params"])
    with_params["params"][0]["required"] = "yes"
    path = tmp_path / "broken.json"
    path.write_text(json.dumps(broken))
    assert _node_tool(str(path)).returncode == 1


def test_answer_checking_is_on_and_catches_a_mismatch() -> None:
    from bifente.client import contract

    assert contract.enabled(), "tests/conftest.py sets BIFENTE_CHECK_ANSWERS=1"
    contract.check_result("cps.pin_status", {"tries_left": 3, "max_tries": 3, "blocked": False})
    with pytest.raises(contract.ContractViolation, match="blocked"):
        contract.check_result("cps.pin_status", {"tries_left": 3, "max_tries": 3})
    with pytest.raises(contract.ContractViolation, match="not in the table"):
        contract.check_error({"code": -32602, "message": "x", "data": {"reason": "made_up"}})
    with pytest.raises(contract.ContractViolation):
        contract.check_event("card.inserted", {"slot": "0", "time": 1.0})



Def = tuple[str, str | None, str]  # (module path, class or None, function name)


def _functions_reaching_the_space_guard() -> set[Def]:
    """The functions of edged/ that call the disk space guard (`space.check`, which raises
    DiskFull: -32005 disk_full), directly or through others. Calls are resolved by name: a
    plain name to the functions of that name, `x.name` to the methods of that name (a nested
    function counts as its enclosing one's body; a function handed to another, such as
    `to_thread(store.chunk, ...)`, counts as called)."""
    calls: dict[Def, tuple[set[str], set[str]]] = {}
    functions: dict[str, list[Def]] = {}
    methods: dict[str, list[Def]] = {}
    reached: set[Def] = set()

    def visit(path: str, body: list[ast.stmt], cls: str | None) -> None:
        for node in body:
            if isinstance(node, ast.ClassDef):
                visit(path, node.body, node.name)
            if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            key, names, attrs = (path, cls, node.name), set(), set()
            for call in (n for n in ast.walk(node) if isinstance(n, ast.Call)):
                for ref in (call.func, *call.args):
                    if isinstance(ref, ast.Name):
                        names.add(ref.id)
                    elif isinstance(ref, ast.Attribute):
                        attrs.add(ref.attr)
                guard = call.func
                if isinstance(guard, ast.Attribute) and guard.attr == "check" \
                        and isinstance(guard.value, ast.Attribute) \
                        and guard.value.attr in ("space", "_space"):
                    reached.add(key)
            calls[key] = (names, attrs)
            (methods if cls else functions).setdefault(node.name, []).append(key)

    for path in (ROOT / "edged").rglob("*.py"):
        visit(str(path.relative_to(ROOT)), ast.parse(path.read_text()).body, None)
    while True:
        more = {key for key, (names, attrs) in calls.items() if key not in reached
                and any(target in reached
                        for target in [*(d for n in names for d in functions.get(n, [])),
                                       *(d for a in attrs for d in methods.get(a, []))])}
        if not more:
            return reached
        reached |= more


def test_every_method_that_writes_durable_state_declares_disk_full() -> None:
    from bifente.client.codes import STORAGE_FULL

    reached = _functions_reaching_the_space_guard()
    handlers = {name for _path, cls, name in reached if cls is None}
    writers = {name for name, m in METHODS.items() if m.handler.__name__ in handlers}
    # Resolution by name only: pair.begin calls PairingManager.begin, which writes nothing
    # (checked here), not Uploads.begin.
    assert ("edged/api/pairing.py", "PairingManager", "begin") not in reached
    writers -= {"pair.begin"}
    # The search finds the known writers (it is not vacuous)...
    assert {"mail.send", "dmp.feed", "upload.begin", "upload.chunk"} <= writers
    # ...and each of them declares the error its guard raises, in the published document too.
    undeclared = sorted(name for name in writers if STORAGE_FULL not in METHODS[name].errors)
    assert not undeclared, f"declare STORAGE_FULL (-32005) on: {undeclared}"
    documented = {m["name"] for m in openrpc.document()["methods"]
                  if STORAGE_FULL in [e["code"] for e in m["errors"]]}
    assert writers <= documented


def test_every_declared_error_is_in_the_error_table() -> None:
    codes = {kind.code for kind in contract.ERRORS}
    for method in METHODS.values():
        assert set(method.errors) <= codes, method.name


def test_rpc_discover_builds_the_document_once() -> None:
    # Callable before pairing: a call hands out the document built on the first one, never
    # a rebuild (the same object each time), and it is the published one.
    import asyncio

    discover = METHODS["rpc.discover"].handler
    first = asyncio.run(discover(None, None, {}))  # type: ignore[arg-type]
    again = asyncio.run(discover(None, None, {}))  # type: ignore[arg-type]
    assert again is first
    assert first == json.loads(openrpc.TARGET.read_text())
