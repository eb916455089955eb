"""`bifente discover`: terminals on this network by mDNS, and static addresses checked."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys

from bifente.edged.discovery import Terminal, browse, format_fingerprint, parse_static

__all__ = ["NOT_FOUND", "add_parsers", "describe_terminal"]

NOT_FOUND = ("no bifente terminal found on this network (mDNS); "
             "use --static HOST:PORT#sha256:FP")


def _timeout(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not 0 <= value <= 60:
        raise argparse.ArgumentTypeError("the timeout must be 0 to 60 seconds")
    return value


def describe_terminal(t: Terminal) -> str:
    """A terminal for people: addresses, port, fingerprint in 4-digit groups, capabilities."""
    groups = format_fingerprint(t.fingerprint).split(" ")
    details = ", ".join(x for x in (f"protocol v{t.version}" if t.version else "",
                                    t.model, "static" if t.source == "static" else "") if x)
    addresses = ", ".join(t.addresses) or t.host
    lines = [f"{t.name}" + (f"  ({details})" if details else ""),
             f"  address      {addresses}  port {t.port}",
             f"  fingerprint  sha256 {' '.join(groups[:8])}",
             f"                      {' '.join(groups[8:])}"]
    if t.capabilities:
        lines.append(f"  capabilities {', '.join(t.capabilities)}")
    if t.source == "mdns":
        lines.append(f"  host         {t.host}")
    return "\n".join(lines)


def _discover(args: argparse.Namespace) -> int:
    terminals = [parse_static(s) for s in args.static]
    if args.timeout > 0:
        try:
            terminals += asyncio.run(browse(args.timeout, interfaces=args.interface or None))
        except OSError as exc:
            if not args.interface:
                raise
            raise ValueError(f"cannot browse on {', '.join(args.interface)}: "
                             f"{exc.strerror or exc} (give the IP address of one of this "
                             "computer's interfaces)") from exc
    if args.json:
        print(json.dumps([t.to_json() for t in terminals], indent=2, ensure_ascii=False))
    else:
        print("\n\n".join(describe_terminal(t) for t in terminals) if terminals else "", end="")
        if terminals:
            print()
    if not terminals:
        print(NOT_FOUND, file=sys.stderr)
    return 0


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register `bifente discover`."""
    p = sub.add_parser(
        "discover", help="find terminals on this network (mDNS) with their fingerprints",
        description="Browse mDNS for _bifente._tcp terminals. Compare the fingerprint with the "
                    "one the terminal shows before pairing; where mDNS does not cross the "
                    "network, give the terminal as --static HOST:PORT#sha256:FINGERPRINT.")
    p.add_argument("--timeout", type=_timeout, default=3.0, metavar="S",
                   help="seconds to listen for answers (default 3; 0 skips mDNS)")
    p.add_argument("--json", action="store_true", help="print a JSON list of terminals")
    p.add_argument("--static", action="append", default=[], metavar="HOST:PORT#sha256:FP",
                   help="also list this terminal, checking the syntax (repeatable)")
    p.add_argument("--interface", action="append", default=[], metavar="ADDRESS",
                   help="browse only on the interface with this IP address (repeatable)")
    p.set_defaults(func=_discover)
