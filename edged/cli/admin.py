"""Local administration on the daemon's machine: `bifente admin grant NAME` gives a paired
client the admin scope; `bifente admin open-pairing` opens a pairing window.

Pairing over the network never grants `admin` (a code read aloud must not hand over the
terminal, docs/security.md). Whoever can write the daemon's state directory (root or the
service user, on the Pi itself) grants it here; the daemon re-reads a client's scopes on every
call, so it applies at once, without a restart.

`open-pairing` is F1 twice on the terminal for setups without one (headless PC/SC): pairings
get through the network-wide lockout for the configured window (docs/pairing.md, "The
pairing window"). It leaves a request in the state directory that the daemon takes within a
second.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from bifente.edged.state.audit import default_state_dir
from bifente.edged.state.clients import ClientRegistry
from bifente.edged.state.pairing_window import FRESH_S, REQUEST_FILE, request_window

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


def _open_pairing(args: argparse.Namespace) -> int:
    state = Path(args.state_dir) if args.state_dir else default_state_dir()
    if not (state / CLIENTS_DB).is_file():
        raise FileNotFoundError(f"no daemon state at {state} (is this the daemon's machine?)")
    path = request_window(state)
    deadline = time.monotonic() + FRESH_S / 2
    while time.monotonic() < deadline:  # the daemon looks for it every second
        if not path.exists():
            print("pairing window open: pair the workstation now (the daemon's log and audit "
                  "say for how long)")
            return 0
        time.sleep(0.1)
    path.unlink(missing_ok=True)
    print(f"edged did not take the request ({REQUEST_FILE} in {state}): is it running, with "
          "this state directory?")
    return 1


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
    p = asub.add_parser("open-pairing",
                        help="let pairings through the lockout for a while (as F1 twice on "
                             "the terminal; local only)")
    p.add_argument("--state-dir", metavar="DIR",
                   help="the daemon's state directory (default: $BIFENTE_STATE_DIR, else "
                        "/var/lib/bifente)")
    p.set_defaults(func=_open_pairing)
