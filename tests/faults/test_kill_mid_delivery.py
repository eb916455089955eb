"""SIGKILL edged in the middle of mail deliveries, restart: every message once at the operator.

Real processes: edged (`python -m bifente.edged`), the reference operator (SMTP + STARTTLS + AUTH,
POP3S, directory) and real signed and encrypted messages queued in the outbox. The figures
(messages, kills, in `sending` at the kill, lost, duplicated) go to docs/reliability.md.
"""

from __future__ import annotations

import email
import email.policy
import os
import poplib
import re
import signal
import sqlite3
import ssl
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from bifente.edged.services import cms, smime
from bifente.edged.services.outbox import Outbox
from bifente.simulators.mail import TEST_PASSWORD, MailOperator
from bifente.simulators.pki import ca_certificate, card_keys
from bifente.simulators.world import CardsOn, MailOptions, SimulatedWorld

ROOT = Path(__file__).resolve().parents[2]
GP = "claire.martin@cabinet.test"
NURSE = "julie.bernard@cabinet.test"
MESSAGES = 12


def sealed(n: int) -> list[tuple[str, bytes]]:
    """n messages from the GP to the nurse, signed with the GP's key, encrypted to both."""
    gp, nurse = card_keys("gp"), card_keys("nurse")
    signer = cms.SoftwareSigner(gp.signature_key, gp.signature_cert,
                                [ca_certificate("personnes")],
                                encryption_certificate=gp.authentication_cert)
    out = []
    for i in range(n):
        mid = f"<kill-{i}-{time.time_ns()}@cabinet.test>"
        msg = smime.build_message(GP, NURSE, subject=f"n{i}", text=f"message {i}",
                                  message_id=mid)
        out.append((mid, smime.to_bytes(smime.protect(msg, signer,
                                                      [nurse.authentication_cert]))))
    return out


def mailbox_ids(op: MailOperator) -> list[str]:
    """The Message-ID of every copy in the nurse's mailbox (POP3S, nothing deleted)."""
    context = ssl.create_default_context(cafile=op.info.ca_file)
    pop = poplib.POP3_SSL(op.host, op.info.domains["cabinet.test"].pop3s, context=context,
                          timeout=10)
    try:
        pop.user(NURSE)
        pop.pass_(TEST_PASSWORD)
        count, _ = pop.stat()
        ids = []
        for i in range(1, count + 1):
            head = b"\r\n".join(pop.top(i, 0)[1])
            ids.append(str(email.message_from_bytes(head, policy=email.policy.default)
                           ["Message-ID"]))
        return ids
    finally:
        pop.quit()


def operator(tmp: Path) -> SimulatedWorld:
    """The reference operator (its folder: tmp / "op") in a SimulatedWorld, to enter."""
    return SimulatedWorld(None, None, cards=CardsOn.NONE, dmp=False,
                          mail=MailOptions(tmp / "op"))


def start(tmp: Path, table: dict[str, Any]) -> subprocess.Popen[str]:
    """`python -m bifente.edged` with this [mail] table (a SimulatedWorld's edged_overrides())."""
    config = tmp / "edged.toml"
    domains = ", ".join(f'"{d}" = {{submission_port = {p["submission_port"]}, '
                        f'pop3_port = {p["pop3_port"]}}}'
                        for d, p in table["domains"].items())
    config.write_text(f'[server]\nhost = "127.0.0.1"\nport = 0\n[state]\n'
                      f'state_dir = "{tmp}/state"\n[cards]\npcsc = false\n[mail]\n'
                      f'host = "{table["host"]}"\ndirectory_url = "{table["directory_url"]}"\n'
                      f'ca_file = "{table["ca_file"]}"\n'
                      f'password_file = "{table["password_file"]}"\n'
                      f'domains = {{{domains}}}\n'
                      f'intermediates_file = "{table["intermediates_file"]}"\n'
                      "retry_base_delay = 0.2\nretry_max_delay = 1.0\ntimeout = 5\n")
    process = subprocess.Popen([sys.executable, "-m", "bifente.edged", "--config", str(config),
                                "--no-mdns"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, env=dict(os.environ, PYTHONPATH=str(ROOT)))
    line = process.stdout.readline()  # type: ignore[union-attr]
    assert re.search(r"fingerprint sha256:", line), process.stderr.read()  # type: ignore
    return process


def wait_for(predicate, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.02)


def states(tmp: Path) -> Counter[str]:
    with sqlite3.connect(tmp / "state" / "outbox.db", timeout=10) as db:
        return Counter(dict(db.execute("SELECT state, COUNT(*) FROM outbox GROUP BY state")))


@pytest.mark.parametrize("kill_after", [1, 5, 9])
def test_sigkill_mid_delivery_then_restart_delivers_each_message_once(
        tmp_path: Path, kill_after: int) -> None:
    (tmp_path / "state").mkdir()
    queued = sealed(MESSAGES)
    outbox = Outbox(tmp_path / "state" / "outbox.db")
    for mid, body in queued:
        assert outbox.enqueue(mid, GP, (NURSE,), body)
    outbox.close()
    with operator(tmp_path) as sim:
        op, table = sim.mail, sim.edged_overrides()["mail"]
        edged = start(tmp_path, table)
        try:
            wait_for(lambda: len(mailbox_ids(op)) >= kill_after)
            edged.send_signal(signal.SIGKILL)
            edged.wait(timeout=10)
        finally:
            if edged.poll() is None:
                edged.kill()
        at_kill = states(tmp_path)
        edged = start(tmp_path, table)
        try:
            wait_for(lambda: states(tmp_path) == Counter({"sent": MESSAGES}))
            ids = mailbox_ids(op)
        finally:
            edged.send_signal(signal.SIGTERM)
            assert edged.wait(timeout=20) == 0
    copies = Counter(ids)
    lost = [mid for mid, _ in queued if copies[mid] == 0]
    duplicated = [mid for mid, n in copies.items() if n > 1]
    print(f"kill_after={kill_after} at_kill={dict(at_kill)} delivered={len(copies)} "
          f"lost={len(lost)} duplicated={len(duplicated)}")
    assert not lost and not duplicated
    assert set(copies) == {mid for mid, _ in queued}


def _throwaway_ca() -> bytes:
    import datetime as dt

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "not the operator's CA")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    return cert.public_bytes(serialization.Encoding.PEM)


def test_tls_failing_keeps_mail_queued_then_delivers_once(tmp_path: Path) -> None:
    # The operator's certificate is not from the pinned CA (a wrong ca_file, a MITM): every
    # try fails in TLS, nothing is sent in clear, nothing is given up; with the right CA,
    # each message goes once.
    (tmp_path / "state").mkdir()
    queued = sealed(3)
    outbox = Outbox(tmp_path / "state" / "outbox.db")
    for mid, body in queued:
        outbox.enqueue(mid, GP, (NURSE,), body)
    outbox.close()
    wrong_ca = tmp_path / "other-ca.pem"  # a CA that never signed the operator's certificate
    wrong_ca.write_bytes(_throwaway_ca())
    with operator(tmp_path) as sim:
        op, table = sim.mail, sim.edged_overrides()["mail"]
        # The same operator described with the wrong CA to pin.
        edged = start(tmp_path, {**table, "ca_file": str(wrong_ca)})
        try:
            def tried_twice() -> bool:
                with sqlite3.connect(tmp_path / "state" / "outbox.db", timeout=10) as db:
                    return db.execute("SELECT MIN(attempts) FROM outbox").fetchone()[0] >= 2
            wait_for(tried_twice)
            assert states(tmp_path) == Counter({"queued": 3}) or "sending" in states(tmp_path)
            with sqlite3.connect(tmp_path / "state" / "outbox.db") as db:
                errors = {e for (e,) in db.execute("SELECT last_error FROM outbox")}
            assert all("certificate" in (e or "").lower() for e in errors), errors
            assert mailbox_ids(op) == []
        finally:
            edged.send_signal(signal.SIGTERM)
            assert edged.wait(timeout=20) == 0
        edged = start(tmp_path, table)
        try:
            wait_for(lambda: states(tmp_path) == Counter({"sent": 3}))
            copies = Counter(mailbox_ids(op))
        finally:
            edged.send_signal(signal.SIGTERM)
            assert edged.wait(timeout=20) == 0
    assert copies == Counter({mid: 1 for mid, _ in queued})
