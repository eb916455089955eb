"""`bifente dmp ...`: the shared medical record (DMP) through a paired terminal.

Every command works in the session of the CPS card in the terminal (the PIN is typed on its
keypad when the card needs it); create, feed and read first ask the patient on the terminal
(Vitale card in). The credentials are those stored by `bifente pair` (scopes dmp:read,
dmp:write, dmp:emergency). Host refusals print the host's reason code.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import re
import sys
from pathlib import Path
from typing import Any

from bifente.client import Credentials

__all__ = ["add_parsers"]


async def _call(target: str | None, method: str, params: dict[str, Any]) -> Any:
    credentials = Credentials.find(target)
    async with await credentials.connect() as client:
        return await client.call(method, params)


def _run(args: argparse.Namespace, method: str, params: dict[str, Any], *,
         prompt: str | None = None) -> Any:
    if prompt:
        print(prompt, file=sys.stderr, flush=True)
    return asyncio.run(_call(args.target, method, params))


def _print(args: argparse.Namespace, result: Any) -> None:
    print(json.dumps(result, indent=2, ensure_ascii=False))


def _ins(text: str) -> str:
    """An INS as typed or copied (spaces allowed): 15 characters, NIR or NIA with its key."""
    ins = "".join(text.split()).upper()
    if not re.fullmatch(r"[0-9]{6}[0-9AB][0-9]{8}", ins):
        raise argparse.ArgumentTypeError(
            f"{text!r} is not an INS: 15 characters, 13 digits (2A/2B for Corsica) and the "
            "2-digit key")
    return ins


_ASK = "the patient answers OK or Cancel on the terminal (PIN on the keypad if asked)..."


def _exists(args: argparse.Namespace) -> int:
    result = _run(args, "dmp.exists", {"ins": args.ins})
    print("exists" if result["exists"] else "no DMP",
          f"({result['status']})" if result["status"] else "")
    return 0 if result["exists"] else 1


def _create(args: argparse.Namespace) -> int:
    params: dict[str, Any] = {"ins": args.ins}
    if args.express:
        params["express"] = True
    result = _run(args, "dmp.create", params, prompt=_ASK)
    print(f"DMP created ({result['status']}); the patient's password, shown once: "
          f"{result['patient_password']}")
    return 0


def _feed(args: argparse.Namespace) -> int:
    params: dict[str, Any] = {"ins": args.ins,
                              "cda": base64.b64encode(Path(args.cda).read_bytes()).decode()}
    metadata = {k: True for k in ("masked_ps", "invisible_patient",
                                  "invisible_representatives") if getattr(args, k)}
    if metadata:
        params["metadata"] = metadata
    if args.express:
        params["express"] = True
    result = _run(args, "dmp.feed", params, prompt=_ASK)
    if result["state"] == "queued":
        print(f"queued {result['queue_id']}: the host is unreachable, edged delivers it later")
    else:
        document = result["document"] or {}
        again = " (already registered)" if result.get("already_registered") else ""
        print(f"registered {document.get('id')}{again}")
    return 0


def _find(args: argparse.Namespace) -> int:
    params: dict[str, Any] = {"ins": args.ins}
    for key in ("type", "status"):
        if getattr(args, key):
            params[key] = getattr(args, key)
    if args.express:
        params["express"] = True
    result = _run(args, "dmp.find", params, prompt=_ASK)
    if args.json:
        _print(args, result)
        return 0
    print(f"{result['total']} document(s), mode {result['mode']}")
    for d in result["documents"]:
        print(f"{d['id']}  {d['type_code']:<8} {d['submitted_at']}  {d['title']}")
    return 0


def _get(args: argparse.Namespace) -> int:
    result = _run(args, "dmp.get", {"ins": args.ins, "document_id": args.document_id},
                  prompt=_ASK)
    cda = base64.b64decode(result["cda"] or "")
    if args.output:
        Path(args.output).write_bytes(cda)
        print(f"{result['document']['title']}: {len(cda)} bytes -> {args.output}")
    else:
        sys.stdout.write(cda.decode("utf-8", "replace"))
    return 0


def _patient_code(args: argparse.Namespace) -> int:
    result = _run(args, "dmp.patient_code", {"ins": args.ins}, prompt=_ASK)
    print(f"the patient's login code is on the terminal display, valid "
          f"{int(result['expires_in']) // 60} min (with the INS and the DMP password)")
    return 0


def _emergency(args: argparse.Namespace) -> int:
    result = _run(args, "dmp.emergency", {"ins": args.ins, "mode": args.mode,
                                          "reason": args.reason})
    print(f"emergency access {result['mode']} open for {int(result['expires_in'])} s "
          f"(reason traced and shown to the patient)")
    return 0


def _visibility(args: argparse.Namespace) -> int:
    params: dict[str, Any] = {"ins": args.ins, "document_id": args.document_id}
    for key in ("masked_ps", "invisible_patient", "invisible_representatives", "announced"):
        value = getattr(args, key)
        if value is not None:
            params[key] = value == "yes"
    _print(args, _run(args, "dmp.visibility", params)["document"]["visibility"])
    return 0


def _delete(args: argparse.Namespace) -> int:
    result = _run(args, "dmp.delete", {"ins": args.ins, "document_id": args.document_id})
    print(f"{result['document']['id']} {result['document']['status']}")
    return 0


def _queue(args: argparse.Namespace) -> int:
    result = _run(args, "dmp.queue", {"all": args.all})
    if args.json:
        _print(args, result)
        return 0
    print(f"{len(result['feeds'])} feed(s)")
    for f in result["feeds"]:
        error = f" ({f['last_error']})" if f["last_error"] else ""
        print(f"{f['queue_id']}  {f['patient']}  {f['state']}, {f['attempts']} "
              f"attempt(s){error}")
    return 0


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register `bifente dmp`."""
    dmp = sub.add_parser("dmp", help="the shared medical record (DMP), consent on the terminal")
    dsub = dmp.add_subparsers(dest="action", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--target", help="the paired terminal (host or fingerprint prefix)")
    patient = argparse.ArgumentParser(add_help=False, parents=[common])
    patient.add_argument("ins", metavar="INS", type=_ins,
                         help="the patient's INS (15 characters; spaces allowed, as "
                              "`vitale read` prints it)")
    express = argparse.ArgumentParser(add_help=False)
    express.add_argument("--express", action="store_true",
                         help="the patient's express consent (occupational doctors)")

    p = dsub.add_parser("exists", parents=[patient], help="does the patient have a DMP")
    p.set_defaults(func=_exists)
    p = dsub.add_parser("create", parents=[patient, express],
                        help="create the DMP (the patient consents on the terminal)")
    p.set_defaults(func=_create)
    p = dsub.add_parser("feed", parents=[patient, express], help="add a CDA R2 document")
    p.add_argument("cda", metavar="FILE", help="the CDA R2 XML file")
    for flag in ("masked_ps", "invisible_patient", "invisible_representatives"):
        p.add_argument("--" + flag.replace("_", "-"), dest=flag, action="store_true")
    p.set_defaults(func=_feed)
    p = dsub.add_parser("find", parents=[patient, express], help="the documents you may see")
    p.add_argument("--type", help="LOINC type codes, comma-separated")
    p.add_argument("--status", help="statuses, comma-separated")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_find)
    p = dsub.add_parser("get", parents=[patient], help="one document's CDA")
    p.add_argument("document_id")
    p.add_argument("-o", "--output", help="write the CDA there (default: stdout)")
    p.set_defaults(func=_get)
    p = dsub.add_parser("patient-code", parents=[patient],
                        help="show the patient's web login code on the terminal display")
    p.set_defaults(func=_patient_code)
    p = dsub.add_parser("emergency", parents=[patient],
                        help="emergency access without consent, with a stated reason")
    p.add_argument("--mode", choices=["bris_de_glace", "centre_15"], default="bris_de_glace")
    p.add_argument("--reason", required=True)
    p.set_defaults(func=_emergency)
    p = dsub.add_parser("visibility", parents=[patient], help="change a document's visibility")
    p.add_argument("document_id")
    for flag in ("masked_ps", "invisible_patient", "invisible_representatives", "announced"):
        p.add_argument("--" + flag.replace("_", "-"), dest=flag, choices=["yes", "no"])
    p.set_defaults(func=_visibility)
    p = dsub.add_parser("delete", parents=[patient],
                        help="delete a document you wrote, after the patient asked")
    p.add_argument("document_id")
    p.set_defaults(func=_delete)
    p = dsub.add_parser("queue", parents=[common], help="feeds waiting for the DMP host")
    p.add_argument("--all", action="store_true", help="also delivered and failed ones")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_queue)
