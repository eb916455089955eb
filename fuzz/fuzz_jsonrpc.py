"""JSON-RPC request decoder (jsonrpc.org/specification) and every method's params schema."""

from __future__ import annotations

import json
from collections.abc import Iterator

import atheris

with atheris.instrument_imports(include=["bifente.edged.api.jsonrpc", "bifente.edged.api.schema"]):
    from bifente.edged.api.jsonrpc import RpcError, parse_message
    from bifente.edged.api.methods import METHODS
    from bifente.edged.api.schema import SchemaError, validate

from fuzz.common import main


def target(data: bytes) -> None:
    """Decode one WebSocket text message, then check its params against the method's schema."""
    request = parse_message(data)
    method = METHODS.get(request.method)
    if method is not None:
        validate(request.params, method.params)


def _example(schema: dict) -> object:
    kind = schema.get("type")
    kind = kind[0] if isinstance(kind, list) else kind
    if "enum" in schema:
        return schema["enum"][0]
    if "anyOf" in schema:
        return _example(schema["anyOf"][0])
    return {"object": lambda: {k: _example(v) for k, v in schema.get("properties", {}).items()},
            "array": lambda: [_example(schema.get("items", {}))],
            "string": lambda: "MTIzNA==", "integer": lambda: 1, "number": lambda: 1.5,
            "boolean": lambda: True, "null": lambda: None}.get(kind, lambda: "x")()


def seeds() -> Iterator[bytes]:
    """A request per method with every parameter filled in, and deep nesting (D6)."""
    for i, (name, method) in enumerate(sorted(METHODS.items())):
        yield json.dumps({"jsonrpc": "2.0", "id": i, "method": name,
                          "params": _example(method.params)}).encode()
    yield b'{"jsonrpc":"2.0","method":"system.info","params":' + b"[" * 1200
    yield b'{"jsonrpc":"2.0","id":"a","method":"x","params":{"k":' + b'{"a":' * 600


if __name__ == "__main__":
    main("jsonrpc", target, (RpcError, SchemaError), seeds)
