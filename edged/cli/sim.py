"""`bifente sim ...`: the simulators, for demos, tests and integrators' CI."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
import threading
from pathlib import Path
from typing import Any

from bifente.edged.cli import sim_terminal
from bifente.edged.simulation import simulated_world

__all__ = ["add_parsers"]

HELP = ("commands: remove SLOT | insert SLOT | insert SLOT cps|vitale PROFILE | status | quit"
        " (SLOT is 0/cps or 1/vitale)")


def _slot(word: str) -> int:
    table = {"0": 0, "cps": 0, "1": 1, "vitale": 1}
    if word not in table:
        raise ValueError(f"unknown slot {word!r}: use 0/cps or 1/vitale")
    return table[word]


def _sim_cards(args: argparse.Namespace) -> int:
    # Imported here: the daemon and client never need the simulators.
    from bifente.simulators.cps3 import Cps3Card
    from bifente.simulators.vitale import Vitale2Card

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with simulated_world("bifente sim cards", args.cps, args.vitale, cards="pcsc", mail=False,
                         dmp=False) as world:
        slots = world.slots
        assert slots is not None  # cards="pcsc"
        for slot, card in slots.cards.items():
            if card is not None:
                print(f"slot {slot} ({slots.reader(slot)}): {type(card).__name__} "
                      f"profile {card.profile.name!r}", flush=True)
        print(f"ready. {HELP}", flush=True)
        if sys.stdin is None or not sys.stdin.readable() or args.no_input:
            stop.wait()
            return 0
        while not stop.is_set():
            line = sys.stdin.readline()
            if not line:  # end of input: keep the cards in until stopped
                stop.wait()
                break
            words = line.split()
            try:
                if not words:
                    continue
                if words[0] in ("quit", "exit"):
                    break
                if words[0] == "status":
                    for slot, bridge in slots.bridges.items():
                        print(f"slot {slot}: {'inserted' if bridge.inserted else 'removed'}")
                elif words[0] == "remove" and len(words) == 2:
                    slots.remove(_slot(words[1]))
                    print(f"slot {_slot(words[1])}: removed")
                elif words[0] == "insert" and len(words) == 2:
                    slots.insert(_slot(words[1]))
                    print(f"slot {_slot(words[1])}: inserted")
                elif words[0] == "insert" and len(words) == 4:
                    card = Cps3Card(words[3]) if words[2] == "cps" else Vitale2Card(words[3])
                    slots.insert(_slot(words[1]), card)
                    print(f"slot {_slot(words[1])}: inserted {words[2]} {words[3]!r}")
                else:
                    print(HELP)
            except (ValueError, TimeoutError) as exc:
                print(f"error: {exc}")
            sys.stdout.flush()
        return 0


def _sim_mail(args: argparse.Namespace) -> int:
    # Imported here: the daemon and client never need the simulators.
    from bifente.simulators.mail import describe, mask_address

    if args.max_size <= 0:
        raise ValueError("--max-size must be a positive number of MB")
    mail: dict[str, Any] = {"data_dir": Path(args.data), "host": args.host,
                            "max_message_bytes": int(args.max_size * 1024 * 1024),
                            "require_smime": not args.allow_clear, "base_port": args.port_base}
    if args.domain:
        mail["domains"] = tuple(args.domain)
    world = simulated_world("bifente sim mail", None, None, cards="none", mail=mail, dmp=False)

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        async with world:
            operator = world.mail
            assert operator is not None  # mail asked for
            print(describe(operator.info))
            print(f"ports file: {operator.data_dir / 'operator.json'}")
            print(f"accounts (TEST DATA, password {world.mail_password!r}): "
                  f"{', '.join(map(mask_address, operator.addresses()))}")
            if args.allow_clear:
                print("clear (non-S/MIME) mail is accepted: --allow-clear")
            print("ready. stop with Ctrl-C or SIGTERM", flush=True)
            await stop.wait()

    asyncio.run(run())
    print("mail operator stopped", flush=True)
    return 0


def _sim_dmp(args: argparse.Namespace) -> int:
    # Requests are logged at INFO (bifente -v sim dmp ...), by route pattern: the paths hold
    # patients' INS.
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    dmp = {"data_dir": Path(args.data), "port": args.port, "host": args.host,
           "test_mode": args.test_mode, "admin_token": args.admin_token}
    with simulated_world("bifente sim dmp", None, None, cards="none", mail=False,
                         dmp=dmp) as world:
        host = world.dmp
        assert host is not None  # dmp asked for
        print(f"reference DMP host (TEST) on {host.url}", flush=True)
        print(f"trust: {host.cafile}", flush=True)
        if not args.admin_token:
            print(f"admin token: {host.admin_token}", flush=True)
        if args.test_mode:
            print("TEST MODE: GET /api/test/last-code is on (one-time codes readable)", flush=True)
        try:
            stop.wait()
        except KeyboardInterrupt:
            print("interrupted: stopping", flush=True)
        return 0


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register `bifente sim`."""
    sim = sub.add_parser("sim", help="simulated cards, the virtual terminal, the reference "
                                     "DMP and mail hosts")
    ssub = sim.add_subparsers(dest="what", required=True)
    p = ssub.add_parser("cards", help="put simulated cards into the vpcd readers until stopped")
    p.add_argument("--cps", default="gp", help="CPS profile name or .toml path (default gp)")
    p.add_argument("--vitale", default="family", help="Vitale profile (default family)")
    p.add_argument("--no-input", action="store_true", help="do not read commands from stdin")
    p.set_defaults(func=_sim_cards)
    sim_terminal.add_parsers(ssub)
    p = ssub.add_parser("mail", help="run the reference mail operator trust space until stopped")
    p.add_argument("--data", required=True, metavar="DIR",
                   help="data folder: mailboxes (Maildir), keys, operator.json")
    p.add_argument("--domain", action="append", metavar="D",
                   help="an operator domain (repeat; default cabinet.test chu.test labo.test)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port-base", type=int, default=None, metavar="N",
                   help="fixed ports from N (directory N, then 3 per domain); default: free ones")
    p.add_argument("--max-size", type=float, default=25.0, metavar="MB",
                   help="message size limit in MB (default 25)")
    p.add_argument("--allow-clear", action="store_true",
                   help="accept mail that is not S/MIME (for plain tests only)")
    p.set_defaults(func=_sim_mail)
    p = ssub.add_parser("dmp", help="run the reference DMP host (HTTPS + SQLite) until stopped")
    p.add_argument("--data", required=True, help="data directory (database, TLS key, outbox)")
    p.add_argument("--port", type=int, default=8443, help="TCP port (default 8443; 0: any)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument("--test-mode", action="store_true",
                   help="expose GET /api/test/last-code (one-time codes) for tests")
    p.add_argument("--admin-token", help="admin token for device enrollment (default: random, "
                   "printed)")
    p.set_defaults(func=_sim_dmp)
