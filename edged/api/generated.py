"""The command line shared by the generated documents (docs/protocol.md, docs/openrpc.json)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

__all__ = ["write_or_check"]


def write_or_check(target: Path, render: Callable[[], str], module: str, description: str,
                   argv: list[str] | None = None) -> int:
    """Write `target` from `render()`, or with --check exit 1 when the file is stale."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--check", action="store_true")
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        if not target.exists() or target.read_text() != text:
            print(f"{target.name} is stale: run python -m {module}", file=sys.stderr)
            return 1
        return 0
    target.write_text(text)
    print(f"wrote {target}")
    return 0
