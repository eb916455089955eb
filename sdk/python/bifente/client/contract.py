"""Check every answer against the OpenRPC document (tests, and anyone who sets the variable).

With BIFENTE_CHECK_ANSWERS=1 in the environment (the test session sets it, so the CLI run
as a subprocess checks too), the SDK validates each result against its method's result
schema, each error against the error table, and each event against its params schema, with
the `jsonschema` package; a mismatch raises ContractViolation.

The document comes from whoever holds it: use_document() names a function returning it. The
SDK knows no daemon code, so the product (the `bifente` command, the test session) passes the
daemon's own (edged/api/openrpc.py, the source of docs/openrpc.json); an integrator may pass
one read from docs/openrpc.json.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from typing import Any

__all__ = ["ENV", "ContractViolation", "check_error", "check_event", "check_result", "enabled",
           "use_document"]

ENV = "BIFENTE_CHECK_ANSWERS"


class ContractViolation(AssertionError):
    """An answer that does not match the published contract (docs/openrpc.json)."""


def enabled() -> bool:
    """True when answers are checked (BIFENTE_CHECK_ANSWERS=1)."""
    return os.environ.get(ENV) == "1"


_source: list[Callable[[], dict[str, Any]]] = []  # the function use_document() was given


def use_document(source: Callable[[], dict[str, Any]]) -> None:
    """Check answers against the OpenRPC document source() returns (called once, when needed)."""
    _source[:] = [source]
    _document.cache_clear()
    _validator.cache_clear()


@functools.cache
def _document() -> dict[str, Any]:
    if not _source:
        raise ContractViolation(f"{ENV}=1 but there is no OpenRPC document to check answers "
                                "against: call bifente.client.contract.use_document() first")
    return _source[0]()


@functools.cache
def _validator(kind: str, name: str) -> Any:
    import jsonschema

    doc = _document()
    if kind == "result":
        schemas = {m["name"]: m["result"]["schema"] for m in doc["methods"]}
    else:
        schemas = {e["name"]: e["params"] for e in doc["x-events"]}
    if name not in schemas:
        return None
    return jsonschema.Draft7Validator(schemas[name],
                                      format_checker=jsonschema.Draft7Validator.FORMAT_CHECKER)


def _check(kind: str, name: str, value: Any) -> None:
    validator = _validator(kind, name)
    if validator is None:
        if kind == "result" and name == "rpc.discover":
            return
        raise ContractViolation(f"{name}: no {kind} schema in the OpenRPC document")
    problems = [f"{'/'.join(map(str, e.absolute_path)) or '(top)'}: {e.message}"
                for e in validator.iter_errors(value)]
    if problems:
        raise ContractViolation(f"{name} {kind} does not match its schema: "
                                + "; ".join(problems[:5]))


def check_result(method: str, result: Any) -> None:
    """Raise ContractViolation when a result does not match its method's result schema."""
    _check("result", method, result)


def check_event(name: str, params: Any) -> None:
    """Raise ContractViolation when an event's params do not match its schema."""
    _check("event", name, params)


def check_error(error: Any) -> None:
    """Raise ContractViolation for an error whose code or data.reason is not in the table."""
    table = {e["code"]: e for e in _document()["x-errors"]}
    if not isinstance(error, dict) or not isinstance(error.get("code"), int) \
            or not isinstance(error.get("message"), str):
        raise ContractViolation(f"malformed error object: {error!r}")
    kind = table.get(error["code"])
    if kind is None:
        raise ContractViolation(f"error code {error['code']} is not in the error table")
    reason = (error.get("data") or {}).get("reason")
    if not isinstance(reason, str):
        raise ContractViolation(f"error {error['code']} has no data.reason")
    if reason not in kind["reasons"] and error["code"] != -32060:  # DMP: host's own codes
        raise ContractViolation(f"error {error['code']} reason {reason!r} is not in the table")
