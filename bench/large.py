"""L: a 25 MB attachment with mail.send and a 20 MB PDF with dmp.feed, through edged and the SDK.

Everything runs in this process (the daemon, the SDK client, the reference mail operator's
and DMP host's threads), the cards in pcscd: the RSS growth is that of all of them, an upper
bound for edged's own. Each payload goes as a chunked upload (upload.begin / chunk /
commit) and is checked where it arrives: the recipient opens the mail with her card, the
DMP host reports the document's size and SHA-256.

    python -m bench.large
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import re
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench.table import Row, fmt_time, print_table

if TYPE_CHECKING:
    from simulators.world import SimulatedWorld

__all__ = ["run"]

MAIL_SIZE = 25 * 1000 * 1000
PDF_SIZE = 20 * 1000 * 1000
NURSE = "julie.bernard@cabinet.test"
PIERRE = "178027505601209"  # the family card's insured


def _reset_hwm() -> None:
    """Start the peak RSS again from the current RSS (Linux: clear_refs 5), for each flow."""
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")


def _hwm() -> int:
    """This process's peak RSS so far, bytes."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


async def _until(predicate: Any, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not reached")
        await asyncio.sleep(0.05)


async def _answer_consent(display: Any, keypad: Any, call: Any) -> Any:
    from simulators.pinpad import CONFIRM_KEYS  # the question's last line, in French

    task = asyncio.ensure_future(call)
    await _until(lambda: task.done() or CONFIRM_KEYS in display.screen(), 120)
    if not task.done():
        keypad.press("OK")
    return await task


async def _flows(tmp: Path, world: SimulatedWorld) -> tuple[dict[str, Any], dict[str, Any]]:
    from bifente_client import pair
    from edged.config import Config
    from edged.daemon import Daemon
    from edged.services import smime
    from edged.services.mail import service_of
    from simulators.pinpad import Keypad, PinPadTransport, SimulatedDisplay
    from tests.edged.cda import cda
    from tests.edged.test_mail_rpc import TRUST, Card, mailbox

    keypad = Keypad()
    display = SimulatedDisplay(keypad)
    op = world.mail
    assert op is not None
    daemon = Daemon(Config(  # the world's [mail] and [dmp] tables
        host="127.0.0.1", port=0, state_dir=tmp / "state", mdns=False,
        **world.edged_overrides()),
        ui=display, wrap_transport=lambda _r, t: PinPadTransport(t, keypad, display))
    await daemon.start()
    try:
        await _until(lambda: daemon.slots.find("cps") and daemon.slots.find("vitale"), 10)

        async def code() -> str:
            match = re.search(r"Code: (\d{6})", display.screen())
            assert match
            return match.group(1)

        credentials = await pair("127.0.0.1", daemon.server.port,
                                 daemon.keystore.fingerprint, "bench",
                                 ["mail:send", "cps:sign", "dmp:read", "dmp:write"], code)
        async with await credentials.connect() as client:
            keypad.press("1234", "OK")
            assert (await client.call("cps.verify_pin"))["result"] == "ok"
            data = os.urandom(MAIL_SIZE)
            _reset_hwm()
            before, start = _hwm(), time.perf_counter()
            upload_id = await client.upload(data)
            sent = await client.call("mail.send", {
                "to": [NURSE], "subject": "bench", "text": "25 MB",
                "attachments": [{"filename": "scan.bin", "upload_id": upload_id}]},
                timeout=600)
            queued, queued_rss = time.perf_counter() - start, _hwm() - before
            outbox = service_of(daemon.services.mail).outbox
            await _until(lambda: outbox.get(sent["message_id"]).state == "sent", 300)
            mail = {"queued": queued, "sent": time.perf_counter() - start,
                    "queued_rss": queued_rss, "rss": _hwm() - before}
            raw = (await asyncio.to_thread(mailbox, op, NURSE))[-1]
            opened = smime.open_message(raw, Card("nurse").decryptor, TRUST)
            mail["intact"] = [a.data for a in opened.attachments] == [data]
            del data, raw, opened

            document = cda(PIERRE, pdf=b"%PDF-1.7\n" + os.urandom(PDF_SIZE) + b"\n%%EOF\n")
            await _answer_consent(display, keypad, client.call("dmp.create",
                                                               {"ins": PIERRE}))
            _reset_hwm()
            before, start = _hwm(), time.perf_counter()
            upload_id = await client.upload(document)
            fed = await _answer_consent(display, keypad, client.call(
                "dmp.feed", {"ins": PIERRE, "upload_id": upload_id}, timeout=600))
            dmp = {"sent": time.perf_counter() - start, "rss": _hwm() - before,
                   "size": len(document),
                   "intact": fed.get("state") == "registered"
                   and fed["document"]["sha256"] == hashlib.sha256(document).hexdigest()}
    finally:
        await daemon.stop()
    return mail, dmp


def run(quick: bool = False) -> list[Row]:
    """The two large payloads through edged; PASS when both arrive intact."""
    from simulators.world import CardsOn, DmpOptions, MailOptions, SimulatedWorld

    with tempfile.TemporaryDirectory(prefix="bifente-bench-large-") as tmp, \
            SimulatedWorld("gp", "family", cards=CardsOn.PCSC,
                           mail=MailOptions(Path(tmp) / "op", max_message_bytes=64 * 1024 * 1024),
                           dmp=DmpOptions(Path(tmp) / "dmp", admin_token="bench")) as world:
        mail, dmp = asyncio.run(_flows(Path(tmp), world))
    both = mail["intact"] and dmp["intact"]
    return [
        Row("mail.send, 25 MB attachment (upload + sign + encrypt, queued)",
            fmt_time(mail["queued"]),
            f"peak RSS +{mail['queued_rss'] / 1e6:.0f} MB by then "
            f"({mail['queued_rss'] / MAIL_SIZE:.1f}x: client and daemon); delivered after "
            f"{fmt_time(mail['sent'])}, +{mail['rss'] / 1e6:.0f} MB with the SMTP delivery and "
            f"the operator in this process; {'intact' if mail['intact'] else 'DAMAGED'}"),
        Row("dmp.feed, CDA with a 20 MB PDF (upload + consent + POST)", fmt_time(dmp["sent"]),
            f"{dmp['size'] / 1e6:.1f} MB CDA; peak RSS +{dmp['rss'] / 1e6:.0f} MB "
            f"({dmp['rss'] / dmp['size']:.1f}x; client, daemon and host in one process); "
            f"{'intact' if dmp['intact'] else 'DAMAGED'}"),
        Row("largest mail.send attachment / dmp.feed document", "25 / 20 MB",
            "both arrived intact" if both else "a payload did not arrive intact",
            "", ">= 25 / 20 MB", both, "L"),
    ]


def main() -> int:
    """Print this table alone."""
    print_table("Large payloads through edged and the SDK", run())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
