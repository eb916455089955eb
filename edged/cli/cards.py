"""`bifente cards`, `bifente vitale read`, `bifente cps info`, `bifente ins`."""

from __future__ import annotations

import argparse
import json

from apdu.cps import CpsSession
from apdu.identity import compute_ins_c, ins_for, parse_nir
from apdu.protocol import CardProtocol
from apdu.vitale import VitaleSession
from edged.cli.render import cps_json, cps_text, vitale_json, vitale_text
from edged.readers.pcsc import open_reader, scan

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


def _vitale_read(args: argparse.Namespace) -> int:
    with open_reader("vitale", args.reader) as transport:
        card = VitaleSession(CardProtocol(transport)).read()
    print(json.dumps(vitale_json(card), indent=2, ensure_ascii=False) if args.json
          else vitale_text(card))
    return 0


def _cps_info(args: argparse.Namespace) -> int:
    with open_reader("cps", args.reader) as transport:
        session = CpsSession(CardProtocol(transport))
        identity, pin = session.identity(), session.pin_status()
    print(json.dumps(cps_json(identity, pin), indent=2, ensure_ascii=False) if args.json
          else cps_text(identity, pin))
    return 0


def _ins(args: argparse.Namespace) -> int:
    nir = parse_nir(args.nir, key_required=False)
    birth = args.birth_date.replace("-", "") if args.birth_date else None
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


def add_parsers(sub: argparse._SubParsersAction) -> None:
    """Register the card commands."""
    p = sub.add_parser("cards", help="list readers and what is in them")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_cards)

    vitale = sub.add_parser("vitale", help="the patient's Vitale card")
    vsub = vitale.add_subparsers(dest="action", required=True)
    p = vsub.add_parser("read", help="read the insured person and the beneficiaries")
    p.add_argument("--reader", help="reader name or index (default: the one with a Vitale card)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_vitale_read)

    cps = sub.add_parser("cps", help="the professional's CPS card")
    csub = cps.add_subparsers(dest="action", required=True)
    p = csub.add_parser("info", help="holder identity and PIN tries left (no PIN needed)")
    p.add_argument("--reader", help="reader name or index (default: the one with a CPS card)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_cps_info)

    p = sub.add_parser("ins", help="check a NIR, compute the INS-C and the INS with its OID")
    p.add_argument("nir", help="13 or 15 characters, spaces allowed")
    p.add_argument("--first-name")
    p.add_argument("--birth-date", help="YYYY-MM-DD (lunar dates allowed)")
    p.add_argument("--environment", choices=["production", "test", "demo"],
                   default="production", help="which INS OID to use for a NIR")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_ins)
