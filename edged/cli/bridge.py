"""`bifente bridge serve|allow|revoke|list`: the local companion for web-based clinic apps.

    bifente pair HOST --name "Bridge PC-12" --scope identity:read --scope cps:sign
    bifente bridge allow https://clinic.example --scope identity:read --scope cps:sign
    bifente bridge serve            # ws://127.0.0.1:47443/ for the allowed origins

`allow` prints the origin's token once (stdout, alone on its line): paste it into the web
app's settings on this computer. See docs/integrators.md, "The browser path".
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
from pathlib import Path

from bifente.client import Credentials
from bifente.edged.bridge.allowlist import AllowList, default_path
from bifente.edged.bridge.server import DEFAULT_PORT, Bridge
from bifente.edged.cli.argtypes import port

__all__ = ["add_parsers"]


def _allowlist(args: argparse.Namespace) -> AllowList:
    return AllowList(args.allow_list)


def _serve(args: argparse.Namespace) -> int:
    credentials = Credentials.find(args.terminal)
    allowlist = _allowlist(args)

    async def run() -> None:
        bridge = Bridge(credentials, allowlist, host=args.host, port=args.port)
        port = await bridge.start()
        allowed = sorted(allowlist.entries())
        host = f"[{args.host}]" if ":" in args.host else args.host
        if args.json:
            print(json.dumps({"url": f"ws://{host}:{port}/", "terminal": f"{credentials.host}:"
                              f"{credentials.port}", "client": credentials.name,
                              "origins": allowed}), flush=True)
        else:
            print(f"bifente bridge: ws://{host}:{port}/ -> terminal {credentials.host}:"
                  f"{credentials.port} as {credentials.name!r}; allowed origins: "
                  f"{', '.join(allowed) or 'none yet (bifente bridge allow)'}", flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        try:
            await stop.wait()
        finally:
            await bridge.close()

    asyncio.run(run())
    return 0


def _allow(args: argparse.Namespace) -> int:
    scopes = sorted(set(args.scope or ["identity:read"]))
    origin, token = _allowlist(args).allow(args.origin, scopes)
    if args.json:
        print(json.dumps({"origin": origin, "scopes": scopes, "token": token}))
        return 0
    print(f"allowed {origin} with scopes {', '.join(scopes)}; its token (shown once, paste it "
          "into the web app's settings):", file=sys.stderr)
    print(token)
    return 0


def _revoke(args: argparse.Namespace) -> int:
    if not _allowlist(args).revoke(args.origin):
        raise LookupError(f"{args.origin} is not on the allow-list")
    if args.json:
        print(json.dumps({"revoked": args.origin}))
    else:
        print(f"revoked {args.origin}: its pages are refused from now on", file=sys.stderr)
    return 0


def _list(args: argparse.Namespace) -> int:
    entries = sorted(_allowlist(args).entries().values(), key=lambda e: e.origin)
    if args.json:
        print(json.dumps([{"origin": e.origin, "scopes": list(e.scopes), "added": e.added}
                          for e in entries], indent=2))
        return 0
    for e in entries:
        print(f"{e.origin:<40} {', '.join(e.scopes)}")
    return 0


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register `bifente bridge`."""
    bridge = sub.add_parser("bridge", help="the local bridge that lets allowed web pages use "
                            "the terminal")
    bsub = bridge.add_subparsers(dest="action", required=True)

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--allow-list", type=Path, default=None,
                       help=f"the allow-list file (default {default_path()})")
        p.add_argument("--json", action="store_true", help="answer in JSON")

    p = bsub.add_parser("serve", help="serve allowed web pages on loopback")
    p.add_argument("--terminal", help="which paired terminal (host or fingerprint prefix)")
    p.add_argument("--host", default="127.0.0.1", choices=["127.0.0.1", "::1"])
    p.add_argument("--port", type=port, default=DEFAULT_PORT,
                   help=f"port (default {DEFAULT_PORT}; 0 picks a free one)")
    common(p)
    p.set_defaults(func=_serve)

    p = bsub.add_parser("allow", help="allow a web origin; prints its token once")
    p.add_argument("origin", help="https://HOST[:PORT], as the browser sends it")
    p.add_argument("--scope", action="append",
                   help="scope the origin's pages get (repeatable; default identity:read)")
    common(p)
    p.set_defaults(func=_allow)

    p = bsub.add_parser("revoke", help="refuse an origin from now on (open pages are closed)")
    p.add_argument("origin")
    common(p)
    p.set_defaults(func=_revoke)

    p = bsub.add_parser("list", help="allowed origins and their scopes")
    common(p)
    p.set_defaults(func=_list)
