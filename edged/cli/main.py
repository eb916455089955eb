"""Entry point of the `bifente` command."""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys

from bifente.client import contract
from bifente.edged.cli import (
    admin,
    audit,
    bridge,
    cards,
    demo,
    discover,
    dmp,
    mail,
    output,
    proxy,
    remote,
    sim,
)
from bifente.edged.cli.errors import describe_error
from bifente.edged.simulation import require_simulators

__all__ = ["main"]


def _version() -> str:
    from bifente.edged.version import VERSION

    return VERSION


def build_parser() -> argparse.ArgumentParser:
    """The whole command tree."""
    parser = argparse.ArgumentParser(
        prog="bifente", description="bifente: dual-slot CPS + Vitale health-card terminal")
    parser.add_argument("-v", "--verbose", action="count", default=0,
                        help="log more (-v info, -vv debug and tracebacks)")
    parser.add_argument("--version", action="version", version=f"bifente {_version()}")
    parser.add_argument("--remote", metavar="TERMINAL", default=None,
                        help="vitale read, cps info and cps verify through a paired edged "
                        "(host, fingerprint prefix or paired name) instead of a local reader")
    parser.add_argument("--json", dest="json_all", action="store_true",
                        help="machine-readable output for the command (same as COMMAND --json)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    cards.add_parsers(sub)
    discover.add_parsers(sub)
    remote.add_parsers(sub)
    mail.add_parsers(sub)
    dmp.add_parsers(sub)
    proxy.add_parsers(sub)
    bridge.add_parsers(sub)
    audit.add_parsers(sub)
    admin.add_parsers(sub)
    sim.add_parsers(sub)
    demo.add_parsers(sub)
    _json_everywhere(parser)
    return parser


def _json_everywhere(parser: argparse.ArgumentParser) -> None:
    """Give every command --json; those without a JSON form of their own get JSON Lines."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                _json_everywhere(sub)
            return
    if parser is None or parser.prog == "bifente":
        return
    if any("--json" in a.option_strings for a in parser._actions):
        parser.set_defaults(native_json=True)
    else:
        parser.add_argument("--json", action="store_true",
                            help="JSON Lines on stdout: text lines, results, errors")


def _check_answers() -> None:
    """With BIFENTE_CHECK_ANSWERS=1, the SDK checks answers against the daemon's own contract."""
    if contract.enabled():
        from bifente.edged.api.openrpc import document

        contract.use_document(document)


def main(argv: list[str] | None = None) -> int:
    """Run one command; errors become one line on stderr and a non-zero exit code."""
    _check_answers()
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=[logging.WARNING, logging.INFO, logging.DEBUG][min(args.verbose, 2)],
                        format="%(levelname)s %(name)s: %(message)s")
    json_mode = bool(getattr(args, "json", False) or args.json_all)
    lines = json_mode and not getattr(args, "native_json", False)
    if json_mode:
        args.json = True
    real_stdout = sys.stdout
    if lines:
        from bifente.client.client import Client

        sys.stdout = output.JsonLines(real_stdout)
        Client.on_result = lambda method, result: output.emit(
            {"method": method, "result": result}, real_stdout)
    try:
        if args.command in ("sim", "demo"):
            require_simulators(f"bifente {args.command}")
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # the edge: every error becomes one clear line
        message, code = describe_error(exc)
        if args.verbose >= 2:
            raise
        print(f"bifente: {message}", file=sys.stderr)
        if json_mode:
            with contextlib.suppress(OSError):
                output.emit(output.error_object(message, code, exc), real_stdout)
        if isinstance(exc, BrokenPipeError):  # keep Python from failing again at exit
            with contextlib.suppress(OSError):
                os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return code
    finally:
        if lines:
            with contextlib.suppress(OSError, ValueError):
                sys.stdout.flush()
            sys.stdout = real_stdout


if __name__ == "__main__":
    raise SystemExit(main())
