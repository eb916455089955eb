"""M7: what we send opens in OpenSSL, and what OpenSSL sends opens with the simulated card.

OpenSSL holds the test keys as files (simulators/pki/data/cps/<profile>/*.key.pem); our side
always uses the key on the simulated card (split-hash signature, PSO DECIPHER).
"""

from __future__ import annotations

import email
import email.policy
import os
import shutil
import subprocess
from email.message import EmailMessage
from pathlib import Path

import pytest

from bifente.edged.services import cms, smime
from bifente.edged.services.cms import Reason
from bifente.edged.services.smime import Attachment
from bifente.simulators.pki import DATA

pytestmark = [pytest.mark.interop,
              pytest.mark.skipif(shutil.which("openssl") is None, reason="needs openssl")]

ROOT = DATA / "ca" / "test-root.crt.pem"
PERSONNES = DATA / "ca" / "test-personnes.crt.pem"
GP = DATA / "cps" / "gp"
NURSE = DATA / "cps" / "nurse"
SENDER = "Claire MARTIN <claire.martin@cabinet.test>"
ATTACHMENTS = (
    Attachment("compte-rendu.pdf", "application/pdf", b"%PDF-1.7\n" + os.urandom(20_000)),
    Attachment("cda.xml", "text/xml", '<?xml version="1.0"?>\n<ClinicalDocument/>é\n'.encode()),
    Attachment("vide.bin", "application/octet-stream", b""),
)


def openssl(*args: str | Path, cwd: Path) -> subprocess.CompletedProcess[bytes]:
    """Run `openssl cms ...`; fail the test with OpenSSL's own message when it refuses."""
    result = subprocess.run(["openssl", "cms", *map(str, args)], cwd=cwd, capture_output=True,
                            timeout=60, check=False)
    assert result.returncode == 0, result.stderr.decode(errors="replace")
    return result


def message(**overrides) -> EmailMessage:
    args = {"sender": SENDER, "to": ["paul.infirmier@cabinet.test"], "cc": (),
            "subject": "Interop — OpenSSL", "text": "Bonjour é\n", "attachments": ATTACHMENTS}
    args.update(overrides)
    return smime.build_message(**args)


def entity() -> bytes:
    """A MIME entity (body and attachments, no envelope headers), as OpenSSL's -in."""
    msg = message()
    for name in ("From", "To", "Subject", "Date", "Message-ID", "MIME-Version"):
        del msg[name]
    return smime.to_bytes(msg)


def attachments_of(raw: bytes) -> list[bytes]:
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    return [p.get_payload(decode=True) for p in msg.iter_attachments()]


# -- ours, opened by OpenSSL --------------------------------------------------------------
@pytest.mark.parametrize("certfile", [True, False])
def test_openssl_verifies_our_signed_message(card, tmp_path: Path, certfile: bool) -> None:
    signed = smime.sign_message(message(), card("gp").signer)
    (tmp_path / "signed.eml").write_bytes(smime.to_bytes(signed))
    extra = ["-certfile", PERSONNES] if certfile else []  # the chain is in the message too
    result = openssl("-verify", "-in", "signed.eml", "-CAfile", ROOT, *extra, "-cades",
                     "-out", "content.eml", cwd=tmp_path)
    assert b"Verification successful" in result.stderr
    content = (tmp_path / "content.eml").read_bytes()
    assert attachments_of(content) == [a.data for a in ATTACHMENTS]


@pytest.mark.parametrize("detached", [True, False])
def test_openssl_verifies_our_der_signatures(card, tmp_path: Path, detached: bool) -> None:
    data = os.urandom(10_000) + b"\r\n\n\x00"
    (tmp_path / "data.bin").write_bytes(data)
    (tmp_path / "sig.der").write_bytes(cms.sign(data, card("gp").signer, detached=detached))
    content = ["-content", "data.bin"] if detached else []
    openssl("-verify", "-inform", "DER", "-in", "sig.der", *content, "-binary", "-CAfile",
            ROOT, "-cades", "-out", "out.bin", cwd=tmp_path)
    assert (tmp_path / "out.bin").read_bytes() == data


@pytest.mark.parametrize("mode", ["cbc", "gcm"])
def test_openssl_decrypts_and_verifies_our_messages(card, tmp_path: Path, mode: str) -> None:
    protected = smime.protect(message(), card("gp").signer,
                              [card("nurse").encryption_certificate], mode)
    (tmp_path / "msg.eml").write_bytes(smime.to_bytes(protected))
    openssl("-decrypt", "-in", "msg.eml", "-recip", NURSE / "aut.crt.pem", "-inkey",
            NURSE / "aut.key.pem", "-out", "signed.eml", cwd=tmp_path)
    result = openssl("-verify", "-in", "signed.eml", "-CAfile", ROOT, "-cades",
                     "-out", "content.eml", cwd=tmp_path)
    assert b"Verification successful" in result.stderr
    assert attachments_of((tmp_path / "content.eml").read_bytes()) == \
        [a.data for a in ATTACHMENTS]


@pytest.mark.parametrize("mode", ["cbc", "gcm"])
def test_openssl_decrypts_our_der_envelopes(card, tmp_path: Path, mode: str) -> None:
    data = os.urandom(70_001)
    (tmp_path / "env.der").write_bytes(cms.encrypt(
        data, [card("gp").encryption_certificate, card("nurse").encryption_certificate],
        mode=mode))
    openssl("-decrypt", "-inform", "DER", "-in", "env.der", "-binary", "-inkey",
            GP / "aut.key.pem", "-out", "out.bin", cwd=tmp_path)  # finds its RecipientInfo
    assert (tmp_path / "out.bin").read_bytes() == data


# -- OpenSSL's, opened by us with the card ------------------------------------------------
def sign_with_openssl(tmp_path: Path, *options: str) -> None:
    (tmp_path / "entity.eml").write_bytes(entity())
    openssl("-sign", "-in", "entity.eml", "-signer", GP / "sig.crt.pem", "-inkey",
            GP / "sig.key.pem", "-certfile", PERSONNES, *options, "-from", SENDER,
            "-to", "paul.infirmier@cabinet.test", "-subject", "Signed by OpenSSL",
            "-out", "signed.eml", cwd=tmp_path)


@pytest.mark.parametrize("opaque", [False, True])
def test_we_verify_openssl_signed_messages(card, trust, tmp_path: Path, opaque: bool) -> None:
    sign_with_openssl(tmp_path, "-cades", *(["-nodetach"] if opaque else []))
    raw = (tmp_path / "signed.eml").read_bytes()
    top = email.message_from_bytes(raw, policy=email.policy.default)
    assert top.get_content_type() == ("application/pkcs7-mime" if opaque
                                      else "multipart/signed")
    opened = smime.open_message(raw, None, trust, require_encrypted=False)
    assert opened.signer == card("gp").signer.certificate
    assert opened.subject == "Signed by OpenSSL"
    assert opened.text == "Bonjour é\n"
    assert [a.data for a in opened.attachments] == [a.data for a in ATTACHMENTS]


def test_openssl_signature_without_cades_attribute(trust, tmp_path: Path) -> None:
    sign_with_openssl(tmp_path)
    raw = (tmp_path / "signed.eml").read_bytes()
    with pytest.raises(cms.SignatureInvalid) as exc:
        smime.open_message(raw, None, trust, require_encrypted=False)
    assert exc.value.reason is Reason.SIGNING_CERTIFICATE_MISSING
    opened = smime.open_message(raw, None, trust, require_encrypted=False,
                                require_signing_certificate=False)
    assert [a.data for a in opened.attachments] == [a.data for a in ATTACHMENTS]


def test_we_verify_openssl_der_signature(card, trust, tmp_path: Path) -> None:
    data = os.urandom(5000)
    (tmp_path / "data.bin").write_bytes(data)
    openssl("-sign", "-binary", "-nodetach", "-cades", "-in", "data.bin", "-signer",
            GP / "sig.crt.pem", "-inkey", GP / "sig.key.pem", "-certfile", PERSONNES,
            "-outform", "DER",
            "-out", "sig.der", cwd=tmp_path)
    result = cms.verify((tmp_path / "sig.der").read_bytes(), trust=trust)
    assert result.content == data and result.signer == card("gp").signer.certificate


KEY_TRANSPORT = {
    "aes256-cbc, RSA PKCS#1 v1.5 (OpenSSL's default)": ["-aes256"],
    "aes-256-gcm, RSA PKCS#1 v1.5": ["-aes-256-gcm"],
}
OAEP = ["-keyopt", "rsa_padding_mode:oaep", "-keyopt", "rsa_oaep_md:sha256"]


@pytest.mark.parametrize("options", KEY_TRANSPORT, ids=list(KEY_TRANSPORT))
def test_we_open_openssl_encrypted_messages_with_the_card(card, trust, tmp_path: Path,
                                                          options: str) -> None:
    sign_with_openssl(tmp_path, "-cades")
    openssl("-encrypt", "-in", "signed.eml", "-recip", NURSE / "aut.crt.pem",
            *KEY_TRANSPORT[options], "-from", SENDER, "-to", "paul.infirmier@cabinet.test",
            "-subject", "Chiffré", "-out", "encrypted.eml", cwd=tmp_path)
    nurse = card("nurse")
    opened = smime.open_message((tmp_path / "encrypted.eml").read_bytes(), nurse.decryptor,
                                trust)
    assert nurse.decryptor.calls == [False]  # PSO DECIPHER on the card, PKCS#1 v1.5
    assert opened.encrypted and opened.signer == card("gp").signer.certificate
    assert [a.data for a in opened.attachments] == [a.data for a in ATTACHMENTS]


@pytest.mark.parametrize("cipher", ["-aes256", "-aes-256-gcm"])
def test_we_open_openssl_streamed_messages(card, trust, tmp_path: Path, cipher: str) -> None:
    # -stream writes BER: indefinite lengths, the content in OCTET STRING segments, which
    # open_message reads as a stream (edged/services/cms/ber.py).
    sign_with_openssl(tmp_path, "-cades")
    openssl("-encrypt", "-stream", "-in", "signed.eml", "-recip", NURSE / "aut.crt.pem", cipher,
            "-from", SENDER, "-to", "paul.infirmier@cabinet.test", "-out", "encrypted.eml",
            cwd=tmp_path)
    raw = (tmp_path / "encrypted.eml").read_bytes()
    envelope = email.message_from_bytes(raw, policy=email.policy.default).get_payload(decode=True)
    assert envelope[:2] == b"\x30\x80" and b"\xa0\x80\x04" in envelope  # BER, segmented
    nurse = card("nurse")
    opened = smime.open_message(raw, nurse.decryptor, trust)
    assert nurse.decryptor.calls == [False]
    assert opened.encrypted and opened.signer == card("gp").signer.certificate
    assert [a.data for a in opened.attachments] == [a.data for a in ATTACHMENTS]


@pytest.mark.parametrize("cipher", ["-aes256", "-aes-256-gcm"])
def test_oaep_to_a_card_key_is_refused_clearly(card, trust, tmp_path: Path,
                                               cipher: str) -> None:
    # A CPS3 deciphers PKCS#1 v1.5 only (docs/cards.md): no APDU is sent for OAEP.
    sign_with_openssl(tmp_path, "-cades")
    # -keyopt applies to the -recip before it.
    openssl("-encrypt", "-in", "signed.eml", "-recip", NURSE / "aut.crt.pem", *OAEP, cipher,
            "-out", "encrypted.eml", cwd=tmp_path)
    with pytest.raises(cms.UnsupportedAlgorithm, match=r"PKCS#1 v1\.5 only"):
        smime.open_message((tmp_path / "encrypted.eml").read_bytes(), card("nurse").decryptor,
                           trust)


def test_oaep_with_sha1_is_refused_clearly(card, trust, tmp_path: Path) -> None:
    (tmp_path / "entity.eml").write_bytes(entity())
    openssl("-encrypt", "-aes256", "-in", "entity.eml", "-recip", NURSE / "aut.crt.pem",
            "-keyopt", "rsa_padding_mode:oaep", "-out", "encrypted.eml", cwd=tmp_path)
    with pytest.raises(cms.UnsupportedAlgorithm, match="sha1"):
        smime.open_message((tmp_path / "encrypted.eml").read_bytes(), card("nurse").decryptor,
                           trust, require_signed=False)


# -- 10 MB, both ways (the size `make bench` measures) -------------------------------------
BIG = Attachment("scan.bin", "application/octet-stream", os.urandom(10 * 1024 * 1024))


@pytest.mark.parametrize("mode", ["gcm", "cbc"])
def test_openssl_opens_our_10_mb_message(card, tmp_path: Path, mode: str) -> None:
    raw = smime.protect_bytes(message(attachments=[BIG]), card("gp").signer,
                              [card("nurse").encryption_certificate], mode)
    (tmp_path / "msg.eml").write_bytes(raw)
    openssl("-decrypt", "-in", "msg.eml", "-recip", NURSE / "aut.crt.pem", "-inkey",
            NURSE / "aut.key.pem", "-out", "signed.eml", cwd=tmp_path)
    result = openssl("-verify", "-in", "signed.eml", "-CAfile", ROOT, "-cades",
                     "-out", "content.eml", cwd=tmp_path)
    assert b"Verification successful" in result.stderr
    assert attachments_of((tmp_path / "content.eml").read_bytes()) == [BIG.data]


@pytest.mark.parametrize("stream", [[], ["-stream"]], ids=["DER", "BER (-stream)"])
def test_we_open_a_10_mb_openssl_message(card, trust, tmp_path: Path, stream: list[str]) -> None:
    msg = message(attachments=[BIG])
    for name in ("From", "To", "Subject", "Date", "Message-ID", "MIME-Version"):
        del msg[name]
    (tmp_path / "entity.eml").write_bytes(smime.to_bytes(msg))
    openssl("-sign", "-cades", "-in", "entity.eml", "-signer", GP / "sig.crt.pem", "-inkey",
            GP / "sig.key.pem", "-certfile", PERSONNES, "-from", SENDER, "-to",
            "paul.infirmier@cabinet.test", "-subject", "10 MB", "-out", "signed.eml",
            cwd=tmp_path)
    openssl("-encrypt", *stream, "-aes-256-gcm", "-in", "signed.eml", "-recip",
            NURSE / "aut.crt.pem", "-from", SENDER, "-to", "paul.infirmier@cabinet.test",
            "-out", "encrypted.eml", cwd=tmp_path)
    opened = smime.open_message((tmp_path / "encrypted.eml").read_bytes(),
                                card("nurse").decryptor, trust)
    assert opened.signer == card("gp").signer.certificate
    assert [a.data for a in opened.attachments] == [BIG.data]
