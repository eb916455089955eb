"""L: a 25 MB attachment with mail.send and a 20 MB PDF with dmp.feed, through edged and the SDK.

The daemon runs in this process with the reference mail operator's threads (idle until the
mail is delivered); the SDK client (bench/large_client.py) and the reference DMP host
(`bifente sim dmp`) run in processes of their own, the cards in pcscd. So the RSS growth
measured here up to the answer is the daemon's own (Lm). Each payload goes as a chunked
upload (upload.begin / chunk / commit) and is checked where it arrives: the recipient opens
the mail with her card, the DMP host reports the document's size and SHA-256.

    python -m bench.large
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import hashlib
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench.table import Row, fmt_time, goal, print_table

if TYPE_CHECKING:
    from bifente.simulators.world import SimulatedWorld

__all__ = ["run"]

MAIL_SIZE = 25 * 1000 * 1000
PDF_SIZE = 20 * 1000 * 1000
NURSE = "julie.bernard@cabinet.test"
PIERRE = "178027505601209"  # the family card's insured


def _reset_hwm() -> None:
    """Start the peak RSS again from the current RSS (Linux: clear_refs 5), for each flow.

    Memory freed earlier is given back first (glibc's malloc_trim): kept in the heap, it
    would be reused without the RSS growing, and the flow would look cheaper than it is.
    """
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None).malloc_trim(0)  # glibc, as edged/memory.py reaches mallopt
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
    from bifente.simulators.pinpad import CONFIRM_KEYS  # the question's last line, in French

    task = asyncio.ensure_future(call)
    await _until(lambda: task.done() or CONFIRM_KEYS in display.screen(), 120)
    if not task.done():
        keypad.press("OK")
    return await task


async def _client_process(credentials: Path, payload: Path, method: str,
                          params: dict[str, Any]) -> dict[str, Any]:
    """Upload `payload` and make the call from a client process (bench/large_client.py)."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bench.large_client", str(credentials), str(payload), method,
        json.dumps(params), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = await process.communicate()
    if process.returncode:
        raise RuntimeError(f"{method} from the client process failed: "
                           f"{err.decode(errors='replace')[-2000:]}")
    answer: dict[str, Any] = json.loads(out)
    return answer


@contextlib.contextmanager
def _dmp_host_process(data: Path) -> Iterator[dict[str, str]]:
    """The reference DMP host in a process of its own (`bifente sim dmp`), so that the bench's
    process, the daemon's, does not also hold what the host receives; edged's [dmp] table."""
    process = subprocess.Popen(
        [sys.executable, "-m", "bifente.edged.cli.main", "sim", "dmp", "--data", str(data),
         "--port", "0", "--admin-token", "bench"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert process.stdout is not None
        url = re.search(r" on (https://\S+)", process.stdout.readline())
        cafile = re.search(r"trust: (\S+)", process.stdout.readline())
        if url is None or cafile is None:
            raise RuntimeError("the DMP host process did not say where it listens")
        yield {"url": url.group(1), "ca_file": cafile.group(1), "admin_token": "bench"}
    finally:
        process.terminate()
        process.wait(30)


async def _flows(tmp: Path, world: SimulatedWorld,
                 dmp_table: dict[str, str]) -> tuple[dict[str, Any], dict[str, Any]]:
    from bifente.client import pair
    from bifente.edged.config import Config
    from bifente.edged.daemon import Daemon
    from bifente.edged.services import smime
    from bifente.edged.services.mail import service_of
    from bifente.simulators.pinpad import Keypad, PinPadTransport, SimulatedDisplay
    from tests.edged.cda import cda
    from tests.edged.test_mail_rpc import TRUST, Card, mailbox

    keypad = Keypad()
    display = SimulatedDisplay(keypad)
    op = world.mail
    assert op is not None
    daemon = Daemon(Config(  # the world's [mail] table, the host process's [dmp] one
        host="127.0.0.1", port=0, state_dir=tmp / "state", mdns=False,
        **world.edged_overrides(), dmp=dmp_table),
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
        creds_dir = tmp / "client"
        credentials.save(creds_dir)
        async with await credentials.connect() as client:
            keypad.press("1234", "OK")
            assert (await client.call("cps.verify_pin"))["result"] == "ok"
            payload = tmp / "scan.bin"
            payload.write_bytes(os.urandom(MAIL_SIZE))
            with payload.open("rb") as f:
                digest = hashlib.file_digest(f, "sha256").digest()
            _reset_hwm()
            before, start = _hwm(), time.perf_counter()
            done = await _client_process(creds_dir, payload, "mail.send", {
                "to": [NURSE], "subject": "bench", "text": "25 MB",
                "attachments": [{"filename": "scan.bin", "upload_id": "@upload"}]})
            sent, queued_rss = done["result"], _hwm() - before
            outbox = service_of(daemon.services.mail).outbox
            await _until(lambda: outbox.get(sent["message_id"]).state == "sent", 300)
            mail = {"queued": done["seconds"], "sent": time.perf_counter() - start,
                    "queued_rss": queued_rss, "rss": _hwm() - before}
            raw = (await asyncio.to_thread(mailbox, op, NURSE))[-1]
            opened = smime.open_message(raw, Card("nurse").decryptor, TRUST)
            mail["intact"] = [hashlib.sha256(a.data).digest()
                              for a in opened.attachments] == [digest]
            del raw, opened

            document = cda(PIERRE, pdf=b"%PDF-1.7\n" + os.urandom(PDF_SIZE) + b"\n%%EOF\n")
            payload.write_bytes(document)
            size, digest_hex = len(document), hashlib.sha256(document).hexdigest()
            del document
            await _answer_consent(display, keypad, client.call("dmp.create",
                                                               {"ins": PIERRE}))
            _reset_hwm()
            before = _hwm()
            done = await _answer_consent(display, keypad, _client_process(
                creds_dir, payload, "dmp.feed", {"ins": PIERRE, "upload_id": "@upload"}))
            fed = done["result"]
            dmp = {"sent": done["seconds"], "rss": _hwm() - before, "size": size,
                   "intact": fed.get("state") == "registered"
                   and fed["document"]["sha256"] == digest_hex}
    finally:
        await daemon.stop()
    return mail, dmp


def run(quick: bool = False) -> list[Row]:
    """The two large payloads through edged; PASS when both arrive intact."""
    from bifente.simulators.world import CardsOn, MailOptions, SimulatedWorld

    with tempfile.TemporaryDirectory(prefix="bifente-bench-large-") as tmp, \
            SimulatedWorld("gp", "family", cards=CardsOn.PCSC,
                           mail=MailOptions(Path(tmp) / "op", max_message_bytes=64 * 1024 * 1024),
                           dmp=False) as world, \
            _dmp_host_process(Path(tmp) / "dmp") as dmp_table:
        mail, dmp = asyncio.run(_flows(Path(tmp), world, dmp_table))
    both = mail["intact"] and dmp["intact"]
    # As P5m: the peak above a floor that already holds the input (here the upload, which
    # the daemon holds once it claims it), over the input's size; the larger of the two.
    mail_above = (mail["queued_rss"] - MAIL_SIZE) / MAIL_SIZE
    dmp_above = (dmp["rss"] - dmp["size"]) / dmp["size"]
    return [
        Row("mail.send, 25 MB attachment (upload + sign + encrypt, queued)",
            fmt_time(mail["queued"]),
            f"peak RSS +{mail['queued_rss'] / 1e6:.0f} MB by then, {mail_above:.2f}x above "
            f"the upload it holds; delivered after {fmt_time(mail['sent'])}, "
            f"+{mail['rss'] / 1e6:.0f} MB with the SMTP delivery and the operator in the "
            f"daemon's process; {'intact' if mail['intact'] else 'DAMAGED'}"),
        Row("dmp.feed, CDA with a 20 MB PDF (upload + consent + POST)", fmt_time(dmp["sent"]),
            f"{dmp['size'] / 1e6:.1f} MB CDA; peak RSS +{dmp['rss'] / 1e6:.0f} MB, "
            f"{dmp_above:.2f}x above the upload it holds; "
            f"{'intact' if dmp['intact'] else 'DAMAGED'}"),
        Row("largest mail.send attachment / dmp.feed document", "25 / 20 MB",
            "both arrived intact" if both else "a payload did not arrive intact",
            "", ">= 25 / 20 MB", both, "L"),
        goal("Lm", "mail.send / dmp.feed: daemon's peak RSS above its floor / payload",
             f"+{mail['queued_rss'] / 1e6:.0f} / +{dmp['rss'] / 1e6:.0f} MB",
             max(mail_above, dmp_above), 3.0, at_least=False, unit="x",
             detail=f"{mail_above:.2f}x / {dmp_above:.2f}x: peak growth of the daemon's process "
                    "less the upload it holds once claimed (P5m's floor holds its input); the "
                    "client and the DMP host in processes of their own"),
    ]


def main() -> int:
    """Print this table alone."""
    print_table("Large payloads through edged and the SDK", run())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
