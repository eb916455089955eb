"""Running the TypeScript SDK's compiled tests with `node --test` (helpers for tests/sdk_js)."""

from __future__ import annotations

import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Edged", "NodeRun", "run_node"]


@dataclass(frozen=True)
class Edged:
    """A running `edged --simulate`."""

    host: str
    port: int
    fingerprint: str
    control: str
    state_dir: Path


@dataclass(frozen=True)
class NodeRun:
    """What `node --test` printed and counted."""

    returncode: int
    output: str
    passed: int
    failed: int


def run_node(sdk: Path, tests: str, env: dict[str, str], timeout: float = 240) -> NodeRun:
    """`node --test` on compiled test files (relative to sdk/js/dist); the TAP summary."""
    files = sorted(str(p) for p in (sdk / "dist").glob(tests))
    assert files, f"no compiled tests match {tests}"
    result = subprocess.run(["node", "--test", "--test-reporter=tap", *files], cwd=sdk,
                            env={**os.environ, **env}, capture_output=True, text=True,
                            timeout=timeout, check=False)
    output = result.stdout + result.stderr
    passed = re.search(r"^# pass (\d+)$", output, re.M)
    failed = re.search(r"^# fail (\d+)$", output, re.M)
    return NodeRun(result.returncode, output, int(passed.group(1)) if passed else 0,
                   int(failed.group(1)) if failed else -1)
