"""`bifente pair`, `bifente status`, `bifente clients list|revoke`: talking to a daemon."""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import sys
from typing import Any

from edged.sdk import Client, Credentials, pair

__all__ = ["add_parsers", "resolve_target"]

DEFAULT_PORT = 4443


async def resolve_target(target: str, fingerprint: str | None,
                         timeout: float = 3.0) -> tuple[str, int, str]:
    """HOST[:PORT][#sha256:FP] -> (host, port, fingerprint), asking mDNS when FP is missing.

    Without a fingerprint the terminal must answer on mDNS under that address, instance
    name or host name; its announced fingerprint is then pinned.
    """
    from edged.discovery import browse, parse_static

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
        print(f"pairing with {host}:{port}, certificate sha256:{fp}", file=sys.stderr)

        def read_code() -> str:
            if args.code:
                return str(args.code)
            print("enter the 6-digit code shown on the terminal: ", end="", file=sys.stderr,
                  flush=True)
            return sys.stdin.readline().strip()

        return await pair(host, port, fp, args.name, args.scope or ["identity:read"],
                          lambda: asyncio.to_thread(read_code))

    credentials = asyncio.run(run())
    path = credentials.save()
    print(f"paired as {credentials.name!r} with scopes {', '.join(credentials.scopes)}; "
          f"credentials in {path}")
    return 0


async def _call(target: str | None, method: str, params: dict[str, Any]) -> Any:
    credentials = Credentials.find(target)
    async with await credentials.connect() as client:
        return await client.call(method, params)


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
    result = asyncio.run(_call(args.target, "clients.revoke", {"name": args.name}))
    print(f"revoked {result['revoked']} ({result['connections_closed']} connection(s) closed)")
    return 0


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register the remote commands."""
    p = sub.add_parser("pair", help="pair this computer with a terminal (code on its display)")
    p.add_argument("target", help="HOST[:PORT][#sha256:FINGERPRINT]")
    p.add_argument("--fingerprint", help="the terminal's certificate SHA-256 (else from mDNS)")
    p.add_argument("--name", default="bifente-cli", help="how the terminal will know us")
    p.add_argument("--scope", action="append", help="scope to ask for (repeatable)")
    p.add_argument("--code", help="the code (otherwise asked on the terminal)")
    p.set_defaults(func=_pair)

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
    p.set_defaults(func=_clients_revoke)
