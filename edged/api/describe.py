"""The OpenRPC 1.3 document of a method table (edged/api/openrpc.py writes edged's).

Method schemas are JSON Schema draft-07, self-contained (no `$ref`), so code generators for
TypeScript, C# or Java can use each one alone. This module does not import the method table:
`rpc.discover` (in that table) builds the document from it.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from typing import Any

from bifente.edged.api.contract import CLOSE_CODES, ERRORS, EVENTS
from bifente.edged.api.method import Method

__all__ = ["DISCOVER", "build", "method_errors"]

OPENRPC_VERSION = "1.3.2"
DISCOVER = "rpc.discover"

# Errors any paired method may return, before its own (JSON-RPC 2.0 §5.1 and edged's); an
# unpaired method cannot be refused for pairing, scope or revocation. A method's own codes are
# declared on its entry in the method table (`Method.errors`).
_COMMON = (-32600, -32602, -32603, -32000, -32001, -32002, -32003, -32004)
_PAIRED_ONLY = (-32000, -32001, -32002)


def method_errors(method: Method) -> list[dict[str, Any]]:
    """The OpenRPC error objects a method can answer with (codes and their reasons)."""
    codes = [c for c in _COMMON if not (method.unpaired and c in _PAIRED_ONLY)]
    codes += method.errors
    by_code = {kind.code: kind for kind in ERRORS}
    return [{"code": code, "message": by_code[code].meaning,
             "data": {"type": "object", "required": ["reason"],
                      "properties": {"reason": {"type": "string",
                                                "enum": list(by_code[code].reasons)}
                                     if not by_code[code].open_ended
                                     else {"type": "string"}}}}
            for code in dict.fromkeys(codes)]


def _params(schema: dict[str, Any]) -> list[dict[str, Any]]:
    required = set(schema.get("required", []))
    return [{"name": name, "required": name in required,
             "schema": copy.deepcopy(sub),
             **({"description": sub["description"]} if "description" in sub else {})}
            for name, sub in schema.get("properties", {}).items()]


def _scopes(method: Any) -> list[str]:
    return sorted(method.scopes)


def build(table: Iterable[Method], version: str) -> dict[str, Any]:
    """The OpenRPC document of these methods (a fresh dict each time)."""
    methods = []
    for method in sorted(table, key=lambda m: m.name):
        if method.name == DISCOVER:
            continue  # OpenRPC: the discovery method is implied, not listed
        methods.append({
            "name": method.name,
            "summary": method.summary,
            "paramStructure": "by-name",
            "params": _params(method.params),
            "result": {"name": "result", "schema": copy.deepcopy(method.result)},
            "errors": method_errors(method),
            "x-scopes": _scopes(method),
            "x-unpaired": method.unpaired,
        })
    return {
        "openrpc": OPENRPC_VERSION,
        "info": {
            "title": "edged",
            "version": version,
            "description": "The bifente terminal's edge daemon: JSON-RPC 2.0 over a WebSocket "
                           "with TLS 1.3 (docs/protocol.md). Named parameters only; errors "
                           "carry data.reason. `x-scopes`: the method needs any one of these "
                           "scopes (none: any paired client); `x-unpaired`: callable before "
                           "pairing. `x-events`: the notifications sent after "
                           "events.subscribe; `x-close-codes`: WebSocket close codes "
                           "(RFC 6455 §7.4).",
            "license": {"name": "Apache-2.0"},
        },
        "servers": [{"name": "edged", "url": "wss://{host}:{port}/",
                     "variables": {"host": {"default": "localhost"},
                                   "port": {"default": "4443"}}}],
        "methods": methods,
        "x-events": [{"name": name, "summary": summary, "params": copy.deepcopy(schema)}
                     for name, (summary, schema) in sorted(EVENTS.items())],
        "x-errors": [{"code": k.code, "message": k.meaning, "reasons": list(k.reasons),
                      **({"data": k.notes} if k.notes else {})} for k in ERRORS],
        "x-close-codes": [{"code": code, "meaning": text} for code, text in CLOSE_CODES],
    }
