"""What to do when a test lacks a tool or a right that `make setup` (run as root) provides.

On a developer machine that has not run `make setup`, the test is skipped with the reason;
under CI (CI set, as .ci/run runs) the same absence is a failure: a skipped test proves
nothing, and CI must run them all.
"""

from __future__ import annotations

import os
from typing import NoReturn

import pytest

__all__ = ["missing"]


def missing(reason: str) -> NoReturn:
    """Skip for `reason` (a missing tool or right), or fail when running under CI."""
    if os.environ.get("CI"):
        pytest.fail(f"{reason}; make setup provides it, so CI must not skip")
    pytest.skip(reason)
