"""`bifente cards`, `bifente vitale read`, `bifente cps info`, `bifente ins`."""

from __future__ import annotations

import argparse
import contextlib
import json
from collections.abc import Iterator

from bifente.apdu.cps import CpsSession
from bifente.apdu.cps_spec import KeyRef
from bifente.apdu.errors import PinNotAvailable
from bifente.apdu.identity import compute_ins_c, ins_for, parse_nir
from bifente.apdu.protocol import CardProtocol
from bifente.apdu.transport import SecurePinChange, SecurePinEntry, Transport
from bifente.apdu.vitale import VitaleSession
from bifente.edged.api.cps_methods import certificate_info
from bifente.edged.api.render import cps_info as cps_info_result
from bifente.edged.api.render import pin_outcome, vitale_card
from bifente.edged.cli import frontdesk
from bifente.edged.cli.errors import EXIT
from bifente.edged.cli.render import cps_text, vitale_text
from bifente.edged.readers.pcsc import open_reader, scan
from bifente.edged.readers.terminal import TerminalLink, TerminalTransport, parse_reader
from bifente.edged.services.cards import CpsInfo, verify_pin

__all__ = ["add_parsers"]


def _cards(args: argparse.Namespace) -> int:
    views = scan()
    if args.json:
        print(json.dumps([{"index": v.index, "reader": v.reader, "present": v.present,
                           "kind": v.kind, "atr": v.atr.hex()} for v in views], indent=2))
        return 0
    if not views:
        print("no card reader found (is pcscd running?)")
        return 0
    names = {"cps": "CPS card", "vitale": "Vitale 2 card", "vitale1": "Vitale 1 card",
             "unknown": "unknown card", "empty": "empty"}
    for v in views:
        atr = f"  ATR {v.atr.hex(' ').upper()}" if v.present else ""
        print(f"{v.index}: {v.reader:<24} {names[v.kind]}{atr}")
    return 0


@contextlib.contextmanager
def _open(kind: str, reader: str | None) -> Iterator[Transport]:
    """The card of `kind`: in a PC/SC reader, or in a terminal slot (terminal:PATH[@SLOT])."""
    if reader is None or not reader.startswith("terminal:"):
        with open_reader(kind, reader) as pcsc:
            yield pcsc
        return
    path, slot = parse_reader(reader)
    with TerminalLink(path) as link:
        try:
            with TerminalTransport(link, (0 if kind == "cps" else 1) if slot is None
                                   else slot) as transport:
                yield transport
        except KeyboardInterrupt:
            with contextlib.suppress(Exception):
                link.abort()  # end a prompt left on the terminal's display
            raise


def _vitale_read(args: argparse.Namespace) -> int:
    if args.remote:
        return frontdesk.remote_vitale_read(args)
    with _open("vitale", args.reader) as transport:
        card = VitaleSession(CardProtocol(transport)).read()
    if args.json:  # the shape of the API's vitale.read (docs/protocol.md), local or remote
        print(json.dumps(vitale_card(card), indent=2, ensure_ascii=False))
        return 0
    print(vitale_text(card))
    for warning in frontdesk.vitale_warnings(vitale_card(card)):
        print(warning)
    return 0


def _cps_info(args: argparse.Namespace) -> int:
    if args.remote:
        return frontdesk.remote_cps_info(args)
    with _open("cps", args.reader) as transport:
        session = CpsSession(CardProtocol(transport))
        identity, pin = session.identity(), session.pin_status()
        info = CpsInfo(identity, pin)
        certificates = {"signature": certificate_info(session.certificate(KeyRef.SIGNATURE))}
        if args.json:  # the shape of the API's cps.info with certificates (docs/protocol.md)
            certificates["authentication"] = certificate_info(
                session.certificate(KeyRef.AUTHENTICATION))
            print(json.dumps({**cps_info_result(info), "certificates": certificates},
                             indent=2, ensure_ascii=False))
            return 0
    print(cps_text(identity, pin))
    print(f"Certificate    valid until {certificates['signature']['not_after'][:10]}")
    for warning in frontdesk.cps_warnings({"certificates": certificates,
                                           "pin": {"blocked": pin.blocked}}):
        print(warning)
    return 0


_NO_PIN_PAD = ("this reader has no PIN pad: the PIN is typed on a terminal keypad "
               "(--reader terminal:PATH), never on the computer")


def _cps_verify(args: argparse.Namespace) -> int:
    if args.remote:
        return frontdesk.remote_cps_verify(args)
    with _open("cps", args.reader) as transport:
        if not isinstance(transport, SecurePinEntry):
            raise PinNotAvailable(_NO_PIN_PAD)
        if not args.json:
            print("type the PIN on the terminal's keypad...", flush=True)
        result = pin_outcome(verify_pin(CpsSession(CardProtocol(transport)), args.timeout))
    if args.json:
        print(json.dumps(result))
    elif result["result"] == "wrong":
        tries = result["tries_left"]
        print(f"wrong ({tries} tr{'y' if tries == 1 else 'ies'} left)")
    else:
        print(result["result"])
    return 0 if result["result"] == "ok" else EXIT["pin"]


def _cps_change_pin(args: argparse.Namespace) -> int:
    with _open("cps", args.reader) as transport:
        if not isinstance(transport, SecurePinChange):
            raise PinNotAvailable(_NO_PIN_PAD)
        print("type the current PIN, then the new one twice, on the terminal's keypad...",
              flush=True)
        CpsSession(CardProtocol(transport)).change_pin(timeout=args.timeout)
    print("PIN changed")
    return 0


def _cps_unblock(args: argparse.Namespace) -> int:
    if args.remote:
        raise ValueError("cps unblock runs on a terminal attached to this computer "
                         "(--reader terminal:PATH): the PUK is never sent over the network")
    with _open("cps", args.reader) as transport:
        if not isinstance(transport, SecurePinChange):
            raise PinNotAvailable(_NO_PIN_PAD)
        print("type the PUK, then the new PIN twice, on the terminal's keypad...", flush=True)
        CpsSession(CardProtocol(transport)).unblock_pin(timeout=args.timeout)
    print("PIN unblocked: the new PIN is set")
    return 0


def _ins(args: argparse.Namespace) -> int:
    nir = parse_nir(args.nir, key_required=False)
    birth = args.birth_date.replace("-", "") if args.birth_date else None
    if birth is not None and not (len(birth) == 8 and birth.isdigit()):
        raise ValueError(f"--birth-date {args.birth_date!r}: expected YYYY-MM-DD "
                         "(a lunar date, with an impossible day or month, is allowed)")
    if args.first_name is not None and not args.first_name.strip():
        raise ValueError("--first-name is empty")
    if birth is not None and args.first_name is None:
        raise ValueError("--birth-date needs --first-name (the INS-C uses both)")
    ins_c = None
    reason = None
    if nir.temporary:
        reason = "no INS-C for a temporary number"
    elif args.first_name is None:
        reason = "give --first-name (and --birth-date) to compute the INS-C"
    else:
        ins_c = compute_ins_c(args.first_name, birth, nir)
    ins = ins_for(nir, environment=args.environment)
    if args.json:
        print(json.dumps({"nir": nir.value, "valid": True, "key": f"{nir.key:02d}",
                          "temporary": nir.temporary, "ins_c": ins_c,
                          "ins": {"value": ins.value, "oid": ins.oid.value, "kind": ins.kind}},
                         indent=2))
        return 0
    print(f"NIR    {nir.formatted()}  valid, key {nir.key:02d}"
          + (" (temporary number)" if nir.temporary else ""))
    print(f"INS-C  {ins_c or reason}")
    print(f"INS    {ins.value} ({ins.kind}, OID {ins.oid.value})")
    return 0


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register the card commands."""
    p = sub.add_parser("cards", help="list readers and what is in them")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_cards)

    vitale = sub.add_parser("vitale", help="the patient's Vitale card")
    vsub = vitale.add_subparsers(dest="action", required=True)
    p = vsub.add_parser("read", help="read the insured person and the beneficiaries")
    p.add_argument("--reader", help="reader name or index (default: the one with a Vitale "
                                    "card), or terminal:PATH for a bifente terminal")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_vitale_read)

    cps = sub.add_parser("cps", help="the professional's CPS card")
    csub = cps.add_subparsers(dest="action", required=True)
    reader_help = ("reader name or index (default: the one with a CPS card), or "
                   "terminal:PATH for a bifente terminal")
    p = csub.add_parser("info", help="holder identity and PIN tries left (no PIN needed)")
    p.add_argument("--reader", help=reader_help)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_cps_info)
    p = csub.add_parser("verify", help="check the PIN, typed on the terminal's keypad "
                                       "(prints ok / wrong / blocked / cancelled)")
    p.add_argument("--reader", help=reader_help)
    p.add_argument("--timeout", type=float, default=30.0, help="seconds to type it (default 30)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_cps_verify)
    p = csub.add_parser("change-pin", help="change the PIN, typed on the terminal's keypad")
    p.add_argument("--reader", help=reader_help)
    p.add_argument("--timeout", type=float, default=30.0,
                   help="seconds for each code (default 30)")
    p.set_defaults(func=_cps_change_pin)
    p = csub.add_parser("unblock", help="unblock a blocked PIN: the PUK and the new PIN are "
                                        "typed on the terminal's keypad")
    p.add_argument("--reader", help=reader_help)
    p.add_argument("--timeout", type=float, default=30.0,
                   help="seconds for each code (default 30)")
    p.set_defaults(func=_cps_unblock)

    p = sub.add_parser("ins", help="check a NIR, compute the INS-C and the INS with its OID")
    p.add_argument("nir", help="13 or 15 characters, spaces allowed")
    p.add_argument("--first-name")
    p.add_argument("--birth-date", help="YYYY-MM-DD (lunar dates allowed)")
    p.add_argument("--environment", choices=["production", "test", "demo"],
                   default="production", help="which INS OID to use for a NIR")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_ins)
