"""Helpers for tests/sdk_js: run compiled tests with `node --test`, pair as the front desk does."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

from bifente.client import Credentials, pair
from bifente.simulators.terminal.control import TerminalControl

__all__ = ["Edged", "NodeRun", "pair_on_display", "run_node"]


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


async def pair_on_display(edged: Edged, name: str, scopes: list[str]) -> Credentials:
    """Pair through the Python SDK, the code read off the virtual display."""
    control = TerminalControl(edged.control)

    async def read_code() -> str:
        screen = ""
        for _ in range(150):
            screen = "\n".join(await asyncio.to_thread(control.screen))
            if m := re.search(r"\d{6}", screen):
                return m.group(0)
            await asyncio.sleep(0.1)
        raise AssertionError(f"no pairing code on the terminal: {screen}")

    return await pair(edged.host, edged.port, edged.fingerprint, name, scopes, read_code)
