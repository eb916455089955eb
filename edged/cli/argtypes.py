"""argparse types shared by the `bifente` commands and `edged` itself."""

from __future__ import annotations

import argparse

__all__ = ["port"]


def port(text: str) -> int:
    """A TCP port: 0 (pick a free one) to 65535."""
    try:
        number = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from None
    if not 0 <= number <= 65535:
        raise argparse.ArgumentTypeError(f"{number} is not a port number (0-65535)")
    return number
