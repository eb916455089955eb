"""S/MIME messages signed and encrypted with simulated CPS cards, opened with them."""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import os
import struct
import zlib
from email.message import EmailMessage

import pytest
from cryptography.hazmat.primitives.serialization import Encoding

from bifente.edged.services import cms, smime
from bifente.edged.services.cms import Reason
from bifente.edged.services.smime import Attachment
from bifente.simulators.pki import ca_certificate, card_keys

GP = "Claire MARTIN <claire.martin@cabinet.test>"
TEXT = "Bonjour,\nvoici le compte rendu de Mme Dupont (né·e le 01/02/1960).\nFrom the lab: OK.\n"
HTML = "<p>Bonjour,</p><p>voici le <b>compte rendu</b> — cordialement.</p>"


def png() -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(
            ">I", zlib.crc32(kind + data))
    header = struct.pack(">IIBBBBB", 2, 2, 8, 2, 0, 0, 0)
    pixels = zlib.compress(b"\x00\xff\x00\x00\x00\xff\x00" * 2)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + \
        chunk(b"IEND", b"")


ATTACHMENTS = (
    Attachment("compte-rendu.pdf", "application/pdf",
               b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<< /Type /Catalog >>\nendobj\n%%EOF\n"),
    Attachment("CDA R2 niveau 3 — Dupont.xml", "text/xml",
               '<?xml version="1.0" encoding="UTF-8"?>\r\n<ClinicalDocument xmlns="urn:hl7-org:'
               'v3">\n  <title>Compte rendu é</title>\n</ClinicalDocument>'.encode()),
    Attachment("radio.png", "image/png", png()),
    Attachment("random.bin", "application/octet-stream", os.urandom(4099)),
    Attachment("vide.txt", "text/plain", b""),
    Attachment("big.dat", "application/octet-stream", os.urandom(3 * 1024 * 1024)),
)


def message(**overrides) -> EmailMessage:
    args = {"sender": GP, "to": ["Paul Infirmier <paul.infirmier@cabinet.test>"],
            "cc": ["pharmacie@officine.test"], "subject": "Résultats — Mme Dupont",
            "text": TEXT, "html": HTML, "attachments": ATTACHMENTS}
    args.update(overrides)
    return smime.build_message(**args)


def parsed(raw: bytes) -> email.message.EmailMessage:
    return email.message_from_bytes(raw, policy=email.policy.default)


# -- building -----------------------------------------------------------------------------
def test_build_message_structure(no_defects) -> None:
    msg = message(date=dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC),
                  message_id="<abc@cabinet.test>")
    raw = smime.to_bytes(msg)
    assert raw.isascii()
    assert b"\r\n" in raw and b"\n" not in raw.replace(b"\r\n", b"")
    back = parsed(raw)
    no_defects(back)
    assert back.get_content_type() == "multipart/mixed"
    body, *files = back.iter_parts()
    assert body.get_content_type() == "multipart/alternative"
    assert [p.get_content_type() for p in body.iter_parts()] == ["text/plain", "text/html"]
    assert [p["Content-Transfer-Encoding"] for p in files] == ["base64"] * len(ATTACHMENTS)
    assert [p.get_filename() for p in files] == [a.filename for a in ATTACHMENTS]
    assert back["Subject"] == "Résultats — Mme Dupont"
    assert "=?utf-8?" in raw.decode()
    assert back["Message-ID"] == "<abc@cabinet.test>"
    assert back["Date"].datetime == dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
    assert back["MIME-Version"] == "1.0"
    assert raw.count(b"MIME-Version") == 1


@pytest.mark.parametrize(("text", "html", "kind"), [
    ("only text", None, "text/plain"), (None, "<p>only html</p>", "text/html"),
    (None, None, "text/plain"),
])
def test_build_message_single_bodies(text, html, kind, no_defects) -> None:
    msg = smime.build_message(GP, "x@labo.test", (), "s", text=text, html=html)
    assert msg.get_content_type() == kind
    no_defects(parsed(smime.to_bytes(msg)))


def test_build_message_rejects_bad_input() -> None:
    with pytest.raises(ValueError):
        smime.build_message(GP, ["x@labo.test"], (), "two\nlines", text="t")
    with pytest.raises(ValueError, match="To"):
        smime.build_message(GP, [], (), "s", text="t")
    with pytest.raises(ValueError, match="content type"):
        smime.build_message(GP, ["x@labo.test"], (), "s",
                            attachments=[Attachment("a", "pdf", b"x")])
    with pytest.raises(smime.AttachmentTooLarge) as exc:
        smime.build_message(GP, ["x@labo.test"], (), "s", attachments=ATTACHMENTS,
                            max_attachment=1024 * 1024)
    assert (exc.value.name, exc.value.size, exc.value.limit) == (
        "big.dat", 3 * 1024 * 1024, 1024 * 1024)
    assert "big.dat" in str(exc.value)


def test_an_attachment_from_a_buffer_builds_the_same_message() -> None:
    # Attachment.from_buffer keeps the base64 lines and empties the buffer: the message is
    # the same bytes as one built from the attachment's data.
    date = dt.datetime(2026, 12, 6, 20, 0, tzinfo=dt.UTC)
    common = {"sender": GP, "to": ["x@labo.test"], "subject": "s", "text": "t",
              "message_id": "<m@cabinet.test>", "date": date}
    for sent in ATTACHMENTS:
        buffer = bytearray(sent.data)
        made = Attachment.from_buffer(sent.filename, sent.content_type, buffer)
        assert buffer == b"" and made.size == len(sent.data) and made.data == b""
        plain = smime.build_message(**common, attachments=[sent])
        from_buffer = smime.build_message(**common, attachments=[made])
        for msg in (plain, from_buffer):  # the boundaries are random: the same for both
            msg.set_boundary("=_same")
        assert smime.to_bytes(from_buffer) == smime.to_bytes(plain), sent.filename
    with pytest.raises(smime.AttachmentTooLarge):
        smime.build_message(**common, max_attachment=10, attachments=[
            Attachment.from_buffer("a.bin", "application/octet-stream", bytearray(11))])


# -- round trips --------------------------------------------------------------------------
@pytest.mark.parametrize("mode", ["gcm", "cbc"])
def test_protect_and_open_every_attachment_byte_identical(card, trust, mode, no_defects) -> None:
    gp, nurse, pharmacist = card("gp"), card("nurse"), card("pharmacist")
    protected = smime.protect(message(), gp.signer, [nurse.encryption_certificate,
                                                     pharmacist.encryption_certificate], mode)
    raw = smime.to_bytes(protected)
    outer = parsed(raw)
    no_defects(outer)
    assert outer.get_content_type() == "application/pkcs7-mime"
    assert outer.get_param("smime-type") == smime.SMIME_TYPE[mode]
    assert outer.get_param("name") == "smime.p7m"
    assert outer["Subject"] == "Résultats — Mme Dupont"  # STAND-IN: kept clear by default
    for reader in (nurse, pharmacist, gp):  # gp: the sender can read what she sent (M1)
        opened = smime.open_message(raw, reader.decryptor, trust)
        assert opened.encrypted and opened.headers_protected
        assert opened.signer == gp.signer.certificate
        assert opened.signature.chain[-1] == ca_certificate("root")
        assert opened.sender == GP
        assert opened.to == ("Paul Infirmier <paul.infirmier@cabinet.test>",)
        assert opened.cc == ("pharmacie@officine.test",)
        assert opened.subject == "Résultats — Mme Dupont"
        assert opened.text == TEXT
        assert opened.html.strip() == HTML
        assert [(a.filename, a.content_type) for a in opened.attachments] == \
            [(a.filename, a.content_type) for a in ATTACHMENTS]
        for got, sent in zip(opened.attachments, ATTACHMENTS, strict=True):
            assert got.data == sent.data, sent.filename
        assert reader.decryptor.calls == [False]  # PKCS#1 v1.5 key transport


def test_every_layer_parses_without_defects(card, trust, no_defects) -> None:
    gp = card("gp")
    signed = smime.sign_message(message(), gp.signer)
    no_defects(parsed(smime.to_bytes(signed)))
    encrypted = smime.encrypt_message(message(), [gp.encryption_certificate], "cbc")
    no_defects(parsed(smime.to_bytes(encrypted)))
    inner = cms.decrypt(parsed(smime.to_bytes(encrypted)).get_payload(decode=True),
                        gp.decryptor)
    no_defects(parsed(inner))
    protected = smime.protect(message(attachments=()), gp.signer, [], "gcm")
    inner = cms.decrypt(parsed(smime.to_bytes(protected)).get_payload(decode=True),
                        gp.decryptor)
    no_defects(parsed(inner))
    assert parsed(inner).get_content_type() == "multipart/signed"


def test_signed_message_layout(card, trust) -> None:
    gp = card("gp")
    signed = smime.sign_message(message(attachments=ATTACHMENTS[:2]), gp.signer)
    back = parsed(smime.to_bytes(signed))
    assert back.get_content_type() == "multipart/signed"
    assert back.get_param("protocol") == "application/pkcs7-signature"
    assert back.get_param("micalg") == "sha-256"
    content, signature = back.iter_parts()
    assert content.get_param("hp") == "clear"
    assert content["Subject"] == "Résultats — Mme Dupont"  # header protection (RFC 9788)
    assert signature.get_content_type() == "application/pkcs7-signature"
    assert signature.get_filename() == "smime.p7s"
    opened = smime.open_message(smime.to_bytes(signed), None, trust, require_encrypted=False)
    assert not opened.encrypted and opened.signer == gp.signer.certificate
    assert [a.data for a in opened.attachments] == [a.data for a in ATTACHMENTS[:2]]


def test_signed_message_stored_with_bare_lf_still_verifies(card, trust) -> None:
    raw = smime.to_bytes(smime.sign_message(message(attachments=()), card("gp").signer))
    unix = raw.replace(b"\r\n", b"\n")
    opened = smime.open_message(unix, None, trust, require_encrypted=False)
    assert opened.text == TEXT


def test_subject_can_be_hidden_outside(card, trust) -> None:
    gp, nurse = card("gp"), card("nurse")
    protected = smime.protect(message(), gp.signer, [nurse.encryption_certificate],
                              subject="[...]")
    raw = smime.to_bytes(protected)
    assert parsed(raw)["Subject"] == "[...]"
    assert b"Dupont" not in raw
    assert smime.open_message(raw, nurse.decryptor, trust).subject == "Résultats — Mme Dupont"


def test_protect_needs_the_senders_encryption_certificate(card) -> None:
    gp = card("gp")
    keys = cms.SoftwareSigner(card_keys("gp").signature_key, gp.signer.certificate)
    with pytest.raises(ValueError, match="M1"):
        smime.protect(message(), keys, [card("nurse").encryption_certificate])
    # Given explicitly, the sender's certificate is used.
    protected = smime.protect(message(attachments=()), keys, [],
                              sender_certificate=gp.encryption_certificate)
    assert protected.get_content_type() == "application/pkcs7-mime"


def test_protect_checks_recipients_against_the_trust_store(card, make_crl) -> None:
    gp, nurse = card("gp"), card("nurse")
    store = cms.TrustStore([ca_certificate("root")], intermediates=[ca_certificate("personnes")],
                           crls=[make_crl([nurse.encryption_certificate])])
    with pytest.raises(cms.CertificateInvalid) as exc:
        smime.protect(message(), gp.signer, [nurse.encryption_certificate], trust=store)
    assert exc.value.reason is Reason.REVOKED
    with pytest.raises(cms.UnsuitableRecipient):
        smime.protect(message(), gp.signer, [nurse.signer.certificate])


# -- failures when opening ----------------------------------------------------------------
def test_message_for_someone_else(card, trust) -> None:
    raw = smime.to_bytes(smime.protect(message(attachments=()), card("gp").signer,
                                       [card("nurse").encryption_certificate]))
    with pytest.raises(cms.NotForThisRecipient):
        smime.open_message(raw, card("pharmacist").decryptor, trust)


def test_tampered_signed_message(card, trust) -> None:
    raw = smime.to_bytes(smime.sign_message(message(attachments=()), card("gp").signer))
    tampered = raw.replace(b"compte rendu", b"compte-rendu", 1)
    assert tampered != raw
    with pytest.raises(cms.SignatureInvalid) as exc:
        smime.open_message(tampered, None, trust, require_encrypted=False)
    assert exc.value.reason is Reason.DIGEST_MISMATCH


def test_tampered_encrypted_message(card, trust) -> None:
    gp = card("gp")
    outer = smime.protect(message(attachments=()), gp.signer, [], "gcm")
    der = bytearray(outer.get_payload(decode=True))
    der[-40] ^= 0x01
    outer.set_content(bytes(der), maintype="application", subtype="pkcs7-mime",
                      cte="base64", params={"smime-type": "authEnveloped-data"})
    with pytest.raises(cms.DecryptionFailed):
        smime.open_message(smime.to_bytes(outer), gp.decryptor, trust)


def test_expired_sender_is_refused(card, trust) -> None:
    expired = card("expired")
    msg = message(sender="Odile CHEVALIER <odile.chevalier@cabinet.test>", attachments=())
    raw = smime.to_bytes(smime.protect(msg, expired.signer, [card("nurse").encryption_certificate]))
    with pytest.raises(cms.SignatureInvalid) as exc:
        smime.open_message(raw, card("nurse").decryptor, trust)
    assert exc.value.reason is Reason.EXPIRED


def test_sender_must_match_the_signing_certificate(card, trust) -> None:
    msg = message(sender="Faux Docteur <faux@cabinet.test>", attachments=())
    raw = smime.to_bytes(smime.sign_message(msg, card("gp").signer))
    with pytest.raises(smime.SenderMismatch) as exc:
        smime.open_message(raw, None, trust, require_encrypted=False)
    assert exc.value.sender == "faux@cabinet.test"
    assert exc.value.certificate_addresses == ("claire.martin@cabinet.test",)
    opened = smime.open_message(raw, None, trust, require_encrypted=False, check_sender=False)
    assert opened.sender == "Faux Docteur <faux@cabinet.test>"


def test_required_layers(card, trust) -> None:
    gp = card("gp")
    signed_only = smime.to_bytes(smime.sign_message(message(attachments=()), gp.signer))
    with pytest.raises(smime.NotEncrypted):
        smime.open_message(signed_only, gp.decryptor, trust)
    encrypted_only = smime.to_bytes(smime.encrypt_message(message(attachments=()),
                                                          [gp.encryption_certificate]))
    with pytest.raises(smime.NotSigned):
        smime.open_message(encrypted_only, gp.decryptor, trust)
    opened = smime.open_message(encrypted_only, gp.decryptor, trust, require_signed=False)
    assert opened.signature is None and opened.text == TEXT and opened.headers_protected
    plain = smime.to_bytes(message(attachments=()))
    with pytest.raises(smime.NotEncrypted):
        smime.open_message(plain, gp.decryptor, trust)
    with pytest.raises(ValueError, match="decryptor is needed"):
        smime.open_message(encrypted_only, None, trust)


def test_size_limits_when_opening(card, trust) -> None:
    gp = card("gp")
    raw = smime.to_bytes(smime.protect(message(), gp.signer, []))
    with pytest.raises(smime.AttachmentTooLarge) as exc:
        smime.open_message(raw, gp.decryptor, trust, max_attachment=1024 * 1024)
    assert exc.value.name == "big.dat"
    exact = smime.open_message(raw, gp.decryptor, trust, max_attachment=3 * 1024 * 1024)
    assert len(exact.attachments[-1].data) == 3 * 1024 * 1024  # at the limit: accepted
    with pytest.raises(smime.MessageTooLarge):
        smime.open_message(raw, gp.decryptor, trust, max_message=1024 * 1024)


def test_malformed_structures(card, trust) -> None:
    gp = card("gp")
    signed = smime.sign_message(message(attachments=()), gp.signer)
    content, _signature = signed.get_payload()
    unsigned = smime.to_bytes(signed).replace(
        b'Content-Type: application/pkcs7-signature; name="smime.p7s"',
        b'Content-Type: application/octet-stream; name="smime.p7s"')
    with pytest.raises(smime.MalformedMessage, match="not a signature"):
        smime.open_message(unsigned, None, trust, require_encrypted=False)
    signed.set_param("protocol", "application/pgp-signature")
    with pytest.raises(smime.MalformedMessage, match="protocol"):
        smime.open_message(smime.to_bytes(signed), None, trust, require_encrypted=False)
    bogus = smime.build_message(GP, "x@labo.test", (), "s", text="t")
    bogus.set_content(b"\x30\x03\x02\x01\x00", maintype="application", subtype="pkcs7-mime",
                      cte="base64")
    with pytest.raises(smime.MalformedMessage):
        smime.open_message(smime.to_bytes(bogus), gp.decryptor, trust)
    assert content.get_content_type() == "multipart/alternative"


def test_signing_twice_or_encrypting_twice_is_refused(card) -> None:
    gp = card("gp")
    signed = smime.sign_message(message(attachments=()), gp.signer)
    with pytest.raises(ValueError, match="already"):
        smime.sign_message(signed, gp.signer)
    encrypted = smime.encrypt_message(signed, [gp.encryption_certificate])
    with pytest.raises(ValueError, match="already"):
        smime.encrypt_message(encrypted, [gp.encryption_certificate])


def test_card_certificate_bytes_round_trip(card) -> None:
    gp = card("gp")
    assert gp.signer.certificate.public_bytes(Encoding.DER)
    assert gp.signer.encryption_certificate == gp.encryption_certificate
