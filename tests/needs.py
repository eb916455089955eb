"""What to do when a test lacks a tool or a right that `make setup` (run as root) provides.

On a developer machine that has not run `make setup`, the test is skipped with the reason;
under CI (CI set, as .ci/run runs) the same absence is a failure: a skipped test proves
nothing, and CI must run them all.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import NoReturn

import pytest

__all__ = ["missing", "tmpfs"]


def missing(reason: str) -> NoReturn:
    """Skip for `reason` (a missing tool or right), or fail when running under CI."""
    if not os.environ.get("CI"):  # a developer machine without `make setup`: say what is missing
        pytest.skip(reason)
    pytest.fail(f"{reason}; make setup provides it, so CI must not skip")


@contextlib.contextmanager
def tmpfs(where: Path, size: str = "1m") -> Iterator[Path]:
    """A small tmpfs of our own at `where` (root only: `missing` otherwise)."""
    where.mkdir()
    if os.geteuid() != 0:
        missing("mounting a tmpfs needs root (CI and the dev machines run as root)")
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs",
                    str(where)], check=True)
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)
