"""Mail benchmarks: protect and open a message with a 10 MB attachment, bifente vs `openssl cms`.

Each side runs in its own process so peak RSS (`wait4` rusage, ru_maxrss) is that side's
alone. bifente signs with the simulated CPS card in process (split hash) and decrypts with
PSO DECIPHER on it; OpenSSL uses the same keys from files. Both open the same message
(the one bifente protected), and both protect the same attachment: AES-256-GCM, RSA PKCS#1
v1.5 key transport (the only one a CPS card deciphers) to the recipient and the sender,
CAdES signing-certificate-v2.

    python -m bench.mail [--quick]          # this table alone
    python -m bench.mail --no-latency       # P5, P5m and P5d alone (the card in process: no pcscd)
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.table import Row, fmt_time, goal, print_table
from bifente.apdu.cps import CpsSession
from bifente.simulators.pki import DATA

__all__ = ["run"]

REPO = Path(__file__).resolve().parent.parent
SIZE = 10 * 1024 * 1024
SENDER = "Claire MARTIN <claire.martin@cabinet.test>"
RECIPIENT = "paul.infirmier@cabinet.test"
ROOT = DATA / "ca" / "test-root.crt.pem"
PERSONNES = DATA / "ca" / "test-personnes.crt.pem"
GP = DATA / "cps" / "gp"
NURSE = DATA / "cps" / "nurse"


# Peak RSS of one process: Linux carries a parent's RSS at fork into the child's ru_maxrss,
# so the measured process must be forked by something small. GNU time is (about 1 MB);
# without it, a bare Python launcher is used and its own size (~10 MB) is the floor.
GNU_TIME = "/usr/bin/time" if Path("/usr/bin/time").exists() else None
_LAUNCHER = ("import resource, subprocess, sys\n"
             "code = subprocess.run(sys.argv[2:]).returncode\n"
             "kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss\n"
             "open(sys.argv[1], 'w').write(str(kib))\n"
             "sys.exit(code)\n")


def _measure(argv: Sequence[str | Path], cwd: Path) -> tuple[float, int, bytes]:
    """Run one process: wall seconds, its own peak RSS in bytes, stdout."""
    with tempfile.TemporaryDirectory() as tmp:
        rss_file = Path(tmp) / "rss"
        wrapper = [GNU_TIME, "-f", "%M", "-o", str(rss_file)] if GNU_TIME else \
            [sys.executable, "-S", "-c", _LAUNCHER, str(rss_file)]
        start = time.perf_counter()
        result = subprocess.run([*wrapper, *map(str, argv)], cwd=cwd, capture_output=True,
                                check=False)
        wall = time.perf_counter() - start
        if result.returncode:
            raise RuntimeError(f"{argv[0]} failed: {result.stderr.decode(errors='replace')}")
        kib = int(rss_file.read_text().split()[-1])
    return wall, kib * 1024, result.stdout


def _ours(mode: str, folder: Path) -> tuple[float, float, int]:
    """(operation seconds inside the process, process wall seconds, peak RSS)."""
    wall, rss, out = _measure([sys.executable, "-m", "bench.mail", "--worker", mode,
                               str(folder)], REPO)
    return json.loads(out)["seconds"], wall, rss


def _openssl(steps: Sequence[Sequence[str | Path]], folder: Path) -> tuple[float, int]:
    """Total wall seconds of the commands, the largest peak RSS among them."""
    total, peak = 0.0, 0
    for step in steps:
        wall, rss, _out = _measure(["openssl", "cms", *step], folder)
        total += wall
        peak = max(peak, rss)
    return total, peak


def _prepare(folder: Path, size: int) -> None:
    from bifente.edged.services import smime

    data = os.urandom(size)
    (folder / "attachment.bin").write_bytes(data)
    (folder / "attachment.sha256").write_text(hashlib.sha256(data).hexdigest())
    msg = smime.build_message(SENDER, [RECIPIENT], (), "Bench", text="Bonjour\n",
                              attachments=[smime.Attachment("scan.bin",
                                                            "application/octet-stream", data)])
    for name in ("From", "To", "Subject", "Date", "Message-ID", "MIME-Version"):
        del msg[name]
    (folder / "entity.eml").write_bytes(smime.to_bytes(msg))


def _session(profile: str) -> CpsSession:
    from bifente.apdu.protocol import CardProtocol
    from bifente.apdu.transport import InProcessTransport
    from bifente.simulators.cps3 import Cps3Card

    session = CpsSession(CardProtocol(InProcessTransport(Cps3Card(profile))))
    session.verify_pin(lambda _request: bytearray(b"1234"))
    return session


def _worker(mode: str, folder: Path) -> None:
    """One side of the benchmark, in its own process; prints the operation's seconds."""
    from bifente.edged.services import cms, smime
    from bifente.simulators.pki import ca_certificate, card_keys

    seconds = 0.0
    if mode == "protect":
        signer = cms.CardSigner(_session("gp"), [ca_certificate("personnes")])
        data = (folder / "attachment.bin").read_bytes()
        recipient = card_keys("nurse").authentication_cert
        start = time.perf_counter()
        msg = smime.build_message(SENDER, [RECIPIENT], (), "Bench", text="Bonjour\n",
                                  attachments=[smime.Attachment(
                                      "scan.bin", "application/octet-stream", data)])
        with (folder / "ours.eml").open("wb") as out:  # streamed, as openssl writes its file
            smime.protect_to(out, msg, signer, [recipient], "gcm")
        seconds = time.perf_counter() - start
    elif mode == "open":
        decryptor = cms.CardDecryptor(_session("nurse"))
        trust = cms.TrustStore([ca_certificate("root")])
        raw = (folder / "ours.eml").read_bytes()
        start = time.perf_counter()
        opened = smime.open_message(raw, decryptor, trust)
        seconds = time.perf_counter() - start
        # Arrived intact (a digest: reading the file again would count in the peak RSS).
        digest = hashlib.sha256(opened.attachments[0].data).hexdigest()
        assert digest == (folder / "attachment.sha256").read_text()
    elif mode == "idle":  # imports, a card session and the input in memory: the floor
        _session("gp")
        (folder / "attachment.bin").read_bytes()
    print(json.dumps({"seconds": seconds}))


def _rows(key: str, label: str, ours: list[tuple[float, float, int]],
          theirs: list[tuple[float, int]], floor: int, size: int) -> list[Row]:
    op = statistics.median(o[0] for o in ours)
    wall = statistics.median(o[1] for o in ours)
    rss = max(o[2] for o in ours)
    t_ssl = statistics.median(t[0] for t in theirs)
    rss_ssl = max(t[1] for t in theirs)
    mb = size / 1e6
    above = (rss - floor) / size
    return [
        Row(f"{label}, openssl cms", fmt_time(t_ssl),
            f"{mb / t_ssl:6.1f} MB/s, peak RSS {rss_ssl / 1e6:5.0f} MB", "1.00 (baseline)"),
        goal(key, f"{label}, bifente (card in process), MB/s ours / openssl", fmt_time(op),
             t_ssl / op, 0.8 if key == "P5" else 1.0, at_least=True,
             detail=f"{mb / op:6.1f} MB/s (process {fmt_time(wall)})"),
        goal(f"{key}m" if key == "P5" else key,
             f"{label}, peak RSS above the floor / message size", f"{rss / 1e6:.0f} MB",
             above, 3.0, at_least=False, unit="x",
             detail=f"peak {rss / 1e6:.0f} MB - floor {floor / 1e6:.0f} MB, over "
                    f"{mb:.1f} MB; openssl {rss_ssl / 1e6:.0f} MB"),
    ]


def _side_by_side(folder: Path, rounds: int, size: int) -> tuple[list[Any], ...]:
    """Our protect/open and openssl's, interleaved so drift hits both sides alike."""
    protect_ssl = [
        ["-sign", "-cades", "-in", "entity.eml", "-signer", GP / "sig.crt.pem", "-inkey",
         GP / "sig.key.pem", "-certfile", PERSONNES, "-out", "signed.eml"],
        ["-encrypt", "-aes-256-gcm", "-in", "signed.eml", "-recip", NURSE / "aut.crt.pem",
         "-recip", GP / "aut.crt.pem", "-out", "openssl.eml"],
    ]
    open_ssl = [
        ["-decrypt", "-in", "ours.eml", "-recip", NURSE / "aut.crt.pem", "-inkey",
         NURSE / "aut.key.pem", "-out", "decrypted.eml"],
        ["-verify", "-in", "decrypted.eml", "-CAfile", ROOT, "-cades", "-out",
         "content.eml"],
    ]
    ours_protect, ssl_protect, ours_open, ssl_open = [], [], [], []
    for _ in range(rounds):
        ours_protect.append(_ours("protect", folder))
        ssl_protect.append(_openssl(protect_ssl, folder))
        ours_open.append(_ours("open", folder))
        ssl_open.append(_openssl(open_ssl, folder))
    return ours_protect, ssl_protect, ours_open, ssl_open


def run(quick: bool = False, latency: bool = True) -> list[Row]:
    """Sign+encrypt and decrypt+verify of a 10 MB attachment: MB/s and peak RSS, side by side;
    then, with `latency`, the signing latency rows (through edged: pcscd)."""
    rounds = 1 if quick else 3
    with tempfile.TemporaryDirectory(prefix="bifente-bench-mail-") as tmp:
        folder = Path(tmp)
        _prepare(folder, SIZE)
        ours_protect, ssl_protect, ours_open, ssl_open = _side_by_side(folder, rounds, SIZE)
        _wall, idle_rss, _out = _measure([sys.executable, "-m", "bench.mail", "--worker",
                                          "idle", str(folder)], REPO)
    rows = _rows("P5", "sign + encrypt 10 MB", ours_protect, ssl_protect, idle_rss, SIZE)
    rows += _rows("P5d", "decrypt + verify 10 MB", ours_open, ssl_open, idle_rss, SIZE)
    rows.append(Row("bifente process floor (imports, card, input read)", "",
                    f"peak RSS {idle_rss / 1e6:5.0f} MB", ""))
    if latency:
        rows += signing_latency(quick)
    return rows


def growth(sizes_mb: Sequence[int] = (1, 10, 25)) -> list[Row]:
    """Sign+encrypt time and peak RSS at each size, ours against openssl (docs/benchmarks.md)."""
    rows = []
    for mb in sizes_mb:
        size = mb * 1024 * 1024
        with tempfile.TemporaryDirectory(prefix="bifente-bench-mail-") as tmp:
            folder = Path(tmp)
            _prepare(folder, size)
            ours, theirs, ours_open, ssl_open = _side_by_side(folder, 1, size)
        op, rss = ours[0][0], ours[0][2]
        t_ssl, rss_ssl = theirs[0]
        rows.append(Row(f"sign + encrypt {mb} MiB", fmt_time(op),
                        f"peak RSS {rss / 1e6:.0f} MB; openssl {fmt_time(t_ssl)}, "
                        f"{rss_ssl / 1e6:.0f} MB; open {fmt_time(ours_open[0][0])} "
                        f"({ours_open[0][2] / 1e6:.0f} MB) vs {fmt_time(ssl_open[0][0])}",
                        f"time x{op / t_ssl:.2f}"))
    return rows


# -- CMS signing latency: through the daemon against in process ---------------
NURSE_ADDRESS = "julie.bernard@cabinet.test"


def _small_message(sender: str) -> Any:
    from bifente.edged.services import smime

    return smime.build_message(sender, NURSE_ADDRESS, subject="bench", text="Bonjour " * 64)


def _in_process(reader: str, nurse: Any,
                n: int) -> tuple[list[float], list[float], list[float], int]:
    """On a PcscTransport: the card's signature, a detached CAdES signature, sign + encrypt."""
    from bifente.apdu.pcsc import PcscTransport
    from bifente.apdu.protocol import CardProtocol
    from bifente.edged.services import cms, smime
    from bifente.simulators.pki import ca_certificate

    with PcscTransport(reader) as transport:
        protocol = CardProtocol(transport)
        session = CpsSession(protocol)
        session.verify_pin(lambda _request: bytearray(b"1234"))
        signer = cms.CardSigner(session, [ca_certificate("personnes")])
        content = smime.to_bytes(_small_message("claire.martin@cabinet.test"))
        raw, sign, protect = [], [], []
        before = session_apdus = 0
        for _ in range(n):
            before = protocol.apdu_count
            t = time.perf_counter()
            session.sign(content)
            raw.append(time.perf_counter() - t)
            session_apdus = protocol.apdu_count - before
            t = time.perf_counter()
            cms.sign(content, signer, detached=True)
            sign.append(time.perf_counter() - t)
            t = time.perf_counter()
            smime.protect_bytes(_small_message("claire.martin@cabinet.test"), signer, [nurse])
            protect.append(time.perf_counter() - t)
    return raw, sign, protect, session_apdus


async def _through_daemon(mail: dict[str, Any], state: Path,
                          n: int) -> tuple[list[float], list[float], int]:
    """cps.sign of the same content, and mail.send up to queueing, over WSS + TLS."""
    import base64
    import re

    from bench.waits import cards_seen
    from bifente.client import pair
    from bifente.edged.config import Config
    from bifente.edged.daemon import Daemon
    from bifente.edged.readers.pcsc import CardKind
    from bifente.edged.services import smime
    from bifente.simulators.pinpad import Keypad, SimulatedDisplay

    keypad = Keypad()
    display = SimulatedDisplay(keypad)

    async def code() -> str:
        match = re.search(r"Code: (\d{6})", display.screen())
        assert match
        return match.group(1)

    daemon = Daemon(Config(host="127.0.0.1", port=0, state_dir=state, mdns=False,
                           rate_per_second=1e6, rate_burst=10**6,
                           # one confirmation on the terminal for the whole run (batch mode)
                           sign_batch_count=100, sign_batch_minutes=60,
                           mail=mail),
                    ui=display, wrap_transport=lambda _r, t: _CountingPinPad(t, keypad, display))
    await daemon.start()
    try:
        await cards_seen(daemon, CardKind.CPS, within=10)
        credentials = await pair("127.0.0.1", daemon.server.port, daemon.keystore.fingerprint,
                                 "bench", ["cps:sign", "mail:send"], code)
        content = base64.b64encode(smime.to_bytes(
            _small_message("claire.martin@cabinet.test"))).decode()
        sign, send = [], []
        apdus = 0
        async with await credentials.connect() as client:
            keypad.press("1234", "OK")
            assert (await client.call("cps.verify_pin"))["result"] == "ok"
            keypad.press("OK")  # the holder confirms the batch of signatures once
            # The signatures first: a mail.send between them would leave its delivery (the
            # outbox's SMTP, the audit's fsyncs) running in the background of the next one.
            for _ in range(n):
                before = _CountingPinPad.count
                t = time.perf_counter()
                await client.call("cps.sign", {"data": content})
                sign.append(time.perf_counter() - t)
                apdus = _CountingPinPad.count - before
            for _ in range(n):
                t = time.perf_counter()
                await client.call("mail.send", {"to": [NURSE_ADDRESS], "subject": "bench",
                                                "text": "Bonjour " * 64})
                send.append(time.perf_counter() - t)
    finally:
        await daemon.stop()
    return sign, send, apdus


class _CountingPinPad:
    """The simulated PIN pad transport, counting the APDUs edged sends through it."""

    count = 0

    def __new__(cls, inner: Any, keypad: Any, display: Any) -> Any:
        """A PinPadTransport whose transmit counts (a subclass made once, lazily)."""
        from bifente.simulators.pinpad import PinPadTransport

        class Counting(PinPadTransport):
            def transmit(self, command: bytes) -> bytes:
                _CountingPinPad.count += 1
                return super().transmit(command)

        return Counting(inner, keypad, display)


def signing_latency(quick: bool = False) -> list[Row]:
    """Signing with the CPS in pcscd: in process (CardSigner) vs through edged, side by side."""
    from bifente.simulators.mail import DirectoryClient
    from bifente.simulators.slots import CPS_SLOT
    from bifente.simulators.world import CardsOn, MailOptions, SimulatedWorld

    n, rounds = (5, 1) if quick else (20, 3)
    local_raw, local_sign, local_protect, remote_sign, remote_send = [], [], [], [], []
    ratios: list[float] = []
    with tempfile.TemporaryDirectory(prefix="bifente-bench-sign-") as tmp, \
            SimulatedWorld("gp", None, cards=CardsOn.PCSC, mail=MailOptions(Path(tmp) / "op"),
                           dmp=False) as world:
        assert world.slots is not None and world.mail is not None
        op = world.mail
        nurse = DirectoryClient(op.info.directory_url, op.info.ca_file).certificate(
            NURSE_ADDRESS)
        # Rounds alternate the two sides (one card: in process, then a daemon started for
        # the round), so that the shared machine's load falls on both alike; the ratio is the
        # median of the rounds' ratios.
        for r in range(rounds):
            raw, sign, protect, local_apdus = _in_process(world.slots.reader(CPS_SLOT), nurse, n)
            through, send, remote_apdus = asyncio.run(_through_daemon(
                world.edged_overrides()["mail"], Path(tmp) / f"state{r}", n))
            ratios.append(statistics.median(through) / statistics.median(raw))
            local_raw += raw
            local_sign += sign
            local_protect += protect
            remote_sign += through
            remote_send += send
    lr, ls = statistics.median(local_raw), statistics.median(local_sign)
    lp = statistics.median(local_protect)
    rs, rm = statistics.median(remote_sign), statistics.median(remote_send)
    ratio = statistics.median(ratios)
    per_apdu = rs / (lr * remote_apdus / max(local_apdus, 1))
    return [
        Row("card signature of a 1 KB entity, CpsSession in process (pcscd)", fmt_time(lr),
            f"split hash: PSO HASH + PSO CDS, {local_apdus} APDUs", "1.00 (baseline)"),
        goal("S", "cps.sign of the same bytes through edged / in process", fmt_time(rs),
             ratio, 1.5, at_least=False, unit="x",
             detail=f"{remote_apdus} APDUs through edged vs {local_apdus} in process; at "
                    f"{local_apdus} APDUs (same time per APDU) about x{per_apdu:.2f} overall; "
                    f"{rounds} alternating round(s) of {n}: "
                    + ", ".join(f"x{x:.2f}" for x in ratios)),
        Row("CAdES detached signature, CardSigner in process", fmt_time(ls),
            "card signature checked against the certificate + CMS", f"x{ls / lr:.2f}"),
        Row("sign + encrypt (protect) a small message, in process", fmt_time(lp),
            "card signature, RSA PKCS#1 v1.5 to 2, AES-GCM", "1.00 (baseline)"),
        Row("mail.send through edged, up to queueing", fmt_time(rm),
            "+ directory (HTTPS), outbox (SQLite FULL)", f"x{rm / lp:.2f}"),
    ]


def main() -> int:
    """Print this table alone (or run one worker side with --worker)."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--growth", action="store_true", help="1, 10 and 25 MiB side by side")
    parser.add_argument("--no-latency", action="store_true",
                        help="the 10 MB rows alone, without the signing latency through edged")
    parser.add_argument("--worker", nargs=2, metavar=("MODE", "DIR"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        _worker(args.worker[0], Path(args.worker[1]))
        return 0
    if args.growth:
        print_table("Secure mail growth: sign+encrypt and open, bifente vs openssl cms",
                    growth())
        return 0
    print_table("Secure mail: 10 MB attachment, bifente vs openssl cms",
                run(args.quick, latency=not args.no_latency))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
