"""A small JSON Schema subset validator: the method schemas are the docs and the checks.

Supports type, properties, required, additionalProperties (false), enum, pattern, minLength,
maxLength, minimum, maximum, items, minItems, maxItems, anyOf; annotations (description,
format, contentEncoding, contentMediaType) are documentation. Patterns are written anchored
(^...$) so that standard validators agree with this one. The same schema dicts are
rendered into docs/protocol.md, so the documentation cannot drift from what is enforced.
"""

from __future__ import annotations

import re
from typing import Any

__all__ = ["SchemaError", "empty_matches", "validate"]

_TYPES: dict[str, type | tuple[type, ...]] = {
    "object": dict, "array": list, "string": str, "integer": int, "number": (int, float),
    "boolean": bool, "null": type(None),
}


class SchemaError(ValueError):
    """A value does not match its schema; the message names the path."""


def empty_matches(schema: dict[str, Any]) -> bool:
    """True when `{}` matches `schema` with nothing to check: an object schema with no
    required member and no alternatives (the parameters of most calls)."""
    return (schema.get("type") == "object" and not schema.get("required")
            and "anyOf" not in schema and "enum" not in schema)


def validate(value: Any, schema: dict[str, Any], path: str = "params") -> None:
    """Raise SchemaError at the first mismatch."""
    if "anyOf" in schema:
        errors = []
        for option in schema["anyOf"]:
            try:
                validate(value, option, path)
                return
            except SchemaError as exc:
                errors.append(str(exc))
        raise SchemaError(f"{path}: matches none of the allowed forms ({'; '.join(errors)})")
    kind = schema.get("type")
    if kind is not None:
        kinds = kind if isinstance(kind, list) else [kind]
        ok = any(isinstance(value, _TYPES[k]) and not (
            k in ("integer", "number") and isinstance(value, bool)) for k in kinds)
        if not ok:
            raise SchemaError(f"{path}: expected {' or '.join(kinds)}")
    if "enum" in schema and value not in schema["enum"]:
        raise SchemaError(f"{path}: must be one of {', '.join(map(str, schema['enum']))}")
    if isinstance(value, str):
        if len(value) < schema.get("minLength", 0):
            raise SchemaError(f"{path}: shorter than {schema['minLength']} characters")
        if "maxLength" in schema and len(value) > schema["maxLength"]:
            raise SchemaError(f"{path}: longer than {schema['maxLength']} characters")
        if "pattern" in schema and not re.fullmatch(schema["pattern"], value):
            raise SchemaError(f"{path}: does not match {schema['pattern']}")
    if isinstance(value, int | float) and not isinstance(value, bool):
        if "minimum" in schema and value < schema["minimum"]:
            raise SchemaError(f"{path}: below {schema['minimum']}")
        if "maximum" in schema and value > schema["maximum"]:
            raise SchemaError(f"{path}: above {schema['maximum']}")
    if isinstance(value, list):
        if len(value) < schema.get("minItems", 0):
            raise SchemaError(f"{path}: fewer than {schema['minItems']} items")
        if "maxItems" in schema and len(value) > schema["maxItems"]:
            raise SchemaError(f"{path}: more than {schema['maxItems']} items")
        for i, item in enumerate(value):
            validate(item, schema.get("items", {}), f"{path}[{i}]")
    if isinstance(value, dict):
        props = schema.get("properties", {})
        for name in schema.get("required", []):
            if name not in value:
                raise SchemaError(f"{path}.{name}: required")
        if schema.get("additionalProperties") is False:
            extra = sorted(set(value) - set(props))
            if extra:
                raise SchemaError(f"{path}: unknown field {extra[0]!r}")
        for name, sub in props.items():
            if name in value:
                validate(value[name], sub, f"{path}.{name}")
