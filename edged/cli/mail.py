"""`bifente mail ...`: secure health mail through a paired terminal."""

from __future__ import annotations

import argparse

__all__ = ["add_parsers"]


def add_parsers(sub: argparse._SubParsersAction) -> None:
    """Register `bifente mail` (its subcommands are added by the mail module's owner)."""
