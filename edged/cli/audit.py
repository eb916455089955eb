"""`bifente audit verify` and `bifente audit export`: check and dump the hash-chained audit log."""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import asdict
from pathlib import Path

from edged.state.audit import ANCHOR_KEY_NAME, AUDIT_DB_NAME, AuditLog, default_state_dir

__all__ = ["add_parsers"]


def _db_path(args: argparse.Namespace) -> Path:
    return Path(args.db) if args.db else default_state_dir() / AUDIT_DB_NAME


def _anchor_key(args: argparse.Namespace) -> bytes | None:
    if args.anchor_key_file:
        return Path(args.anchor_key_file).read_bytes()
    beside = _db_path(args).parent / ANCHOR_KEY_NAME  # where the daemon keeps it
    return beside.read_bytes() if beside.is_file() and os.access(beside, os.R_OK) else None


def _verify(args: argparse.Namespace) -> int:
    with AuditLog(_db_path(args), readonly=True, anchor_key=_anchor_key(args)) as log:
        report = log.verify()
    if args.json:
        print(json.dumps(asdict(report)))
    else:
        hint = ""
        if not report.ok and "MAC mismatch" in report.reason and args.anchor_key_file:
            hint = (f"; or {args.anchor_key_file} is not this daemon's anchor key "
                    "(state_dir/audit.key)")
        print(f"audit log {'OK' if report.ok else 'INVALID'}: {report.reason}{hint}")
    return 0 if report.ok else 1


def _export(args: argparse.Namespace) -> int:
    with AuditLog(_db_path(args), readonly=True) as log:
        if not args.out:
            log.export(sys.stdout, since=args.since)
            return 0
        fd = os.open(args.out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with open(fd, "w", encoding="utf-8") as out:
            count = log.export(out, since=args.since)
    print(f"{count} records written to {args.out}", file=sys.stderr)
    return 0


def _since(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError("must be >= 0")
    return value


def add_parsers(sub: argparse._SubParsersAction) -> None:
    """Register the audit commands."""
    audit = sub.add_parser("audit", help="the append-only, hash-chained audit log")
    asub = audit.add_subparsers(dest="action", required=True)
    db_help = (f"the log (default: $BIFENTE_STATE_DIR/{AUDIT_DB_NAME}, "
               f"else /var/lib/bifente/{AUDIT_DB_NAME})")

    p = asub.add_parser("verify", help="check the chain and the anchor; exit 1 on the first fault")
    p.add_argument("--db", metavar="PATH", help=db_help)
    p.add_argument("--anchor-key-file", metavar="FILE",
                   help="file holding the daemon's anchor MAC key (raw bytes); without it the "
                        "anchor's MAC is not checked")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_verify)

    p = asub.add_parser("export", help="write the records as JSON lines")
    p.add_argument("--db", metavar="PATH", help=db_help)
    p.add_argument("--since", type=_since, default=0, metavar="N",
                   help="only records after sequence number N")
    p.add_argument("--out", metavar="FILE", help="write here (mode 0600) instead of stdout")
    p.set_defaults(func=_export)
