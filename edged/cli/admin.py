"""`bifente admin grant NAME`: give a paired client the admin scope, on the daemon's machine.

Pairing over the network never grants `admin` (a code read aloud must not hand over the
terminal, docs/security.md). Whoever can write the daemon's state directory (root or the
service user, on the Pi itself) grants it here; the daemon re-reads a client's scopes on every
call, so it applies at once, without a restart.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from edged.state.audit import default_state_dir
from edged.state.clients import ClientRegistry

__all__ = ["add_parsers"]

CLIENTS_DB = "clients.db"  # beside the audit log in the daemon's state directory


def _grant(args: argparse.Namespace) -> int:
    state = Path(args.state_dir) if args.state_dir else default_state_dir()
    path = state / CLIENTS_DB
    if not path.is_file():
        raise FileNotFoundError(f"no client registry at {path} (is this the daemon's machine?)")
    with ClientRegistry(path) as registry:
        client = registry.grant(args.name, ["admin"])
    print(f"{client.name}: {' '.join(client.scopes)}")
    return 0


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register the local admin commands."""
    admin = sub.add_parser("admin", help="local administration on the daemon's machine")
    asub = admin.add_subparsers(dest="action", required=True)
    p = asub.add_parser("grant", help="give a paired client the admin scope (local only)")
    p.add_argument("name", help="the client's name, as paired")
    p.add_argument("--state-dir", metavar="DIR",
                   help="the daemon's state directory (default: $BIFENTE_STATE_DIR, else "
                        "/var/lib/bifente)")
    p.set_defaults(func=_grant)
