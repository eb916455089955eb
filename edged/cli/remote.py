"""`bifente pair`, `bifente status`, `bifente clients list|revoke`: talking to a daemon."""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import sys
from typing import Any

from bifente.client import Client, Credentials, pair
from bifente.edged.state.clients import SCOPES

__all__ = ["add_parsers", "resolve_target"]

DEFAULT_PORT = 4443


async def resolve_target(target: str, fingerprint: str | None,
                         timeout: float = 3.0) -> tuple[str, int, str]:
    """HOST[:PORT][#sha256:FP] -> (host, port, fingerprint), asking mDNS when FP is missing.

    Without a fingerprint the terminal must answer on mDNS under that address, instance
    name or host name; its announced fingerprint is then pinned.
    """
    from bifente.edged.discovery import browse, parse_static

    if fingerprint and "#" not in target:
        endpoint = target if re.search(r"(^[^:\[]+|\])\:\d+$", target) else \
            f"{target}:{DEFAULT_PORT}"
        target = f"{endpoint}#sha256:{fingerprint}"
    if "#" in target:
        static = parse_static(target if re.search(r":\d+#", target) else
                              target.replace("#", f":{DEFAULT_PORT}#", 1))
        return static.host, static.port, static.fingerprint
    host, _, port_text = target.rpartition(":") if target.count(":") == 1 else (target, "", "")
    wanted = (host or target).rstrip(".").lower()
    for terminal in await browse(timeout):
        names = {terminal.name.lower(), terminal.host.rstrip(".").lower(), *terminal.addresses}
        if wanted in names:
            address = terminal.addresses[0] if terminal.addresses else terminal.host
            return address, int(port_text) if port_text else terminal.port, \
                terminal.fingerprint
    raise ValueError(f"{wanted}: not found by mDNS; give the fingerprint shown on the "
                     "terminal: HOST:PORT#sha256:FINGERPRINT")


def _pair(args: argparse.Namespace) -> int:
    async def run() -> Credentials:
        host, port, fp = await resolve_target(args.target, args.fingerprint)
        existing = [c for c in Credentials.load_all() if c.fingerprint == fp.lower()]
        if existing and not args.replace:
            raise ValueError(f"this computer is already paired with that terminal as "
                             f"{existing[0].name!r}; `bifente unpair {fp[:16]}` first (and "
                             "have an admin revoke the old name), or pair with --replace")
        print(f"pairing with {host}:{port}, certificate sha256:{fp}", file=sys.stderr)

        def read_code() -> str:
            if args.code:
                return str(args.code)
            while True:  # a mistyped code is asked again; it costs no attempt
                print("enter the 6-digit code shown on the terminal: ", end="",
                      file=sys.stderr, flush=True)
                line = sys.stdin.readline()
                if not line:
                    raise ValueError("no code typed (end of input)")
                code = "".join(line.split())
                if len(code) == 6 and code.isdigit():
                    return code
                print("the code is 6 digits, as shown on the terminal", file=sys.stderr)

        def wrong(left: int) -> None:
            print(f"wrong code: {left} attempt(s) left", file=sys.stderr)

        return await pair(host, port, fp, args.name, args.scope or ["identity:read"],
                          lambda: asyncio.to_thread(read_code),
                          on_wrong_code=None if args.code else wrong)

    credentials = asyncio.run(run())
    path = credentials.save()
    print(f"paired as {credentials.name!r} with scopes {', '.join(credentials.scopes)}; "
          f"credentials in {path}")
    return 0


async def _call(target: str | None, method: str, params: dict[str, Any]) -> Any:
    credentials = Credentials.find(target)
    async with await credentials.connect() as client:
        return await client.call(method, params)


def _pairings(args: argparse.Namespace) -> int:
    found = Credentials.load_all()
    if args.json:
        print(json.dumps([{"name": c.name, "host": c.host, "port": c.port,
                           "fingerprint": c.fingerprint, "scopes": list(c.scopes)}
                          for c in found], indent=2))
        return 0
    if not found:
        print("not paired with any terminal (bifente pair HOST)")
    for c in found:
        print(f"{c.name:<24} {c.host}:{c.port}  sha256:{c.fingerprint[:16]}...  "
              f"{', '.join(c.scopes)}")
    return 0


def _unpair(args: argparse.Namespace) -> int:
    credentials = Credentials.find(args.target)
    path = credentials.forget()
    print(f"forgot the pairing {credentials.name!r} with {credentials.host}:{credentials.port}"
          f" ({path}); it stays valid on the terminal until an admin revokes it")
    return 0


def _status(args: argparse.Namespace) -> int:
    async def run() -> tuple[Any, Any]:
        credentials = Credentials.find(args.target)
        client: Client
        async with await credentials.connect() as client:
            return await client.call("system.info"), await client.call("readers.list")

    info, readers = asyncio.run(run())
    if args.json:
        print(json.dumps({"system": info, **readers}, indent=2))
        return 0
    print(f"edged {info['version']} (protocol {info['protocol']}), model {info['model']}")
    print(f"certificate sha256:{info['fingerprint']}")
    print(f"capabilities: {', '.join(info['capabilities'])}")
    for slot in readers["slots"]:
        print(f"  {slot['slot']:<24} {slot['kind']}")
    return 0


def _clients_list(args: argparse.Namespace) -> int:
    result = asyncio.run(_call(args.target, "clients.list",
                               {"include_revoked": args.all}))
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    for c in result["clients"]:
        state = f"revoked {c['revoked_at']}" if c.get("revoked_at") else "active"
        print(f"{c['name']:<24} {', '.join(c['scopes']):<40} {state}")
    return 0


def _clients_revoke(args: argparse.Namespace) -> int:
    mine = Credentials.find(args.target)
    if mine.name.casefold() == args.name.casefold() and not args.yes:
        raise ValueError(f"{args.name!r} is this computer's own pairing: once revoked, every "
                         "call from here is refused. Add --yes to revoke it anyway")
    result = asyncio.run(_call(args.target, "clients.revoke", {"name": args.name}))
    print(f"revoked {result['revoked']} ({result['connections_closed']} connection(s) closed)")
    return 0


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register the remote commands."""
    p = sub.add_parser("pair", help="pair this computer with a terminal (code on its display)")
    p.add_argument("target", help="HOST[:PORT][#sha256:FINGERPRINT]")
    p.add_argument("--fingerprint", help="the terminal's certificate SHA-256 (else from mDNS)")
    p.add_argument("--name", default="bifente-cli", help="how the terminal will know us")
    p.add_argument("--scope", action="append", choices=SCOPES, metavar="SCOPE",
                   help="scope to ask for (repeatable; default identity:read): "
                        + ", ".join(SCOPES))
    p.add_argument("--replace", action="store_true",
                   help="pair again with a terminal this computer is already paired with")
    p.add_argument("--code", help="the code (otherwise asked on the terminal)")
    p.set_defaults(func=_pair)

    p = sub.add_parser("pairings", help="the terminals this computer is paired with")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_pairings)

    p = sub.add_parser("unpair", help="forget a pairing on this computer (an admin revokes "
                                      "it on the terminal: bifente clients revoke NAME)")
    p.add_argument("target", help="host, fingerprint prefix or paired name")
    p.set_defaults(func=_unpair)

    p = sub.add_parser("status", help="a paired terminal's version and slots")
    p.add_argument("target", nargs="?", help="host or fingerprint prefix")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_status)

    clients = sub.add_parser("clients", help="paired clients of a terminal (admin scope)")
    csub = clients.add_subparsers(dest="action", required=True)
    p = csub.add_parser("list")
    p.add_argument("--target")
    p.add_argument("--all", action="store_true", help="include revoked clients")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_clients_list)
    p = csub.add_parser("revoke")
    p.add_argument("name")
    p.add_argument("--target")
    p.add_argument("--yes", action="store_true", help="also when it is this computer's own")
    p.set_defaults(func=_clients_revoke)
