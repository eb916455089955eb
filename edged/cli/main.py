"""Entry point of the `bifente` command."""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys

from edged.cli import audit, bridge, cards, demo, discover, dmp, mail, proxy, remote, sim
from edged.cli.errors import describe_error

__all__ = ["main"]


def _version() -> str:
    from edged.daemon import VERSION

    return VERSION


def build_parser() -> argparse.ArgumentParser:
    """The whole command tree."""
    parser = argparse.ArgumentParser(
        prog="bifente", description="bifente: dual-slot CPS + Vitale health-card terminal")
    parser.add_argument("-v", "--verbose", action="count", default=0,
                        help="log more (-v info, -vv debug and tracebacks)")
    parser.add_argument("--version", action="version", version=f"bifente {_version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    cards.add_parsers(sub)
    discover.add_parsers(sub)
    remote.add_parsers(sub)
    mail.add_parsers(sub)
    dmp.add_parsers(sub)
    proxy.add_parsers(sub)
    bridge.add_parsers(sub)
    audit.add_parsers(sub)
    sim.add_parsers(sub)
    demo.add_parsers(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one command; errors become one line on stderr and a non-zero exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=[logging.WARNING, logging.INFO, logging.DEBUG][min(args.verbose, 2)],
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # the edge: every error becomes one clear line
        message, code = describe_error(exc)
        if args.verbose >= 2:
            raise
        print(f"bifente: {message}", file=sys.stderr)
        if isinstance(exc, BrokenPipeError):  # keep Python from failing again at exit
            with contextlib.suppress(OSError):
                os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return code


if __name__ == "__main__":
    raise SystemExit(main())
