"""Secure mail through edged: a real daemon, the CPS in pcscd, the reference operator on
127.0.0.1 (SMTP + STARTTLS + AUTH, POP3S, the HTTPS directory), no mocks."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import copy
import json
import poplib
import smtplib
import ssl
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest

from bifente.apdu.cps import CpsSession
from bifente.apdu.protocol import CardProtocol
from bifente.apdu.transport import InProcessTransport
from bifente.client import RemoteError
from bifente.edged.services import cms, smime
from bifente.edged.services.mail import service_of
from bifente.edged.services.smime import mime
from bifente.edged.state.audit import AuditLog
from bifente.simulators.cps3 import Cps3Card
from bifente.simulators.mail import TEST_PASSWORD, MailOperator
from bifente.simulators.pki import ca_certificate
from bifente.simulators.world import CardsOn, MailOptions, SimulatedWorld

pytestmark = [pytest.mark.asyncio, pytest.mark.pcsc]

GP = "claire.martin@cabinet.test"
NURSE = "julie.bernard@cabinet.test"
EMERGENCY = "sophie.leroy@chu.test"
NIR = "178027505601209"  # test NIR of the Vitale profile family
PDF = b"%PDF-1.7\n" + bytes(range(256)) * 40 + b"\n%%EOF\n"
CDA = (b'<?xml version="1.0" encoding="UTF-8"?>\n<ClinicalDocument xmlns="urn:hl7-org:v3">'
       b"<title>Compte rendu</title></ClinicalDocument>\n")
TRUST = cms.TrustStore([ca_certificate("root")],
                       intermediates=[ca_certificate("personnes"),
                                      ca_certificate("organisations")])


def operator(tmp: Path, **options: Any) -> SimulatedWorld:
    """The reference mail operator (its folder: tmp / "op") in a SimulatedWorld, to enter."""
    return SimulatedWorld(None, None, cards=CardsOn.NONE, dmp=False,
                          mail=MailOptions(tmp / "op", **options))


def mail_table(sim: SimulatedWorld, **extra: object) -> dict:
    """edged's [mail] table for the world's operator: short retries, and the test's settings
    (a copy: a test may change it)."""
    return {**copy.deepcopy(sim.edged_overrides()["mail"]), "retry_base_delay": 0.2,
            "retry_max_delay": 0.5, "timeout": 5, **extra}


class Card:
    """A CPS in process (PIN verified): the other end of the conversation."""

    def __init__(self, profile: str) -> None:
        self.session = CpsSession(CardProtocol(InProcessTransport(Cps3Card(profile))))
        self.session.verify_pin(lambda _request: bytearray(b"1234"))
        self.signer = cms.CardSigner(self.session, [ca_certificate("personnes")])
        self.decryptor = cms.CardDecryptor(self.session)


def mailbox(op: MailOperator, user: str) -> list[bytes]:
    domain = user.rsplit("@", 1)[1]
    context = ssl.create_default_context(cafile=op.info.ca_file)
    pop = poplib.POP3_SSL(op.host, op.info.domains[domain].pop3s, context=context, timeout=10)
    try:
        pop.user(user)
        pop.pass_(TEST_PASSWORD)
        count, _ = pop.stat()
        return [b"\r\n".join(pop.retr(i)[1]) + b"\r\n" for i in range(1, count + 1)]
    finally:
        pop.quit()


def submit(op: MailOperator, sender: str, rcpts: list[str], raw: bytes) -> None:
    domain = sender.rsplit("@", 1)[1]
    context = ssl.create_default_context(cafile=op.info.ca_file)
    with smtplib.SMTP(op.host, op.info.domains[domain].submission, timeout=10) as client:
        client.starttls(context=context)
        client.login(sender, TEST_PASSWORD)
        client.sendmail(sender, rcpts, raw)


async def until(predicate, timeout: float = 15.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not await asyncio.to_thread(predicate):
        assert asyncio.get_running_loop().time() < deadline, "condition not reached"
        await asyncio.sleep(0.05)


async def daemon_with_gp(edged, slots, table: dict, **kw):
    await asyncio.to_thread(slots.insert, 0, Cps3Card("gp"))
    bench = await edged(pcsc=True, mail=table, **kw)
    await until(lambda: bench.daemon.slots.find("cps") is not None)
    return bench


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


async def verify_pin(bench, client) -> None:
    bench.keypad.press("1234", "OK")
    assert (await client.call("cps.verify_pin"))["result"] == "ok"


async def test_send_list_open_and_refusals(edged, slots, pcscd, tmp_path: Path) -> None:
    with operator(tmp_path) as sim:
        op = sim.mail
        bench = await daemon_with_gp(edged, slots, mail_table(sim))
        async with await bench.client("secretariat", "mail:send", "mail:read",
                                      "cps:sign") as client:
            message = {"to": [NURSE], "cc": [EMERGENCY], "subject": "CR consultation",
                       "text": "Bonjour, voici le compte rendu.", "html": "<p>Bonjour</p>",
                       "attachments": [
                           {"filename": "cr.pdf", "content_type": "application/pdf",
                            "data": b64(PDF)},
                           {"filename": "cr.xml", "content_type": "text/xml", "data": b64(CDA)}]}
            # An unknown recipient is refused before anything is signed (no PIN needed yet).
            with pytest.raises(RemoteError) as exc:
                await client.call("mail.send", {**message, "to": ["nobody@cabinet.test"]})
            assert exc.value.reason == "unknown_recipient"
            with pytest.raises(RemoteError) as exc:
                await client.call("mail.send", message)
            assert exc.value.reason == "pin_required"
            await verify_pin(bench, client)

            sent = await client.call("mail.send", message)
            assert sent["state"] == "queued" and sent["message_id"].endswith("@cabinet.test>")

            async def state() -> dict:
                return await client.call("mail.status", {"message_id": sent["message_id"]})

            for _ in range(200):
                if (await state())["state"] == "sent":
                    break
                await asyncio.sleep(0.05)
            assert (await state())["state"] == "sent"

            # A patient mailbox (<INS>@patient.<domain>): its certificate comes from the
            # ORGANISATIONS CA; the audit keeps only the domain.
            patient = op.patient_mailbox(NIR, "cabinet.test")
            to_patient = await client.call("mail.send", {"to": [patient], "subject": "Résultats",
                                                         "text": "Vos résultats"})
            await until(lambda: service_of(bench.daemon.services.mail).outbox.get(
                to_patient["message_id"]).state == "sent")

            # The recipients open it with their own cards, attachments byte-identical.
            for profile, address in (("nurse", NURSE), ("emergency", EMERGENCY)):
                raws = await asyncio.to_thread(mailbox, op, address)
                assert len(raws) == 1
                opened = smime.open_message(raws[0], Card(profile).decryptor, TRUST)
                assert opened.subject == "CR consultation" and opened.sender == GP
                assert [(a.filename, a.data) for a in opened.attachments] == [
                    ("cr.pdf", PDF), ("cr.xml", CDA)]

            # Mail for the GP: a good one, a tampered one, one for someone else.
            nurse = Card("nurse")
            gp_cert = await asyncio.to_thread(_certificate, op, GP)
            nurse_cert = nurse.decryptor.certificate

            def letter(subject: str) -> EmailMessage:
                return smime.build_message(NURSE, GP, subject=subject, text="Réponse",
                                           attachments=[smime.Attachment(
                                               "scan.bin", "application/octet-stream", PDF)])

            good = smime.to_bytes(smime.protect(letter("Réponse"), nurse.signer, [gp_cert]))
            signed = smime.to_bytes(smime.sign_message(letter("Altérée"), nurse.signer))
            tampered = signed.replace(b"R=C3=A9ponse", b"R=C3=A9pons3", 1)
            assert tampered != signed
            tampered_msg = smime.encrypt_message(mime.parse(tampered), [gp_cert, nurse_cert])
            elsewhere = smime.to_bytes(smime.protect(letter("Pas pour vous"), nurse.signer,
                                                     [await asyncio.to_thread(
                                                         _certificate, op, EMERGENCY)]))
            forged = smime.build_message("thomas.petit@cabinet.test", GP, subject="Usurpé",
                                         text="Signé par une autre")
            forged_raw = smime.to_bytes(smime.protect(forged, nurse.signer, [gp_cert]))
            for raw in (good, smime.to_bytes(tampered_msg), elsewhere, forged_raw):
                await asyncio.to_thread(submit, op, NURSE, [GP], raw)

            listing = await client.call("mail.list")
            assert listing["address"] == GP
            assert [m["from"] for m in listing["messages"]] == [NURSE] * 3 + [
                "thomas.petit@cabinet.test"]
            uids = [m["uid"] for m in listing["messages"]]
            opened = await client.call("mail.open", {"uid": uids[0]})
            assert opened["subject"] == "Réponse" and opened["from"] == NURSE
            assert opened["signer"]["email"] == NURSE and opened["signer"]["valid"]
            assert base64.b64decode(opened["attachments"][0]["data"]) == PDF
            with pytest.raises(RemoteError) as exc:
                await client.call("mail.open", {"uid": uids[1]})
            assert exc.value.reason == "signature_invalid"
            assert exc.value.data["detail"] == "digest-mismatch"
            with pytest.raises(RemoteError) as exc:
                await client.call("mail.open", {"uid": uids[2]})
            assert exc.value.reason == "not_for_this_recipient"
            with pytest.raises(RemoteError) as exc:  # From is not the signer's address
                await client.call("mail.open", {"uid": uids[3]})
            assert exc.value.reason == "sender_mismatch"
            with pytest.raises(RemoteError) as exc:
                await client.call("mail.open", {"uid": "nope"})
            assert exc.value.reason == "no_such_message"
            assert len(await asyncio.to_thread(mailbox, op, GP)) == 4  # nothing deleted

    events = [r for r in bench.daemon.audit.records() if r.event.startswith("mail.")]
    text = repr([r.fields for r in events])
    assert "Bonjour" not in text and "CR consultation" not in text and NIR not in text
    fields = [(r.event, json.loads(r.fields)) for r in events]
    sends = [f for e, f in fields if e == "mail.send"]
    assert [(f["outcome"], f.get("error")) for f in sends] == [
        ("refused", "unknown_recipient"), ("refused", "SecurityStatusNotSatisfied"),
        ("queued", None), ("queued", None)]
    assert sends[3]["recipients"] == ["*@patient.cabinet.test"]
    assert {f["message_id"] for e, f in fields if e == "mail.delivered"} == {
        sent["message_id"], to_patient["message_id"]}
    assert [f["outcome"] for e, f in fields if e == "mail.open"] == [
        "ok", "refused", "refused", "refused", "refused"]


def _certificate(op: MailOperator, address: str):
    from bifente.simulators.mail import DirectoryClient

    return DirectoryClient(op.info.directory_url, op.info.ca_file).certificate(address)


async def test_attachment_too_large(edged, slots, pcscd, tmp_path: Path) -> None:
    with operator(tmp_path) as sim:
        bench = await daemon_with_gp(edged, slots, mail_table(sim, max_attachment_bytes=1000))
        async with await bench.client("secretariat", "mail:send") as client:
            with pytest.raises(RemoteError) as exc:
                await client.call("mail.send", {"to": [NURSE], "text": "x", "attachments": [
                    {"filename": "big.pdf", "data": b64(PDF)}]})
            assert exc.value.reason == "attachment_too_large"
            assert exc.value.data["limit"] == 1000
        assert service_of(bench.daemon.services.mail).outbox.counts() == {}


async def test_outage_restart_and_crash_deliver_once(edged, slots, pcscd,
                                                     tmp_path: Path) -> None:
    # The directory stays up (served apart); the submission operator goes down.
    with operator(tmp_path, directory_apart=True) as sim:
        sim.stop_mail()  # down: its operator.json stays, its ports come back on restart
        state = tmp_path / "edged-state"
        table = mail_table(sim)
        bench = await daemon_with_gp(edged, slots, table, state_dir=state)
        async with await bench.client("secretariat", "mail:send", "cps:sign") as client:
            await verify_pin(bench, client)
            first = await client.call("mail.send", {"to": [NURSE], "text": "un"})
            status = {}
            for _ in range(100):
                status = await client.call("mail.status", {"message_id": first["message_id"]})
                if status["attempts"] >= 2:
                    break
                await asyncio.sleep(0.05)
            assert status["state"] in ("queued", "sending") and status["attempts"] >= 2
            assert "unreachable" in (status["last_error"] or "")
            # A crash after the operator took the first message but before the outbox knew
            # it: the outcome is never written, so the row stays `sending` with its body.
            outbox = service_of(bench.daemon.services.mail).outbox
            outbox._done = lambda item: None  # type: ignore[method-assign]
            smtp = sim.start_mail()  # back
            try:
                await until(lambda: len(mailbox(smtp, NURSE)) == 1)
            finally:
                sim.stop_mail()
            assert outbox.get(first["message_id"]).state == "sending"
            second = await client.call("mail.send", {"to": [NURSE], "text": "deux"})
        await bench.daemon.stop()  # stopped with the second message queued (operator down)

        smtp = sim.start_mail()
        bench = await edged(pcsc=True, mail=table, state_dir=state)
        outbox = service_of(bench.daemon.services.mail).outbox
        await until(lambda: outbox.counts() == {"sent": 2})
        raws = await asyncio.to_thread(mailbox, smtp, NURSE)
        assert len(raws) == 2  # the first was sent again but delivered once (Message-ID)
        assert outbox.get(second["message_id"]).attempts >= 1


def _cli(*argv: str) -> tuple[int, str, str]:
    import contextlib
    import io

    from bifente.edged.cli.main import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(argv))
    return code, out.getvalue(), err.getvalue()


async def test_cli_send_list_open(edged, slots, pcscd, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("BIFENTE_CLIENT_DIR", str(tmp_path / "client"))
    with operator(tmp_path) as sim:
        op = sim.mail
        bench = await daemon_with_gp(edged, slots, mail_table(sim))
        (await bench.pair("cli", "mail:send", "mail:read", "cps:sign")).save()
        report = tmp_path / "compte rendu.pdf"
        report.write_bytes(PDF)
        bench.keypad.press("1234", "OK")  # typed when the CLI asks the terminal for the PIN
        code, out, err = await asyncio.to_thread(
            _cli, "mail", "send", "--to", GP, "--cc", NURSE, "--subject", "Note",
            "--text", "Pour le dossier", "--attach", str(report))
        assert code == 0, err
        assert "PIN" in err
        message_id = out.split()[0]
        await until(lambda: len(mailbox(op, GP)) == 1)
        code, out, err = await asyncio.to_thread(_cli, "mail", "status", message_id)
        assert code == 0 and "sent" in out
        code, out, err = await asyncio.to_thread(_cli, "mail", "list")
        assert code == 0 and "1 message(s)" in out and "Note" in out
        uid = out.splitlines()[1].split()[0]
        saved = tmp_path / "saved"
        code, out, err = await asyncio.to_thread(_cli, "mail", "open", uid,
                                                 "--save-attachments", str(saved))
        assert code == 0, err
        assert "Subject: Note" in out and "Pour le dossier" in out and "(valid)" in out
        assert (saved / "compte rendu.pdf").read_bytes() == PDF
        code, out, err = await asyncio.to_thread(_cli, "mail", "open", "nope")
        assert code != 0 and "no message" in err


async def test_operator_refusal_fails_the_message_with_its_text(edged, slots, pcscd,
                                                                tmp_path: Path) -> None:
    with operator(tmp_path, max_message_bytes=30_000) as sim:
        op = sim.mail
        bench = await daemon_with_gp(edged, slots, mail_table(sim))
        async with await bench.client("secretariat", "mail:send", "cps:sign") as client:
            await verify_pin(bench, client)
            sent = await client.call("mail.send", {"to": [NURSE], "text": "gros", "attachments": [
                {"filename": "scan.pdf", "content_type": "application/pdf",
                 "data": b64(PDF * 4)}]})
            outbox = service_of(bench.daemon.services.mail).outbox
            await until(lambda: outbox.get(sent["message_id"]).state == "failed")
            status = await client.call("mail.status", {"message_id": sent["message_id"]})
            assert status["attempts"] == 1  # a 5xx is not retried
            assert status["last_error"].startswith("operator refused: 552")
            assert "too big" in status["last_error"]
            assert await asyncio.to_thread(mailbox, op, NURSE) == []
            with pytest.raises(RemoteError) as exc:
                await client.call("mail.status", {"message_id": "<nope@cabinet.test>"})
            assert exc.value.reason == "no_such_message"
    failed = [json.loads(r.fields) for r in bench.daemon.audit.records()
              if r.event == "mail.failed"]
    assert [f["message_id"] for f in failed] == [sent["message_id"]]
    assert "552" in failed[0]["error"]


async def test_three_digit_pid_message_ids_send_deliver_and_stop_cleanly(
        edged, slots, pcscd, tmp_path: Path, monkeypatch) -> None:
    # D1: make_msgid writes <TIME.PID.RANDOM@domain>; with PID 837 the audit log took
    # TIME+PID for a NIR: mail.send failed after queuing, the outbox died, stop aborted.
    import email.utils
    import random
    import time

    def msgid_of_pid_837(idstring: str | None = None, domain: str | None = None) -> str:
        return f"<{int(time.time() * 100)}.837.{random.getrandbits(64)}@{domain}>"

    monkeypatch.setattr(email.utils, "make_msgid", msgid_of_pid_837)
    with operator(tmp_path) as sim:
        op = sim.mail
        bench = await daemon_with_gp(edged, slots, mail_table(sim))
        async with await bench.client("secretariat", "mail:send", "cps:sign") as client:
            await verify_pin(bench, client)
            sent = [await client.call("mail.send", {"to": [NURSE], "text": f"n{i}"})
                    for i in range(2)]
            assert all(".837." in s["message_id"] and s["state"] == "queued" for s in sent)
            outbox = service_of(bench.daemon.services.mail).outbox
            await until(lambda: outbox.counts() == {"sent": 2})
            assert len(await asyncio.to_thread(mailbox, op, NURSE)) == 2
        audit_path = bench.daemon.audit.path
        await bench.daemon.stop()
        with AuditLog(audit_path) as audit:
            events = [(r.event, r.data().get("message_id")) for r in audit.records()]
        for s in sent:
            assert ("mail.send", s["message_id"]) in events
            assert ("mail.delivered", s["message_id"]) in events
        assert events[-1][0] == "daemon.stop"  # the rest of Daemon.stop ran


async def test_a_retried_send_with_its_idempotency_key_is_delivered_once(
        edged, slots, pcscd, tmp_path: Path) -> None:
    with operator(tmp_path) as sim:
        op = sim.mail
        bench = await daemon_with_gp(edged, slots, mail_table(sim))
        async with await bench.client("secretariat", "mail:send", "cps:sign") as client:
            await verify_pin(bench, client)
            message = {"to": [NURSE], "text": "une fois", "idempotency_key": "rdv-42"}
            first = await client.call("mail.send", message)
            again = await client.call("mail.send", message)  # the client lost the answer
            assert again["message_id"] == first["message_id"]
            other = await client.call("mail.send", {**message, "idempotency_key": "rdv-43"})
            assert other["message_id"] != first["message_id"]
            outbox = service_of(bench.daemon.services.mail).outbox
            await until(lambda: outbox.counts() == {"sent": 2})
            assert len(await asyncio.to_thread(mailbox, op, NURSE)) == 2


async def test_a_hostile_from_does_not_break_mail_list(edged, slots, pcscd,
                                                       tmp_path: Path) -> None:
    # D2: `From: x:;y@z.test` made str(head["From"]) raise, and every mail.list failed.
    with operator(tmp_path) as sim:
        op = sim.mail
        bench = await daemon_with_gp(edged, slots, mail_table(sim))
        async with await bench.client("secretariat", "mail:send", "mail:read",
                                      "cps:sign") as client:
            await verify_pin(bench, client)
            nurse = Card("nurse")
            gp_cert = await asyncio.to_thread(_certificate, op, GP)
            letter = smime.build_message(NURSE, GP, subject="hostile", text="x")
            raw = smime.to_bytes(smime.protect(letter, nurse.signer, [gp_cert]))
            outer = b"From: " + NURSE.encode()
            assert outer in raw  # the outer header field, outside the signature
            raw = raw.replace(outer, b"From: x:;y@z.test", 1)
            await asyncio.to_thread(submit, op, NURSE, [GP], raw)
            listed = await client.call("mail.list")
            hostile = [m for m in listed["messages"] if m["subject"] == "hostile"]
            assert len(hostile) == 1 and hostile[0]["from"] == "x:;y@z.test"


async def test_mail_list_wakes_the_outbox_when_the_operator_is_back(edged, slots, pcscd,
                                                                    tmp_path: Path) -> None:
    # Minor item of the review: with a long backoff, mail waited it out even though the
    # operator was back. An answer from the operator (here mail.list) makes it due at once.
    with operator(tmp_path, directory_apart=True) as sim:
        sim.stop_mail()  # the submission operator is down
        table = mail_table(sim, retry_base_delay=3600, retry_max_delay=3600)
        bench = await daemon_with_gp(edged, slots, table)
        async with await bench.client("secretariat", "mail:send", "mail:read",
                                      "cps:sign") as client:
            await verify_pin(bench, client)
            sent = await client.call("mail.send", {"to": [NURSE], "text": "en attente"})
            outbox = service_of(bench.daemon.services.mail).outbox
            await until(lambda: outbox.get(sent["message_id"]).last_error is not None)
            item = outbox.get(sent["message_id"])
            assert (item.state, item.attempts) == ("queued", 1)  # next try in 30-60 min
            smtp = sim.start_mail()
            await client.call("mail.list")
            await until(lambda: outbox.get(sent["message_id"]).state == "sent")
            assert len(await asyncio.to_thread(mailbox, smtp, NURSE)) == 1


async def test_clients_of_one_professional_list_the_mailbox_at_once(edged, slots, pcscd,
                                                                    tmp_path: Path) -> None:
    # Found by the soak: POP3 locks a maildrop per session (RFC 1939 §8), so concurrent
    # mail.list calls for the same address got operator_refused "[IN-USE]".
    with operator(tmp_path) as sim:
        bench = await daemon_with_gp(edged, slots, mail_table(sim))
        clients = [await bench.client(f"desk{i}", "mail:read", "cps:sign") for i in range(6)]
        try:
            listed = await asyncio.gather(*(c.call("mail.list") for c in clients for _ in range(3)))
            assert all(r["address"] == GP for r in listed)
        finally:
            for c in clients:
                await c.close()


class _ClosingPop3:
    """A POP3S server with the operator's certificate that greets, reads the USER line, then
    closes the connection (`reset`: with a TCP reset): an operator going away mid-login.
    `greet=False`: it closes right after the TLS handshake, before the greeting."""

    def __init__(self, op: MailOperator, reset: bool, greet: bool = True) -> None:
        import socket
        import struct
        import threading

        chain, key = op._server_files("cabinet.test")
        self._ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self._ctx.load_cert_chain(chain, key)
        self._sock = socket.create_server(("127.0.0.1", 0))
        self.port = self._sock.getsockname()[1]
        self._linger = struct.pack("ii", 1, 0) if reset else None
        self._greet = greet
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        import socket

        while True:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            try:
                tls = self._ctx.wrap_socket(conn, server_side=True)
                if self._greet:
                    tls.sendall(b"+OK POP3 ready\r\n")
                    tls.recv(1024)  # USER ...
                if self._linger is not None:
                    tls.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, self._linger)
                tls.close()
            except OSError:
                conn.close()

    def close(self) -> None:
        import socket

        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)
        self._sock.close()
        self._thread.join(timeout=5)


@pytest.mark.parametrize(("reset", "greet"), [(False, True), (True, True), (False, False)],
                         ids=["closed", "reset", "closed_before_greeting"])
async def test_an_operator_leaving_mid_login_is_unavailable_not_a_refusal(
        edged, slots, pcscd, tmp_path: Path, reset: bool, greet: bool) -> None:
    # Found by the soak, while the operator was bounced: poplib's '-ERR EOF' (the connection
    # closed) was taken for the operator's own -ERR and answered operator_refused; a reset
    # mid-login escaped as an untyped OSError.
    with operator(tmp_path) as sim:
        op = sim.mail
        pop = _ClosingPop3(op, reset, greet)
        try:
            table = mail_table(sim)
            table["domains"]["cabinet.test"]["pop3_port"] = pop.port
            bench = await daemon_with_gp(edged, slots, table)
            async with await bench.client("secretariat", "mail:read") as client:
                with pytest.raises(RemoteError) as err:
                    await client.call("mail.list")
            assert err.value.reason == "operator_unavailable", err.value
        finally:
            pop.close()
