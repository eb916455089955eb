"""The OpenRPC 1.3 document of edged's API, generated from its method table.

`python -m bifente.edged.api.openrpc [--check]` writes (or checks) docs/openrpc.json; the daemon
serves the same document from `rpc.discover` (OpenRPC 1.3 "Service Discovery Method"). The
document's shape is in edged/api/describe.py.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bifente.edged.api.describe import build
from bifente.edged.api.generated import write_or_check
from bifente.edged.api.methods import METHODS, PROTOCOL_VERSION

__all__ = ["TARGET", "document", "render"]

TARGET = Path(__file__).resolve().parents[2] / "docs" / "openrpc.json"


def document() -> dict[str, Any]:
    """The OpenRPC document (a fresh dict each time)."""
    return build(METHODS.values(), PROTOCOL_VERSION)


def render() -> str:
    """docs/openrpc.json's text."""
    return json.dumps(document(), indent=2, ensure_ascii=False) + "\n"


def main() -> int:
    """Write docs/openrpc.json, or with --check fail when it is stale."""
    return write_or_check(TARGET, render, "bifente.edged.api.openrpc", __doc__ or "")


if __name__ == "__main__":
    raise SystemExit(main())
