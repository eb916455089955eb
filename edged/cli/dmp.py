"""`bifente dmp ...`: the shared medical record (DMP) through a paired terminal."""

from __future__ import annotations

import argparse

__all__ = ["add_parsers"]


def add_parsers(sub: argparse._SubParsersAction) -> None:
    """Register `bifente dmp` (its subcommands are added by the dmp module's owner)."""
