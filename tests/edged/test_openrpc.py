"""The machine-readable contract: docs/openrpc.json, rpc.discover and the error table."""

from __future__ import annotations

import ast
import json
import subprocess
from pathlib import Path

import jsonschema
import pytest

from edged.api import contract, openrpc
from edged.api.methods import METHODS

ROOT = Path(__file__).resolve().parents[2]


def test_openrpc_json_is_generated_from_the_method_table() -> None:
    assert openrpc.TARGET.read_text() == openrpc.render(), "run: python -m edged.api.openrpc"


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
    from edged.config import Config

    for method in openrpc.document()["methods"]:
        for node in _walk([p["schema"] for p in method["params"]]) + _walk(method["result"]):
            pattern = node.get("pattern")
            if isinstance(pattern, str):
                assert pattern.startswith("^") and pattern.endswith("$"), (method["name"],
                                                                           pattern)
            if isinstance(node.get("maxLength"), int):
                assert node["maxLength"] < Config().max_message_bytes - 256, method["name"]


def test_standard_validator_agrees_with_the_daemon_on_anchors() -> None:
    from edged.api.schema import SchemaError, validate

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
    from edged.api.methods import EVENT_NAMES

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
    from edged.sdk import contract

    assert contract.enabled(), "tests/conftest.py sets BIFENTE_CHECK_ANSWERS=1"
    contract.check_result("cps.pin_status", {"tries_left": 3, "max_tries": 3, "blocked": False})
    with pytest.raises(contract.ContractViolation, match="blocked"):
        contract.check_result("cps.pin_status", {"tries_left": 3, "max_tries": 3})
    with pytest.raises(contract.ContractViolation, match="not in the table"):
        contract.check_error({"code": -32602, "message": "x", "data": {"reason": "made_up"}})
    with pytest.raises(contract.ContractViolation):
        contract.check_event("card.inserted", {"slot": "0", "time": 1.0})
