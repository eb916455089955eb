"""`bifente mail send|list|open|status`: secure health mail through a paired terminal.

The terminal signs with the CPS (the PIN typed on its keypad: `bifente` asks it first when
needed) and encrypts to every recipient and the sender; the credentials are those stored by
`bifente pair` (scope mail:send to send, mail:read for list and open).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import mimetypes
import re
import sys
from pathlib import Path
from typing import Any

from bifente.client import Credentials, RemoteError

__all__ = ["add_parsers", "clean", "message_lines", "safe_filename"]


async def _session(target: str | None, method: str, params: dict[str, Any],
                   pin: bool) -> Any:
    credentials = Credentials.find(target)
    async with await credentials.connect() as client:
        try:
            return await client.call(method, params)
        except RemoteError as exc:
            if not (pin and exc.reason == "pin_required"):
                raise
        print("type the PIN on the terminal keypad...", file=sys.stderr, flush=True)
        result = await client.call("cps.verify_pin")
        if result["result"] != "ok":
            raise SystemExit(f"bifente: PIN {result['result']} "
                             f"({result['tries_left']} tries left)")
        return await client.call(method, params)


def _send(args: argparse.Namespace) -> int:
    text = args.text
    if args.text_file is not None:
        text = Path(args.text_file).read_text(encoding="utf-8")
    attachments = []
    for name in args.attach or []:
        path = Path(name)
        kind = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        attachments.append({"filename": path.name, "content_type": kind,
                            "data": base64.b64encode(path.read_bytes()).decode()})
    params: dict[str, Any] = {"to": args.to, "subject": args.subject, "text": text}
    if args.cc:
        params["cc"] = args.cc
    if args.html_file:
        params["html"] = Path(args.html_file).read_text(encoding="utf-8")
    if attachments:
        params["attachments"] = attachments
    result = asyncio.run(_session(args.target, "mail.send", params, pin=True))
    print(f"{result['message_id']} {result['state']}")
    return 0


def _message_id(text: str) -> str:
    """A Message-ID as printed by mail send, with or without its angle brackets."""
    text = text.strip()
    return text if text.startswith("<") else f"<{text}>"


def _status(args: argparse.Namespace) -> int:
    result = asyncio.run(_session(args.target, "mail.status",
                                  {"message_id": _message_id(args.message_id)}, pin=False))
    error = f" ({result['last_error']})" if result.get("last_error") else ""
    print(f"{result['message_id']} {result['state']}, {result['attempts']} attempt(s){error}")
    return 0


def _list(args: argparse.Namespace) -> int:
    result = asyncio.run(_session(args.target, "mail.list", {}, pin=False))
    if args.json:
        print(json.dumps(result, indent=2, ensure_ascii=False))
        return 0
    print(f"{result['address']}: {len(result['messages'])} message(s)")
    for m in result["messages"]:
        print(f"{m['uid']}  {clean(m['date'][:31]):<31}  {clean(m['from'][:32]):<32}  "
              f"{clean(m['subject'])}")
    return 0


# C0 and C1 control characters and DEL. A sender could otherwise drive the reader's
# terminal (ESC ] retitles it, ESC [2J clears it) from a subject or a filename (review L4).
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")
_CONTROL_IN_BODY = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")  # keeps \t and \n


def clean(text: str) -> str:
    """Sender-controlled text for one line on a terminal: control characters become '?'."""
    return _CONTROL.sub("?", text)


def safe_filename(name: str) -> str:
    """An attachment's name to save under: no path from the sender, no control character."""
    base = clean(Path(name.replace("\\", "/")).name).strip(" .")
    return base or "attachment"


def message_lines(result: dict[str, Any]) -> list[str]:
    """What `mail open` prints for a message, every sender-controlled field cleaned."""
    signer = result["signer"]
    body = result["text"] if result["text"] is not None else result["html"] or ""
    lines = [f"From: {clean(result['from'])}",
             f"To: {clean(', '.join(result['to']))}"]
    if result["cc"]:
        lines.append(f"Cc: {clean(', '.join(result['cc']))}")
    lines += [f"Subject: {clean(result['subject'])}",
              f"Date: {clean(result['date'])}",
              f"Signed by: {clean(signer['name'])} <{clean(signer['email'])}> "
              f"({'valid' if signer['valid'] else 'NOT VERIFIED'})",
              "",
              _CONTROL_IN_BODY.sub("?", body.replace("\r\n", "\n"))]
    return lines


def _open(args: argparse.Namespace) -> int:
    result = asyncio.run(_session(args.target, "mail.open", {"uid": args.uid}, pin=True))
    if args.json:
        print(json.dumps(result, indent=2, ensure_ascii=False))
        return 0
    for text in message_lines(result):
        print(text)
    for a in result["attachments"]:
        line = (f"[attachment] {clean(a['filename'])} ({clean(a['content_type'])}, "
                f"{a['size']} bytes)")
        if args.save_attachments:
            folder = Path(args.save_attachments)
            folder.mkdir(parents=True, exist_ok=True)
            target = folder / safe_filename(a["filename"])
            target.write_bytes(base64.b64decode(a["data"]))
            line += f" -> {target}"
        print(line)
    return 0


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register `bifente mail`."""
    mail = sub.add_parser("mail", help="secure health mail signed and encrypted by the CPS")
    msub = mail.add_subparsers(dest="action", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--target", help="the paired terminal (host or fingerprint prefix)")

    p = msub.add_parser("send", parents=[common], help="sign, encrypt and queue a message")
    p.add_argument("--to", action="append", required=True, help="recipient (repeatable)")
    p.add_argument("--cc", action="append", help="copy to (repeatable)")
    p.add_argument("--subject", required=True)
    body = p.add_mutually_exclusive_group(required=True)
    body.add_argument("--text", help="the text body")
    body.add_argument("--text-file", help="the text body from a UTF-8 file")
    p.add_argument("--html-file", help="an HTML body as well")
    p.add_argument("--attach", action="append", metavar="FILE", help="attach a file (repeatable)")
    p.set_defaults(func=_send)

    p = msub.add_parser("status", parents=[common], help="where a sent message is")
    p.add_argument("message_id")
    p.set_defaults(func=_status)

    p = msub.add_parser("list", parents=[common], help="the professional's mailbox")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_list)

    p = msub.add_parser("open", parents=[common], help="decrypt and verify a message")
    p.add_argument("uid")
    p.add_argument("--save-attachments", metavar="DIR", help="write the attachments there")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_open)
