"""The reference operator trust space over real sockets: smtplib, poplib and urllib clients.

No mocks: every message goes over SMTP with STARTTLS, every read over POP3 on TLS, every
certificate over HTTPS, with certificates from the test IGC-Santé PKI.
"""

from __future__ import annotations

import base64
import email
import json
import logging
import os
import poplib
import signal
import smtplib
import socket
import ssl
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from email import policy
from email.message import EmailMessage
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import padding

from bifente.simulators.mail import (
    TEST_PASSWORD,
    DirectoryClient,
    MailOperator,
    OperatorInfo,
    UnknownRecipient,
)
from bifente.simulators.pki import ca_certificate, card_keys

# The module-scoped world's loop starts its executor threads (asyncio_N) on first use;
# they end with the module's fixture, not with the test that happened to start them.
pytestmark = pytest.mark.leaks("module-scoped fixture's executor threads")

GP = "claire.martin@cabinet.test"  # CPS profile gp
NURSE = "julie.bernard@cabinet.test"  # nurse
PHARMACIST = "thomas.petit@cabinet.test"  # pharmacist
EMERGENCY = "sophie.leroy@chu.test"  # emergency
OCCUPATIONAL = "marc.roux@chu.test"  # occupational
NIR = "178027505601209"  # test NIR of the Vitale profile family
LIMIT = 256 * 1024


@pytest.fixture(scope="module")
def op(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MailOperator]:
    with MailOperator(tmp_path_factory.mktemp("operator"), max_message_bytes=LIMIT) as running:
        yield running


def tls(op: MailOperator) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=op.info.ca_file)


def smime(sender: str, to: str, payload: bytes, subject: str = "CR consultation") -> EmailMessage:
    """A valid-looking enveloped-data message (the operator does not decrypt it)."""
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = sender, to, subject
    msg.set_content(payload, maintype="application", subtype="pkcs7-mime", cte="base64",
                    params={"smime-type": "enveloped-data", "name": "smime.p7m"},
                    disposition="attachment", filename="smime.p7m")
    return msg


def signed(sender: str, to: str) -> bytes:
    """A valid-looking multipart/signed message (RFC 8551 §3.5.3)."""
    return (f"From: {sender}\r\nTo: {to}\r\nSubject: signed\r\nMIME-Version: 1.0\r\n"
            'Content-Type: multipart/signed; protocol="application/pkcs7-signature"; '
            'micalg=sha-256; boundary="b1"\r\n\r\n--b1\r\nContent-Type: text/plain\r\n\r\n'
            "Bonjour\r\n--b1\r\nContent-Type: application/pkcs7-signature; name=smime.p7s\r\n"
            "Content-Transfer-Encoding: base64\r\n\r\nMIAGCSqGSIb3DQEHAqCAMIACAQEx\r\n"
            "--b1--\r\n").encode()


def submit(op: MailOperator, login: str, msg: EmailMessage | bytes, *, sender: str | None = None,
           to: list[str] | None = None, password: str = TEST_PASSWORD) -> dict:
    domain = login.rsplit("@", 1)[1]
    with smtplib.SMTP(op.host, op.info.domains[domain].submission, timeout=10) as client:
        client.starttls(context=tls(op))
        client.login(login, password)
        if isinstance(msg, bytes):
            return client.sendmail(sender or login, to or [], msg)
        return client.send_message(msg)


def mailbox(op: MailOperator, user: str, *, delete: bool = False) -> list[bytes]:
    """Every message of a mailbox read over POP3S (and deleted with DELE when asked)."""
    domain = op.space.operator_of(user.rsplit("@", 1)[1])
    assert domain is not None
    pop = poplib.POP3_SSL(op.host, op.info.domains[domain].pop3s, context=tls(op), timeout=10)
    try:
        pop.user(user)
        pop.pass_(TEST_PASSWORD)
        count, _ = pop.stat()
        out = [b"\r\n".join(pop.retr(i)[1]) + b"\r\n" for i in range(1, count + 1)]
        if delete:
            for i in range(1, count + 1):
                pop.dele(i)
        return out
    finally:
        pop.quit()


def payload_of(raw: bytes) -> bytes:
    return email.message_from_bytes(raw, policy=policy.default).get_payload(decode=True)


# -- submission: TLS first, then AUTH --------------------------------------------------------


def test_starttls_is_required_before_auth(op: MailOperator) -> None:
    with smtplib.SMTP(op.host, op.info.domains["cabinet.test"].submission, timeout=10) as c:
        c.ehlo()
        assert c.has_extn("starttls") and not c.has_extn("auth")  # no AUTH offered in clear
        plain = base64.b64encode(f"\0{GP}\0{TEST_PASSWORD}".encode()).decode()
        assert c.docmd("AUTH", f"PLAIN {plain}")[0] == 530  # refused before STARTTLS
        assert c.docmd("MAIL", f"FROM:<{GP}>")[0] == 530
        c.starttls(context=tls(op))
        c.ehlo()
        assert {"PLAIN", "LOGIN"} <= set(c.esmtp_features["auth"].upper().split())
        code, text = c.mail(GP)
        assert (code, text) == (530, b"5.7.0 Authentication required")  # AUTH is required
        c.rset()
        assert c.login(GP, TEST_PASSWORD)[0] == 235


def test_wrong_password_and_wrong_domain_are_refused(op: MailOperator) -> None:
    with pytest.raises(smtplib.SMTPAuthenticationError) as refused:
        submit(op, GP, smime(GP, NURSE, b"x"), password="not-the-password")
    assert refused.value.smtp_code == 535
    with (smtplib.SMTP(op.host, op.info.domains["chu.test"].submission, timeout=10) as c,
          pytest.raises(smtplib.SMTPAuthenticationError)):
        c.starttls(context=tls(op))
        c.login(GP, TEST_PASSWORD)  # a cabinet.test account on the chu.test operator
    with smtplib.SMTP(op.host, op.info.domains["cabinet.test"].submission, timeout=10) as c:
        c.starttls(context=tls(op))
        c.ehlo()
        guess = base64.b64encode(f"\0{GP}\0guess".encode()).decode()
        assert [c.docmd("AUTH", f"PLAIN {guess}")[0] for _ in range(6)] == [535] * 5 + [421]
    pop = poplib.POP3_SSL(op.host, op.info.domains["cabinet.test"].pop3s, context=tls(op))
    pop.user(GP)
    with pytest.raises(poplib.error_proto, match=r"\[AUTH\]"):
        pop.pass_("not-the-password")
    pop.quit()


def test_sender_must_be_the_authenticated_account(op: MailOperator) -> None:
    with pytest.raises(smtplib.SMTPSenderRefused) as refused:
        submit(op, GP, smime(NURSE, PHARMACIST, b"x"))
    assert refused.value.smtp_code == 553 and b"5.7.1" in refused.value.smtp_error
    # the structure's account (the M8 proxy) sends for anyone of its domain
    assert submit(op, "structure@cabinet.test", smime(NURSE, PHARMACIST, b"seal")) == {}
    assert payload_of(mailbox(op, PHARMACIST, delete=True)[-1]) == b"seal"


# -- relay between operators -----------------------------------------------------------------


def test_relay_to_another_operator_over_smtp_starttls(op: MailOperator) -> None:
    payload = os.urandom(6000) + b"\r\n.\r\n..\n"  # binary, with what SMTP must escape
    assert submit(op, GP, smime(GP, f"{EMERGENCY}, {NURSE}", payload)) == {}
    raw = mailbox(op, EMERGENCY, delete=True)[-1]
    assert payload_of(raw) == payload  # byte-identical body
    received = email.message_from_bytes(raw).get_all("Received")
    # the top trace line was written by chu.test's relay listener, reached from cabinet.test
    assert "from smtp.cabinet.test" in received[0] and "by smtp.chu.test" in received[0]
    assert "with ESMTPS;" in received[0]
    assert "by smtp.cabinet.test" in received[1] and "with ESMTPSA;" in received[1]
    assert payload_of(mailbox(op, NURSE, delete=True)[-1]) == payload  # local copy too
    assert mailbox(op, GP) == []  # nothing kept for the sender


def test_relay_listener_takes_only_trust_space_operators(op: MailOperator) -> None:
    relay = op.info.domains["chu.test"].relay
    with smtplib.SMTP(op.host, relay, timeout=10) as c:
        assert c.docmd("MAIL", f"FROM:<{GP}>")[0] == 530  # STARTTLS first
        c.starttls(context=tls(op))  # no client certificate
        c.ehlo()
        code, text = c.mail(GP)
        assert code == 530 and b"operator certificate" in text
    operator = ssl.create_default_context(cafile=op.info.ca_file)
    tls_dir = Path(op.info.ca_file).parent
    operator.load_cert_chain(tls_dir / "cabinet.test.crt.pem", tls_dir / "cabinet.test.key.pem")
    with smtplib.SMTP(op.host, relay, timeout=10) as c:
        c.starttls(context=operator)
        c.ehlo()
        code, text = c.mail("lea.girard@chu.test")  # cabinet.test relaying chu.test mail
        assert code == 550 and text == b"5.7.1 operator cabinet.test may not relay mail from " \
                                       b"chu.test"
        assert c.mail(GP)[0] == 250
        assert c.rcpt(NURSE) == (550, b"5.7.1 relay denied: this server delivers chu.test only")
        assert c.rcpt(EMERGENCY)[0] == 250


def test_two_independent_operators_relay_through_routes(tmp_path: Path) -> None:
    space = ["cabinet.test", "chu.test"]
    with MailOperator(tmp_path / "chu", domains=["chu.test"], trusted=space) as chu:
        route = {"chu.test": (chu.host, chu.info.domains["chu.test"].relay)}
        with MailOperator(tmp_path / "cabinet", domains=["cabinet.test"], trusted=space,
                          routes=route) as cabinet:
            assert submit(cabinet, GP, smime(GP, EMERGENCY, b"between operators")) == {}
            with pytest.raises(smtplib.SMTPDataError) as refused:  # the peer's own 5xx
                submit(cabinet, GP, smime(GP, "nobody@chu.test", b"x"))
            assert refused.value.smtp_code == 550
            assert refused.value.smtp_error == b"5.1.1 nobody@chu.test: no such mailbox"
        assert [payload_of(m) for m in mailbox(chu, EMERGENCY)] == [b"between operators"]
        with MailOperator(tmp_path / "cabinet", domains=["cabinet.test"], trusted=space,
                          routes={"chu.test": (chu.host, 1)}) as cut_off:
            with pytest.raises(smtplib.SMTPDataError) as later:
                submit(cut_off, GP, smime(GP, EMERGENCY, b"x"))
            assert later.value.smtp_code == 451
            assert later.value.smtp_error.startswith(b"4.4.1 relay to chu.test failed")


# -- refusals --------------------------------------------------------------------------------


def test_outside_the_trust_space_is_refused(op: MailOperator) -> None:
    with pytest.raises(smtplib.SMTPRecipientsRefused) as refused:
        submit(op, GP, smime(GP, "dr.who@gmail.com", b"x"))
    assert refused.value.recipients["dr.who@gmail.com"] == (
        550, b"5.7.1 gmail.com is outside the health trust space")
    with pytest.raises(smtplib.SMTPSenderRefused) as refused_sender:
        submit(op, GP, smime("dr.who@gmail.com", NURSE, b"x"))
    assert refused_sender.value.smtp_code == 550
    assert refused_sender.value.smtp_error == b"5.7.1 gmail.com is outside the health trust space"


def test_clear_mail_is_refused_signed_mail_is_carried(op: MailOperator) -> None:
    clear = EmailMessage()
    clear["From"], clear["To"], clear["Subject"] = GP, NURSE, "en clair"
    clear.set_content("Résultats en clair")
    with pytest.raises(smtplib.SMTPDataError) as refused:
        submit(op, GP, clear)
    assert refused.value.smtp_code == 554
    assert refused.value.smtp_error == (b"5.7.0 clear mail refused: the trust space carries only "
                                        b"signed and encrypted mail")
    assert submit(op, GP, signed(GP, NURSE), to=[NURSE]) == {}
    assert b"multipart/signed" in mailbox(op, NURSE, delete=True)[-1]


def test_clear_mail_is_carried_when_enforcement_is_off(tmp_path: Path) -> None:
    with MailOperator(tmp_path, domains=["cabinet.test"], require_smime=False) as plain:
        clear = EmailMessage()
        clear["From"], clear["To"], clear["Subject"] = GP, NURSE, "test"
        clear.set_content("plain test message")
        assert submit(plain, GP, clear) == {}
        assert b"plain test message" in mailbox(plain, NURSE)[0]
        assert OperatorInfo.load(tmp_path).require_smime is False


def test_unknown_recipients_are_refused(op: MailOperator) -> None:
    for unknown in ("nobody@cabinet.test", "nobody@chu.test", f"{NIR}@patient.labo.test"):
        with pytest.raises(smtplib.SMTPRecipientsRefused) as refused:
            submit(op, GP, smime(GP, unknown, b"x"))
        code, text = refused.value.recipients[unknown]
        assert code == 550 and text.startswith(b"5.1.1 ") and text.endswith(b"no such mailbox")
        assert NIR.encode() not in text  # a patient address is masked in the reply
    assert b"178************@patient.labo.test" in text


def test_oversized_messages_are_refused_with_552(op: MailOperator) -> None:
    big = smime(GP, NURSE, os.urandom(LIMIT))
    with pytest.raises(smtplib.SMTPSenderRefused) as announced:  # SIZE= in MAIL (RFC 1870)
        submit(op, GP, big)
    expected = f"5.3.4 message too big for the operator (limit {LIMIT} bytes)".encode()
    assert (announced.value.smtp_code, announced.value.smtp_error) == (552, expected)
    with smtplib.SMTP(op.host, op.info.domains["cabinet.test"].submission, timeout=10) as c:
        c.starttls(context=tls(op))
        c.login(GP, TEST_PASSWORD)
        assert int(c.esmtp_features["size"]) == LIMIT
        c.mail(GP)  # no SIZE: the limit is met while reading DATA
        c.rcpt(NURSE)
        assert c.data(big.as_bytes(policy=policy.SMTP)) == (552, expected)
    assert MailOperator(Path("unused")).max_message_bytes == 25 * 1024 * 1024  # the default


# -- patient mailboxes -----------------------------------------------------------------------


def test_patient_mailbox_creation_and_delivery(op: MailOperator,
                                               caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    address = op.patient_mailbox("1 78 02 75 056 012 09", "cabinet.test")
    assert address == f"{NIR}@patient.cabinet.test"
    assert op.patient_mailbox(NIR, "patient.cabinet.test") == address  # made once
    with pytest.raises(ValueError) as bad:
        op.patient_mailbox("178027505601208", "cabinet.test")  # wrong key
    assert "17802750560120" not in str(bad.value)
    with pytest.raises(ValueError):
        op.patient_mailbox(NIR, "gmail.com")

    assert submit(op, GP, smime(GP, address, b"to the patient")) == {}
    assert submit(op, OCCUPATIONAL, smime(OCCUPATIONAL, address, b"relayed")) == {}
    assert list((op.maildir(address) / "new").iterdir())  # Maildir under data_dir
    assert [payload_of(m) for m in mailbox(op, address)] == [b"to the patient", b"relayed"]

    cert = DirectoryClient(op.info.directory_url, op.info.ca_file).certificate(address)
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.RFC822Name) == [address]
    assert cert.issuer == ca_certificate("organisations").subject
    assert NIR not in cert.subject.rfc4514_string()
    key_file = op.patient_key(address)
    assert key_file.stat().st_mode & 0o777 == 0o600
    key = serialization.load_pem_private_key(key_file.read_bytes(), password=None)
    assert key.public_key() == cert.public_key()
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "178************@patient.cabinet.test" in logged
    assert NIR not in logged  # not in our logs, not in aiosmtpd's


# -- the directory ---------------------------------------------------------------------------


def get(op: MailOperator, query: str, method: str = "GET") -> tuple[int, dict]:
    request = urllib.request.Request(f"{op.info.directory_url}/certificate{query}", method=method)
    try:
        with urllib.request.urlopen(request, context=tls(op), timeout=10) as response:
            return response.status, {"pem": response.read().decode()}
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_directory_returns_encryption_certificates(op: MailOperator) -> None:
    directory = DirectoryClient(op.info.directory_url, op.info.ca_file)
    cert = directory.certificate("Claire.Martin@Cabinet.test")
    assert cert == card_keys("gp").authentication_cert  # the CPS authentication certificate
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.RFC822Name) == [GP]
    assert directory.certificate(EMERGENCY) == card_keys("emergency").authentication_cert
    status, body = get(op, f"?address={GP}")
    assert status == 200 and body["pem"].startswith("-----BEGIN CERTIFICATE-----")
    structure = directory.certificate("structure@labo.test")
    assert structure.issuer == ca_certificate("organisations").subject


def test_directory_unknown_and_malformed(op: MailOperator) -> None:
    directory = DirectoryClient(op.info.directory_url, op.info.ca_file)
    for unknown in ("nobody@cabinet.test", "someone@gmail.com", f"{NIR}@patient.chu.test"):
        with pytest.raises(UnknownRecipient) as missing:
            directory.certificate(unknown)
        assert missing.value.address == unknown
    status, body = get(op, f"?address={NIR}@patient.chu.test")
    assert status == 404 and body["error"] == "unknown-recipient"
    assert "178************@patient.chu.test" in body["reason"] and NIR not in body["reason"]
    for query in ("", "?address=", "?address=not-an-address", f"?address={GP}&address={NURSE}",
                  f"?address={GP}&x=1", "?address=a@b@c"):
        status, body = get(op, query)
        assert status == 400 and body["error"] == "bad-request" and body["reason"], query
    with pytest.raises(ValueError):
        directory.certificate("not-an-address")
    assert get(op, f"?address={GP}", method="POST")[0] == 405


# -- persistence and TLS ---------------------------------------------------------------------


def test_maildir_survives_an_operator_restart(tmp_path: Path) -> None:
    with MailOperator(tmp_path, domains=["cabinet.test", "chu.test"]) as first:
        patient = first.patient_mailbox(NIR, "chu.test")
        submit(first, GP, smime(GP, NURSE, b"kept"))
        submit(first, GP, smime(GP, patient, b"kept for the patient"))
        ports = first.info.domains
        patient_cert = DirectoryClient(first.info.directory_url,
                                       first.info.ca_file).certificate(patient)
    stored = list((tmp_path / "cabinet.test" / "julie.bernard" / "new").iterdir())
    assert len(stored) == 1 and b"kept" not in stored[0].read_bytes()  # base64 on disk
    with MailOperator(tmp_path, domains=["cabinet.test", "chu.test"]) as second:
        assert second.info.domains == ports  # the same ports again (from operator.json)
        assert [payload_of(m) for m in mailbox(second, NURSE)] == [b"kept"]
        assert [payload_of(m) for m in mailbox(second, patient)] == [b"kept for the patient"]
        assert DirectoryClient(second.info.directory_url,
                               second.info.ca_file).certificate(patient) == patient_cert


def peer_chain_ok(der: bytes, name: str) -> None:
    leaf = x509.load_der_x509_certificate(der)
    issuer = ca_certificate("organisations")
    assert leaf.issuer == issuer.subject and issuer.issuer == ca_certificate("root").subject
    issuer.public_key().verify(leaf.signature, leaf.tbs_certificate_bytes, padding.PKCS1v15(),
                               leaf.signature_hash_algorithm)
    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert name in san.get_values_for_type(x509.DNSName)
    assert "localhost" in san.get_values_for_type(x509.DNSName)


def test_tls_certificates_chain_to_the_test_root(op: MailOperator) -> None:
    ports = op.info.domains["chu.test"]
    with smtplib.SMTP(op.host, ports.submission, timeout=10) as c:
        c.starttls(context=tls(op))  # verifies the chain and 127.0.0.1 against the test root
        peer_chain_ok(c.sock.getpeercert(binary_form=True), "smtp.chu.test")
    with socket.create_connection((op.host, ports.pop3s), timeout=10) as raw, \
            tls(op).wrap_socket(raw, server_hostname="pop.chu.test") as pop:
        peer_chain_ok(pop.getpeercert(binary_form=True), "pop.chu.test")
    with socket.create_connection((op.host, ports.pop3s), timeout=10) as raw, \
            pytest.raises(ssl.SSLCertVerificationError):
        ssl.create_default_context().wrap_socket(raw, server_hostname="localhost")  # system CAs
    tls_dir = Path(op.info.ca_file).parent
    for key in tls_dir.glob("*.key.pem"):
        assert key.stat().st_mode & 0o777 == 0o600, key


def test_pop3_keeps_messages_until_dele_and_quit(op: MailOperator) -> None:
    for n in (1, 2):
        submit(op, GP, smime(GP, "lea.girard@chu.test", f"m{n}".encode()))
    ports = op.info.domains["chu.test"]
    pop = poplib.POP3_SSL(op.host, ports.pop3s, context=tls(op), timeout=10)
    assert b"UIDL" in b" ".join(k.encode() for k in pop.capa())
    pop.user("lea.girard@chu.test")
    pop.pass_(TEST_PASSWORD)
    other = poplib.POP3_SSL(op.host, ports.pop3s, context=tls(op), timeout=10)
    other.user("lea.girard@chu.test")
    with pytest.raises(poplib.error_proto, match=r"\[IN-USE\]"):
        other.pass_(TEST_PASSWORD)  # RFC 1939: one session per maildrop
    other.quit()
    count, size = pop.stat()
    uids = pop.uidl()[1]
    assert count == 2 and size == sum(int(line.split()[1]) for line in pop.list()[1])
    pop.retr(1)
    pop.dele(1)
    assert pop.stat()[0] == 1
    pop.rset()
    pop.dele(2)
    pop.quit()
    pop = poplib.POP3_SSL(op.host, ports.pop3s, context=tls(op), timeout=10)
    pop.user("lea.girard@chu.test")
    pop.pass_(TEST_PASSWORD)
    assert pop.uidl()[1] == [b"1 " + uids[0].split()[1]]  # 1 kept after RETR, 2 deleted
    assert payload_of(b"\r\n".join(pop.retr(1)[1])) == b"m1"
    pop.dele(1)
    pop.quit()


# -- the command -----------------------------------------------------------------------------


def test_bifente_sim_mail_runs_until_sigterm(tmp_path: Path) -> None:
    MailOperator(tmp_path, domains=["cabinet.test"]).patient_mailbox(NIR, "cabinet.test")
    process = subprocess.Popen([sys.executable, "-m", "bifente.edged.cli.main",
                                "sim", "mail", "--data",
                                str(tmp_path), "--domain", "cabinet.test"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines = []
    try:
        assert process.stdout is not None
        for line in process.stdout:
            lines.append(line)
            if line.startswith("ready"):
                break
        info = OperatorInfo.load(tmp_path)
        with smtplib.SMTP(info.host, info.domains["cabinet.test"].submission, timeout=10) as c:
            assert c.ehlo()[0] == 250
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=20)
    finally:
        if process.poll() is None:
            process.kill()
    text = "".join(lines) + out
    assert process.returncode == 0, err
    assert f"CA file (test root): {tmp_path}/tls/ca.pem" in text
    assert f"submission smtp://127.0.0.1:{info.domains['cabinet.test'].submission}" in text
    assert "178************@patient.cabinet.test" in text and NIR not in text + err
    assert "mail operator stopped" in out
