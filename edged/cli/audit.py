"""`bifente audit verify`, `export` and `checkpoint`: check, dump and pin the audit log."""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import asdict
from pathlib import Path

from bifente.edged.state.audit import (
    ANCHOR_KEY_NAME,
    AUDIT_DB_NAME,
    AuditError,
    AuditLog,
    default_state_dir,
    read_anchor_key,
)
from bifente.edged.state.checkpoint import CheckpointError, verify_checkpoint
from bifente.edged.state.keywrap import StateKeyError, is_sealed, load_key_wrapper

__all__ = ["add_parsers"]


def _db_path(args: argparse.Namespace) -> Path:
    return Path(args.db) if args.db else default_state_dir() / AUDIT_DB_NAME


def _anchor_key(args: argparse.Namespace) -> bytes | None:
    path = Path(args.anchor_key_file) if args.anchor_key_file else \
        _db_path(args).parent / ANCHOR_KEY_NAME  # where the daemon keeps it
    if not args.anchor_key_file and not (path.is_file() and os.access(path, os.R_OK)):
        return None
    if not is_sealed(path.read_bytes()):
        return path.read_bytes()
    # Sealed with the state key: open it when this process can reach that key (the
    # fallback key file; the systemd credential is the service's alone).
    try:
        wrapper = load_key_wrapper(_db_path(args).parent, args.state_key_file or "",
                                   create=False)
        return read_anchor_key(path, wrapper)
    except (StateKeyError, AuditError) as exc:
        print(f"note: the anchor key is sealed and cannot be opened here ({exc}); the MAC is "
              "not checked", file=sys.stderr)
        return None


def _verify(args: argparse.Namespace) -> int:
    checkpoint = None
    if args.checkpoint:
        try:
            checkpoint = verify_checkpoint(Path(args.checkpoint).read_bytes(),
                                           device=args.device)
        except CheckpointError as exc:
            print(f"audit log INVALID: checkpoint refused: {exc}")
            return 1
    with AuditLog(_db_path(args), readonly=True, anchor_key=_anchor_key(args)) as log:
        report = log.verify(checkpoint)
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


def _checkpoint(args: argparse.Namespace) -> int:
    import asyncio

    from bifente.edged.cli.remote import _call

    result = asyncio.run(_call(args.target, "audit.checkpoint", {}))
    verify_checkpoint(result)  # never keep a checkpoint that does not verify
    text = json.dumps(result, indent=1) + "\n"
    if not args.out:
        sys.stdout.write(text)
        return 0
    fd = os.open(args.out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with open(fd, "w", encoding="utf-8") as out:
        out.write(text)
    print(f"checkpoint at record {result['seq']} written to {args.out}", file=sys.stderr)
    return 0


def _since(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError("must be >= 0")
    return value


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
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
    p.add_argument("--state-key-file", metavar="FILE",
                   help="the fallback state key file, when the anchor key is sealed with it")
    p.add_argument("--checkpoint", metavar="FILE",
                   help="a checkpoint from `bifente audit checkpoint`, kept off the terminal: "
                        "the log must still hold its record with its hash")
    p.add_argument("--device", metavar="SHA256",
                   help="with --checkpoint: the device CA certificate's SHA-256 it must carry")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_verify)

    p = asub.add_parser("checkpoint", help="fetch a signed checkpoint from a paired terminal "
                                           "(admin scope) to keep elsewhere")
    p.add_argument("--target", help="host or fingerprint prefix of the paired terminal")
    p.add_argument("--out", metavar="FILE", help="write here (mode 0600) instead of stdout")
    p.set_defaults(func=_checkpoint)

    p = asub.add_parser("export", help="write the records as JSON lines")
    p.add_argument("--db", metavar="PATH", help=db_help)
    p.add_argument("--since", type=_since, default=0, metavar="N",
                   help="only records after sequence number N")
    p.add_argument("--out", metavar="FILE", help="write here (mode 0600) instead of stdout")
    p.set_defaults(func=_export)
