"""Front-desk commands through the daemon (`bifente --remote NAME vitale read`, `cps info`,
`cps verify`), the warnings a front desk needs, and `bifente cps unblock` (PUK on the keypad).

The daemon's answers are rendered here from the API's JSON (docs/protocol.md), so a desk PC
needs no card reader of its own: the cards are in the terminal that edged serves.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
from typing import Any

from bifente.client import Credentials
from bifente.edged.cli.errors import EXIT
from bifente.edged.cli.render import PROFESSIONS, SPECIALTIES, date_text

__all__ = ["cps_text_api", "cps_warnings", "remote_cps_info", "remote_cps_verify",
           "remote_vitale_read", "vitale_text_api", "vitale_warnings"]


def _today() -> str:
    return datetime.date.today().strftime("%Y%m%d")


def vitale_warnings(card: dict[str, Any], today: str | None = None) -> list[str]:
    """What the desk must see: an expired card, beneficiaries whose rights have ended."""
    now = today or _today()
    out = []
    if card["card"]["end_of_validity"] < now:
        out.append(f"WARNING: the card expired on {date_text(card['card']['end_of_validity'])}"
                   " (carte expirée)")
    for b in card["beneficiaries"]:
        ends = [r["end"] for r in b["rights"]]
        if ends and max(ends) < now:
            out.append(f"WARNING: rights of {b['first_name']} {b['name']} ended on "
                       f"{date_text(max(ends))} (droits expirés)")
    return out


def cps_warnings(info: dict[str, Any]) -> list[str]:
    """An expired certificate, or one about to expire; a blocked PIN."""
    out = []
    for role, cert in (info.get("certificates") or {}).items():
        when = cert["not_after"][:10]
        if cert["expired"]:
            out.append(f"WARNING: the {role} certificate expired on {when}: the card cannot "
                       "sign valid documents (renew the CPS)")
        elif cert["expires_soon"]:
            out.append(f"WARNING: the {role} certificate expires on {when} (renew the CPS)")
    if info["pin"]["blocked"]:
        out.append("WARNING: the PIN is blocked: unblock it with the PUK "
                   "(bifente cps unblock --reader terminal:PATH)")
    return out


def vitale_text_api(card: dict[str, Any], *, today: str | None = None) -> str:
    """vitale.read's answer for a person at the desk."""
    c, ins = card["card"], card["insured"]
    lines = [f"Vitale card    {c['type']}, serial {c['serial']}"
             + (" (TEST CARD)" if c["test_card"] else ""),
             f"Valid          {date_text(c['validity_start'])} to "
             f"{date_text(c['end_of_validity'])}",
             f"Insured NIR    {ins['nir']}",
             f"Scheme         régime {ins['regime']}, caisse {ins['caisse']}, "
             f"centre {ins['centre']}",
             f"Beneficiaries  {len(card['beneficiaries'])}"]
    for i, b in enumerate(card["beneficiaries"], start=1):
        lines += [f"  {i}. {b['first_name']} {b['name']}, {b['quality_name']}",
                  f"     Birth date  {date_text(b['birth_date'])}",
                  f"     NIR         {b['nir']}"
                  + (" (temporary number)" if b["temporary"] else ""),
                  f"     INS-C       {b['ins_c'] or 'none (no INS-C for a temporary number)'}",
                  f"     INS         {b['ins']['value']} ({b['ins']['kind']}, "
                  f"OID {b['ins']['oid']})"]
        lines += [f"     Rights      {date_text(r['start'])} to {date_text(r['end'])}"
                  for r in b["rights"]]
    return "\n".join([*lines, *vitale_warnings(card, today)])


def cps_text_api(info: dict[str, Any]) -> str:
    """cps.info's answer for a person."""
    pin = info["pin"]
    state = "BLOCKED (unblock with the PUK)" if pin["blocked"] else \
        f"{pin['tries_left']} of {pin['max_tries']} tries left"
    lines = [f"Professional   {info['display_name']}",
             f"Profession     {PROFESSIONS.get(info['profession'], 'profession')} "
             f"({info['profession']})",
             f"Specialty      {SPECIALTIES.get(info['specialty'] or '', '')} "
             f"({info['specialty']})" if info["specialty"] else "Specialty      -",
             f"Card type      {info['card_type_name']}",
             f"National id    {info['national_id']}",
             f"Card serial    {info['serial']}",
             f"PIN            {state}"]
    for role, cert in (info.get("certificates") or {}).items():
        lines.append(f"{role.capitalize():<15}certificate valid until {cert['not_after'][:10]}")
    return "\n".join([*lines, *cps_warnings(info)])


async def _call(target: str, method: str, params: dict[str, Any]) -> Any:
    credentials = Credentials.find(target)
    async with await credentials.connect() as client:
        return await client.call(method, params)


def remote_vitale_read(args: argparse.Namespace) -> int:
    """bifente --remote NAME vitale read."""
    card = asyncio.run(_call(args.remote, "vitale.read", {}))
    print(json.dumps(card, indent=2, ensure_ascii=False) if args.json
          else vitale_text_api(card))
    return 0


def remote_cps_info(args: argparse.Namespace) -> int:
    """bifente --remote NAME cps info (with the certificates' validity)."""
    info = asyncio.run(_call(args.remote, "cps.info", {"certificates": True}))
    if args.json:
        print(json.dumps(info, indent=2, ensure_ascii=False))
    else:
        print(cps_text_api(info))
    return 0


def remote_cps_verify(args: argparse.Namespace) -> int:
    """bifente --remote NAME cps verify: the PIN is typed on the terminal's keypad."""
    if not args.json:
        print("type the PIN on the terminal's keypad...", flush=True)
    result = asyncio.run(_call(args.remote, "cps.verify_pin", {"timeout": args.timeout}))
    if args.json:
        print(json.dumps(result))
    elif result["result"] == "wrong":
        print(f"wrong ({result['tries_left']} tries left)")
    else:
        print(result["result"])
    return 0 if result["result"] == "ok" else EXIT["pin"]
