"""`bifente sim terminal | press | screen | insert | remove`: the virtual terminal and its keys.

`sim terminal` runs the real firmware on the MicroPython unix port with simulated cards and
prints the pty to open (`--reader terminal:PTY`) and the control address; it writes both to a
state file so the other commands find it without arguments. The simulators are imported
inside the functions: the daemon and the client never load them.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from bifente.edged.simulation import simulated_world

if TYPE_CHECKING:
    from bifente.simulators.terminal.control import TerminalControl

__all__ = ["add_parsers"]

_SLOTS = {"0": 0, "cps": 0, "1": 1, "vitale": 1}
_NONE = {"", "none", "-"}


def _slot(word: str) -> int:
    if word.lower() not in _SLOTS:
        raise argparse.ArgumentTypeError(f"unknown slot {word!r}: use 0/cps or 1/vitale")
    return _SLOTS[word.lower()]


def _seconds(text: str) -> float:
    """A duration for argparse: a number of seconds, 0 or more."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"{text} seconds: must be 0 or more")
    return value


def _terminal(args: argparse.Namespace) -> int:
    from bifente.simulators.terminal import FirmwareError
    from bifente.simulators.terminal.control import default_control_address

    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    cps = None if args.cps.lower() in _NONE else args.cps
    vitale = None if args.vitale.lower() in _NONE else args.vitale
    # The state file lets the other commands find the terminal without --control.
    terminal = {"heap": args.heap, "control": True, "record": True,
                "control_address": args.control or default_control_address()}
    with simulated_world("bifente sim terminal", cps, vitale, cards="terminal", mail=False,
                         dmp=False, terminal=terminal) as world:
        vt = world.terminal
        assert vt is not None  # cards="terminal"
        print(f"pty: {vt.pty_path}")
        print(f"control: {world.control_address}")
        print(f"state: {world.state_file}")
        slots: list[dict[str, Any]] = vt.status()["slots"]  # type: ignore[assignment]
        for status in slots:
            card = (f"{status['card']} profile {status['profile']!r}" if status["present"]
                    else "empty")
            print(f"slot {status['slot']}: {card}")
        print(f"ready. use --reader terminal:{vt.pty_path}; stop with Ctrl-C or SIGTERM",
              flush=True)
        while not stop.wait(0.5):
            if vt.pid is None:
                raise FirmwareError(f"the firmware stopped: {vt.firmware_log()}")
    print("virtual terminal stopped", flush=True)
    return 0


def _client(args: argparse.Namespace) -> TerminalControl:
    from bifente.simulators.terminal.control import TerminalControl

    return TerminalControl(args.control)


def _run(fn: Callable[[], object]) -> int:
    from bifente.simulators.terminal.control import ControlError

    try:
        fn()
    except ControlError as exc:
        print(f"bifente: {exc}", file=sys.stderr)
        return 1
    return 0


def _press(args: argparse.Namespace) -> int:
    from bifente.simulators.terminal.supervisor import expand_keys

    expand_keys(args.keys)  # refuse unknown keys before touching the terminal
    return _run(lambda: _client(args).press(*args.keys, wait=args.wait))


def _screen(args: argparse.Namespace) -> int:
    def show() -> None:
        lines = _client(args).screen()
        print(json.dumps(lines) if args.json else "\n".join(lines))

    return _run(show)


def _insert(args: argparse.Namespace) -> int:
    return _run(lambda: _client(args).insert(args.slot, args.profile))


def _remove(args: argparse.Namespace) -> int:
    return _run(lambda: _client(args).remove(args.slot))


def add_parsers(ssub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register the virtual terminal commands under `bifente sim`."""
    p = ssub.add_parser("terminal", help="run the virtual terminal (firmware on MicroPython, "
                                         "simulated cards, a pty) until stopped")
    p.add_argument("--cps", default="gp", help="CPS profile in slot 0, or none (default gp)")
    p.add_argument("--vitale", default="family",
                   help="Vitale profile in slot 1, or none (default family)")
    p.add_argument("--control", metavar="ADDR",
                   help="control address: unix:/path or 127.0.0.1:PORT (default: a UNIX "
                        "socket beside the state file)")
    p.add_argument("--heap", default="192K", help="MicroPython heap (default 192K, a Pico's)")
    p.set_defaults(func=_terminal)

    def control(q: argparse.ArgumentParser) -> None:
        q.add_argument("--control", metavar="ADDR",
                       help="the terminal's control address (default: from the state file)")

    p = ssub.add_parser("press", help="press keys on the virtual terminal (waits for a prompt)")
    p.add_argument("keys", nargs="+", metavar="KEY",
                   help="digits ('1234' is four keys), OK, CANCEL, CORR, F1")
    p.add_argument("--wait", type=_seconds, default=10.0,
                   help="seconds each key waits for a prompt (0: press now; default 10; "
                        "F1, which acts while no prompt runs, never waits)")
    control(p)
    p.set_defaults(func=_press)

    p = ssub.add_parser("screen", help="print what the virtual terminal's display shows")
    p.add_argument("--json", action="store_true")
    control(p)
    p.set_defaults(func=_screen)

    p = ssub.add_parser("insert", help="insert a card into the virtual terminal")
    p.add_argument("slot", type=_slot, help="0/cps or 1/vitale")
    p.add_argument("--profile", help="a new card with this profile (default: the slot's card)")
    control(p)
    p.set_defaults(func=_insert)

    p = ssub.add_parser("remove", help="pull a card from the virtual terminal")
    p.add_argument("slot", type=_slot, help="0/cps or 1/vitale")
    control(p)
    p.set_defaults(func=_remove)
