"""Code blocks of the docs, read and run exactly as a reader would copy them."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

__all__ = ["DOCS", "bash", "block_after", "integrators_schemas"]

DOCS = Path(__file__).resolve().parents[1] / "docs"


def block_after(doc: str, marker: str, lang: str = "sh") -> str:
    """The first ```lang block after `marker` in docs/`doc`."""
    text = (DOCS / doc).read_text()
    at = text.index(marker)
    found = re.compile(rf"^```{lang}\n(.*?)^```", re.S | re.M).search(text, at)
    assert found is not None, f"docs/{doc}: no {lang} block after {marker!r}"
    return found.group(1)


def bash(script: str, cwd: Path, env: dict[str, str],
         timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """Run a shell block as `bash -euo pipefail`: the first failing line fails the block."""
    return subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout, check=False)


def integrators_schemas(folder: Path, env: dict[str, str]) -> Path:
    """docs/integrators.md step 1 run in `folder`, beside a copy of docs/openrpc.json."""
    (folder / "docs").mkdir(exist_ok=True)
    shutil.copy(DOCS / "openrpc.json", folder / "docs" / "openrpc.json")
    result = bash(block_after("integrators.md", "Step 1: one schema file per type"), folder, env)
    assert result.returncode == 0, result.stderr[-2000:]
    return folder / "schemas"
