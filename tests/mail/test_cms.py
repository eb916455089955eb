"""CMS signatures (CAdES-BES) and enveloping with simulated CPS cards in process."""

from __future__ import annotations

import datetime as dt
import hashlib

import pytest
from asn1crypto import cms as asn1_cms
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import ExtendedKeyUsageOID

from bifente.edged.services import cms
from bifente.edged.services.cms import Reason
from bifente.simulators.pki import DATA, ca_certificate, card_keys, load_key

UTC = dt.UTC
CONTENT = "Compte rendu de consultation — données de santé\n".encode() * 20


def personnes_key() -> rsa.RSAPrivateKey:
    return load_key(DATA / "ca" / "test-personnes.key.pem")


def issue(subject_cn: str, *, key_usage: x509.KeyUsage, eku: list | None = None,
          serial: int | None = None, ca: bool = False,
          issuer: tuple[rsa.RSAPrivateKey, x509.Certificate] | None = None,
          public_key: rsa.RSAPublicKey | None = None) -> tuple[rsa.RSAPrivateKey, x509.Certificate]:
    """An end-entity (or CA) certificate from the test PERSONNES CA, or from `issuer`."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    issuer_key, issuer_cert = issuer or (personnes_key(), ca_certificate("personnes"))
    now = dt.datetime.now(UTC)
    builder = (x509.CertificateBuilder()
               .subject_name(x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME,
                                                           subject_cn)]))
               .issuer_name(issuer_cert.subject)
               .public_key(public_key or key.public_key())
               .serial_number(serial or x509.random_serial_number())
               .not_valid_before(now - dt.timedelta(days=1))
               .not_valid_after(now + dt.timedelta(days=365))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
               .add_extension(key_usage, critical=True))
    if eku is not None:
        builder = builder.add_extension(x509.ExtendedKeyUsage(eku), critical=False)
    return key, builder.sign(issuer_key, hashes.SHA256())


def usage(**flags: bool) -> x509.KeyUsage:
    names = ("digital_signature", "content_commitment", "key_encipherment", "data_encipherment",
             "key_agreement", "key_cert_sign", "crl_sign", "encipher_only", "decipher_only")
    return x509.KeyUsage(**{n: flags.get(n, False) for n in names})


def replace_signer_certificate(info, der: bytes) -> None:
    """Put `der` where the signer's certificate is in the SignedData's SET OF certificates."""
    certs = info["content"]["certificates"]
    serial = info["content"]["signer_infos"][0]["sid"].chosen["serial_number"].native
    index = next(i for i, c in enumerate(certs) if c.chosen.serial_number == serial)
    certs[index] = asn1_cms.CertificateChoices({"certificate": asn1_cms.Certificate.load(der)})


def corrupted(cert_der: bytes) -> bytes:
    """The certificate with a byte of the CA's signature changed (its key still verifies)."""
    data = bytearray(cert_der)
    data[-10] ^= 0xFF
    return bytes(data)


def reencode(der: bytes, edit) -> bytes:
    """Parse a ContentInfo, let `edit` change it, and dump it again (forced DER)."""
    info = asn1_cms.ContentInfo.load(der)
    edit(info)
    return info.dump(force=True)


# -- signatures ---------------------------------------------------------------------------
def test_cades_bes_attributes_present_and_correct(card) -> None:
    gp = card("gp")
    when = dt.datetime(2026, 3, 14, 9, 26, 53, tzinfo=UTC)
    der = cms.sign(CONTENT, gp.signer, detached=False, signing_time=when)
    info = asn1_cms.ContentInfo.load(der)
    assert info["content_type"].native == "signed_data"
    sd = info["content"]
    assert sd["version"].native == "v1"
    assert [a["algorithm"].native for a in sd["digest_algorithms"]] == ["sha256"]
    certs = {c.chosen.dump() for c in sd["certificates"]}  # a SET OF: DER sorts it
    assert certs == {gp.signer.certificate.public_bytes(Encoding.DER),
                     ca_certificate("personnes").public_bytes(Encoding.DER)}
    (si,) = sd["signer_infos"]
    assert si["digest_algorithm"]["algorithm"].native == "sha256"
    assert si["signature_algorithm"]["algorithm"].native == "sha256_rsa"
    assert si["sid"].chosen["serial_number"].native == gp.signer.certificate.serial_number
    attrs = {a["type"].native: a["values"] for a in si["signed_attrs"]}
    assert set(attrs) == {"content_type", "message_digest", "signing_time",
                          "signing_certificate_v2"}
    assert attrs["content_type"][0].native == "data"
    assert attrs["message_digest"][0].native == hashlib.sha256(CONTENT).digest()
    assert attrs["signing_time"][0].name == "utc_time"
    assert attrs["signing_time"][0].native == when
    (ess,) = attrs["signing_certificate_v2"][0]["certs"]
    cert_der = gp.signer.certificate.public_bytes(Encoding.DER)
    assert ess["cert_hash"].native == hashlib.sha256(cert_der).digest()
    assert ess["hash_algorithm"]["algorithm"].native == "sha256"
    assert b"\x06\x09\x60\x86\x48\x01\x65\x03\x04\x02\x01" not in ess.dump()  # DEFAULT omitted
    issuer_serial = ess["issuer_serial"]
    assert issuer_serial["serial_number"].native == gp.signer.certificate.serial_number
    assert issuer_serial["issuer"][0].chosen == \
        asn1_x509.Name.load(gp.signer.certificate.issuer.public_bytes())
    assert sd["encap_content_info"]["content"].native == CONTENT


def test_signature_is_made_by_the_card_split_hash(card) -> None:
    gp = card("gp")
    before = gp.transport.count
    cms.sign(CONTENT, gp.signer, detached=True)
    assert gp.transport.count - before >= 3  # MSE SET, PSO HASH, PSO CDS (and SELECT)


@pytest.mark.parametrize("detached", [False, True])
def test_signature_verifies(card, trust, detached: bool) -> None:
    gp = card("gp")
    der = cms.sign(CONTENT, gp.signer, detached=detached)
    result = cms.verify(der, trust=trust, detached_content=CONTENT if detached else None)
    assert result.content == CONTENT
    assert result.signer == gp.signer.certificate
    assert result.chain == (gp.signer.certificate, ca_certificate("personnes"),
                            ca_certificate("root"))
    assert result.digest_algorithm == "sha256"
    assert result.content_type == "data"
    assert abs(result.signing_time - dt.datetime.now(UTC)) < dt.timedelta(minutes=1)
    assert "content" not in repr(result).split("content_type")[0]


def test_intermediate_from_the_trust_store_when_the_message_lacks_it(card) -> None:
    gp = card("gp")
    bare = cms.SoftwareSigner(card_keys("gp").signature_key, gp.signer.certificate)
    der = cms.sign(CONTENT, bare, detached=False)
    with pytest.raises(cms.SignatureInvalid) as exc:
        cms.verify(der, trust=cms.TrustStore([ca_certificate("root")]))
    assert exc.value.reason is Reason.UNTRUSTED_CHAIN
    store = cms.TrustStore([ca_certificate("root")], intermediates=[ca_certificate("personnes")])
    assert cms.verify(der, trust=store).content == CONTENT


def test_detached_signature_needs_its_content(card, trust) -> None:
    der = cms.sign(CONTENT, card("gp").signer, detached=True)
    with pytest.raises(cms.SignatureInvalid) as exc:
        cms.verify(der, trust=trust)
    assert exc.value.reason is Reason.MALFORMED
    embedded = cms.sign(CONTENT, card("gp").signer, detached=False)
    with pytest.raises(cms.SignatureInvalid, match="both"):
        cms.verify(embedded, trust=trust, detached_content=CONTENT)


def test_tampered_content_is_a_digest_mismatch(card, trust) -> None:
    gp = card("gp")
    detached = cms.sign(CONTENT, gp.signer, detached=True)
    with pytest.raises(cms.SignatureInvalid) as exc:
        cms.verify(detached, trust=trust, detached_content=CONTENT.replace(b"sant", b"SANT"))
    assert exc.value.reason is Reason.DIGEST_MISMATCH

    def change(info):
        info["content"]["encap_content_info"]["content"] = CONTENT + b"!"

    tampered = reencode(cms.sign(CONTENT, gp.signer, detached=False), change)
    with pytest.raises(cms.SignatureInvalid) as exc:
        cms.verify(tampered, trust=trust)
    assert exc.value.reason is Reason.DIGEST_MISMATCH


def test_tampered_signature_or_signed_attribute_is_a_bad_signature(card, trust) -> None:
    der = cms.sign(CONTENT, card("gp").signer, detached=False)

    def flip(info):
        si = info["content"]["signer_infos"][0]
        sig = bytearray(si["signature"].native)
        sig[100] ^= 0x01
        si["signature"] = bytes(sig)

    with pytest.raises(cms.SignatureInvalid) as exc:
        cms.verify(reencode(der, flip), trust=trust)
    assert exc.value.reason is Reason.BAD_SIGNATURE

    def backdate(info):
        attrs = info["content"]["signer_infos"][0]["signed_attrs"]
        for attr in attrs:
            if attr["type"].native == "signing_time":
                attr["values"] = [asn1_cms.Time({"utc_time": dt.datetime(2025, 6, 1,
                                                                          tzinfo=UTC)})]

    with pytest.raises(cms.SignatureInvalid) as exc:
        cms.verify(reencode(der, backdate), trust=trust)
    assert exc.value.reason is Reason.BAD_SIGNATURE


def test_substituted_certificate_is_a_signing_certificate_mismatch(card, trust) -> None:
    gp = card("gp")
    real = gp.signer.certificate
    # Same issuer, serial and key, another subject: only signing-certificate-v2 tells.
    _key, twin = issue("810001000101/Someone ELSE", key_usage=usage(content_commitment=True),
                       eku=[ExtendedKeyUsageOID.EMAIL_PROTECTION], serial=real.serial_number,
                       public_key=real.public_key())
    der = cms.sign(CONTENT, gp.signer, detached=False)

    def swap(info):
        replace_signer_certificate(info, twin.public_bytes(Encoding.DER))

    with pytest.raises(cms.SignatureInvalid) as exc:
        cms.verify(reencode(der, swap), trust=trust)
    assert exc.value.reason is Reason.SIGNING_CERTIFICATE_MISMATCH

    def corrupt(info):
        replace_signer_certificate(info, corrupted(real.public_bytes(Encoding.DER)))

    with pytest.raises(cms.SignatureInvalid) as exc:
        cms.verify(reencode(der, corrupt), trust=trust)
    assert exc.value.reason is Reason.SIGNING_CERTIFICATE_MISMATCH


def test_missing_signing_certificate_v2(card, trust) -> None:
    gp = card("gp")
    der = cms.sign(CONTENT, gp.signer, detached=False)
    key = card_keys("gp").signature_key

    def strip(info):
        si = info["content"]["signer_infos"][0]
        kept = [a for a in si["signed_attrs"] if a["type"].native != "signing_certificate_v2"]
        attrs = asn1_cms.CMSAttributes(kept)
        si["signed_attrs"] = attrs
        si["signature"] = key.sign(attrs.dump(force=True), padding.PKCS1v15(), hashes.SHA256())

    plain = reencode(der, strip)
    with pytest.raises(cms.SignatureInvalid) as exc:
        cms.verify(plain, trust=trust)
    assert exc.value.reason is Reason.SIGNING_CERTIFICATE_MISSING
    assert cms.verify(plain, trust=trust, require_signing_certificate=False).content == CONTENT

    def corrupt(info):
        replace_signer_certificate(info, corrupted(gp.signer.certificate.public_bytes(
            Encoding.DER)))

    # Without the attribute, a corrupted certificate is still caught by the chain check.
    with pytest.raises(cms.SignatureInvalid) as exc:
        cms.verify(reencode(plain, corrupt), trust=trust, require_signing_certificate=False)
    assert exc.value.reason is Reason.UNTRUSTED_CHAIN


def test_untrusted_root(card) -> None:
    der = cms.sign(CONTENT, card("gp").signer, detached=False)
    other = cms.TrustStore([ca_certificate("organisations")])
    with pytest.raises(cms.SignatureInvalid) as exc:
        cms.verify(der, trust=other)
    assert exc.value.reason is Reason.UNTRUSTED_CHAIN
    assert "no path" in exc.value.detail


def test_expired_card_certificate_is_refused(card, trust) -> None:
    expired = card("expired")
    der = cms.sign(CONTENT, expired.signer, detached=False)
    with pytest.raises(cms.SignatureInvalid) as exc:
        cms.verify(der, trust=trust)
    assert exc.value.reason is Reason.EXPIRED
    assert "expired on 2022-01-01" in exc.value.detail


def test_signing_time_outside_the_certificate_validity(card, trust) -> None:
    # gp's certificate starts on 2025-01-01: a signature claiming 2024 is refused even now.
    der = cms.sign(CONTENT, card("gp").signer, detached=False,
                   signing_time=dt.datetime(2024, 6, 1, tzinfo=UTC))
    with pytest.raises(cms.SignatureInvalid) as exc:
        cms.verify(der, trust=trust)
    assert exc.value.reason is Reason.NOT_YET_VALID
    assert "at signing time" in exc.value.detail


def test_not_yet_valid(card, trust) -> None:
    der = cms.sign(CONTENT, card("gp").signer, detached=False)
    with pytest.raises(cms.SignatureInvalid) as exc:
        cms.verify(der, trust=trust, at=dt.datetime(2024, 6, 1, tzinfo=UTC))
    assert exc.value.reason is Reason.NOT_YET_VALID


def test_crl_revocation(card, make_crl) -> None:
    gp = card("gp")
    der = cms.sign(CONTENT, gp.signer, detached=False)
    root = [ca_certificate("root")]
    others = make_crl([card_keys("nurse").signature_cert])
    assert cms.verify(der, trust=cms.TrustStore(root, crls=[others])).content == CONTENT
    revoked = make_crl([gp.signer.certificate])
    with pytest.raises(cms.SignatureInvalid) as exc:
        cms.verify(der, trust=cms.TrustStore(root, crls=[revoked]))
    assert exc.value.reason is Reason.REVOKED
    # A CRL signed by the wrong key, or out of date, proves nothing: fail closed.
    forged = make_crl([], signing_key="organisations")
    stale = make_crl([], next_update=dt.datetime.now(UTC) - dt.timedelta(hours=1))
    for crl in (forged, stale):
        with pytest.raises(cms.SignatureInvalid) as exc:
            cms.verify(der, trust=cms.TrustStore(root, crls=[crl]))
        assert exc.value.reason is Reason.REVOCATION_UNKNOWN
    with pytest.raises(cms.SignatureInvalid) as exc:
        cms.verify(der, trust=cms.TrustStore(root, require_crl=True))
    assert exc.value.reason is Reason.REVOCATION_UNKNOWN


@pytest.mark.parametrize(("ku", "eku"), [
    (usage(key_encipherment=True), [ExtendedKeyUsageOID.EMAIL_PROTECTION]),
    (usage(digital_signature=True), [ExtendedKeyUsageOID.CLIENT_AUTH]),
])
def test_wrong_key_usage(trust, ku, eku) -> None:
    key, cert = issue("810009999999/Wrong USAGE", key_usage=ku, eku=eku)
    signer = cms.SoftwareSigner(key, cert, [ca_certificate("personnes")])
    der = cms.sign(CONTENT, signer, detached=False)
    with pytest.raises(cms.SignatureInvalid) as exc:
        cms.verify(der, trust=trust)
    assert exc.value.reason is Reason.KEY_USAGE


def test_end_entity_cannot_act_as_a_ca(trust) -> None:
    ee_key, ee = issue("not a CA", key_usage=usage(digital_signature=True, key_cert_sign=True))
    key, cert = issue("signed by an end entity", key_usage=usage(digital_signature=True),
                      issuer=(ee_key, ee))
    der = cms.sign(CONTENT, cms.SoftwareSigner(key, cert, [ee, ca_certificate("personnes")]),
                   detached=False)
    with pytest.raises(cms.SignatureInvalid) as exc:
        cms.verify(der, trust=trust)
    assert exc.value.reason is Reason.UNTRUSTED_CHAIN
    assert "not a CA" in exc.value.detail


def test_signer_with_a_mismatched_key_is_caught_when_signing(card) -> None:
    wrong = cms.SoftwareSigner(card_keys("nurse").signature_key, card("gp").signer.certificate)
    with pytest.raises(cms.SigningFailed):
        cms.sign(CONTENT, wrong, detached=True)


@pytest.mark.parametrize("garbage", [b"", b"\x30\x03\x02\x01\x00", b"not DER at all" * 5])
def test_garbage_is_malformed(trust, garbage: bytes) -> None:
    with pytest.raises(cms.SignatureInvalid) as exc:
        cms.verify(garbage, trust=trust)
    assert exc.value.reason is Reason.MALFORMED
    with pytest.raises(cms.MalformedCms):
        cms.decrypt(garbage, cms.SoftwareDecryptor(card_keys("gp").authentication_key,
                                                   card_keys("gp").authentication_cert))


def test_wrong_structure_type(card, trust) -> None:
    enveloped = cms.encrypt(CONTENT, [card("gp").encryption_certificate])
    with pytest.raises(cms.SignatureInvalid, match="signed_data"):
        cms.verify(enveloped, trust=trust)
    signed = cms.sign(CONTENT, card("gp").signer, detached=False)
    with pytest.raises(cms.MalformedCms, match="enveloped_data"):
        cms.decrypt(signed, card("gp").decryptor)


def test_content_caps(card, trust) -> None:
    gp = card("gp")
    with pytest.raises(cms.ContentTooLarge) as exc:
        cms.sign(CONTENT, gp.signer, detached=True, max_content=100)
    assert (exc.value.size, exc.value.limit) == (len(CONTENT), 100)
    der = cms.sign(CONTENT, gp.signer, detached=False)
    with pytest.raises(cms.ContentTooLarge):
        cms.verify(der, trust=trust, max_content=100)
    with pytest.raises(cms.ContentTooLarge):
        cms.encrypt(CONTENT, [gp.encryption_certificate], max_content=100)
    enveloped = cms.encrypt(CONTENT, [gp.encryption_certificate])
    with pytest.raises(cms.ContentTooLarge):
        cms.decrypt(enveloped, gp.decryptor, max_content=100)


# -- enveloping ---------------------------------------------------------------------------
@pytest.mark.parametrize("mode", ["gcm", "cbc"])
def test_several_recipients_each_open_with_their_own_card(card, mode: str) -> None:
    team = [card(p) for p in ("gp", "nurse", "pharmacist")]
    der = cms.encrypt(CONTENT, [c.encryption_certificate for c in team], mode=mode)
    for member in team:
        assert cms.decrypt(der, member.decryptor) == CONTENT
        assert member.decryptor.calls == [False]  # PKCS#1 v1.5, the card's only decipherment
    outsider = card("emergency")
    with pytest.raises(cms.NotForThisRecipient) as exc:
        cms.decrypt(der, outsider.decryptor)
    assert exc.value.recipient_count == 3
    text = str(exc.value)
    for cert in [c.encryption_certificate for c in team] + [outsider.encryption_certificate]:
        for attribute in cert.subject:
            assert str(attribute.value) not in text


def test_envelope_structures(card) -> None:
    gp = card("gp")
    gcm = asn1_cms.ContentInfo.load(cms.encrypt(CONTENT, [gp.encryption_certificate]))
    assert gcm["content_type"].native == "authenticated_enveloped_data"
    auth = gcm["content"]
    assert auth["version"].native == "v0"
    (ri,) = auth["recipient_infos"]
    assert ri.name == "ktri" and ri.chosen["version"].native == "v0"
    assert ri.chosen["rid"].name == "issuer_and_serial_number"
    kea = ri.chosen["key_encryption_algorithm"]
    # rsaEncryption with NULL parameters (RFC 3370 §4.2.1): the only one a CPS card opens.
    assert kea.dump() == bytes.fromhex("300d06092a864886f70d0101010500")
    eci = auth["auth_encrypted_content_info"]
    assert eci["content_encryption_algorithm"]["algorithm"].native == "aes256_gcm"
    gcm_params = cms.GcmParameters.load(eci["content_encryption_algorithm"]["parameters"].dump())
    assert len(gcm_params["aes_nonce"].native) == 12
    assert gcm_params["aes_icvlen"].native == 16
    assert len(auth["mac"].native) == 16
    assert len(eci["encrypted_content"].native) == len(CONTENT)

    cbc = asn1_cms.ContentInfo.load(cms.encrypt(CONTENT, [gp.encryption_certificate],
                                                mode="cbc"))
    assert cbc["content_type"].native == "enveloped_data"
    eci = cbc["content"]["encrypted_content_info"]
    assert eci["content_encryption_algorithm"]["algorithm"].native == "aes256_cbc"
    assert len(eci["content_encryption_algorithm"]["parameters"].native) == 16
    assert len(eci["encrypted_content"].native) == (len(CONTENT) // 16 + 1) * 16


def test_duplicate_recipients_get_one_key(card) -> None:
    cert = card("gp").encryption_certificate
    info = asn1_cms.ContentInfo.load(cms.encrypt(CONTENT, [cert, cert]))
    assert len(info["content"]["recipient_infos"]) == 1


def test_signature_certificate_cannot_receive(card) -> None:
    with pytest.raises(cms.UnsuitableRecipient, match="key encipherment"):
        cms.encrypt(CONTENT, [card("gp").signer.certificate])
    with pytest.raises(ValueError, match="mode"):
        cms.encrypt(CONTENT, [card("gp").encryption_certificate], mode="ecb")  # type: ignore[arg-type]


def test_gcm_tampering_fails_authentication(card) -> None:
    gp = card("gp")
    der = cms.encrypt(CONTENT, [gp.encryption_certificate], mode="gcm")

    def flip_content(info):
        eci = info["content"]["auth_encrypted_content_info"]
        data = bytearray(eci["encrypted_content"].native)
        data[5] ^= 0x01
        eci["encrypted_content"] = bytes(data)

    def flip_tag(info):
        tag = bytearray(info["content"]["mac"].native)
        tag[0] ^= 0x80
        info["content"]["mac"] = bytes(tag)

    for edit in (flip_content, flip_tag):
        with pytest.raises(cms.DecryptionFailed, match="authentication"):
            cms.decrypt(reencode(der, edit), gp.decryptor)


@pytest.mark.parametrize("mode", ["gcm", "cbc"])
def test_wrong_key_fails_to_unwrap_on_the_card(card, mode: str) -> None:
    gp, nurse = card("gp"), card("nurse")
    der = cms.encrypt(CONTENT, [gp.encryption_certificate, nurse.encryption_certificate],
                      mode=mode)
    key = "auth_encrypted_content_info" if mode == "gcm" else "encrypted_content_info"

    def misaddress(info):
        ris = info["content"]["recipient_infos"]
        # gp's RecipientInfo now carries the key wrapped for the nurse.
        ris[0].chosen["encrypted_key"] = ris[1].chosen["encrypted_key"].native
        assert info["content"][key]  # structure unchanged otherwise

    with pytest.raises(cms.DecryptionFailed):
        cms.decrypt(reencode(der, misaddress), gp.decryptor)


def test_pkcs1_v15_key_transport_is_opened_by_the_card(card) -> None:
    gp = card("gp")
    der = cms.encrypt(CONTENT, [gp.encryption_certificate], mode="cbc")
    assert cms.decrypt(der, gp.decryptor) == CONTENT
    assert gp.decryptor.calls == [False]


def test_oaep_key_transport_is_refused_by_the_card_and_opened_in_software(card) -> None:
    gp = card("gp")
    der = cms.encrypt(CONTENT, [gp.encryption_certificate], mode="cbc")
    # Rewrap the content key with RSA-OAEP SHA-256, which a CPS3 cannot decipher.
    software = cms.SoftwareDecryptor(card_keys("gp").authentication_key,
                                     gp.encryption_certificate)
    info = asn1_cms.ContentInfo.load(der)
    ktri = info["content"]["recipient_infos"][0].chosen
    cek = software.decrypt(ktri["encrypted_key"].native, oaep=False)
    ktri["key_encryption_algorithm"] = {
        "algorithm": "rsaes_oaep",
        "parameters": {"hash_algorithm": {"algorithm": "sha256"},
                       "mask_gen_algorithm": {"algorithm": "mgf1",
                                              "parameters": {"algorithm": "sha256"}}}}
    ktri["encrypted_key"] = gp.encryption_certificate.public_key().encrypt(
        cek, padding.OAEP(padding.MGF1(hashes.SHA256()), hashes.SHA256(), None))
    oaep = info.dump(force=True)
    with pytest.raises(cms.UnsupportedAlgorithm, match=r"PKCS#1 v1\.5 only"):
        cms.decrypt(oaep, gp.decryptor)
    assert gp.decryptor.calls == [True]  # asked for OAEP, which CardDecryptor refuses
    assert cms.decrypt(oaep, software) == CONTENT


def test_validate_certificate_for_encryption(card, trust, make_crl) -> None:
    gp = card("gp")
    chain = cms.validate_certificate(gp.encryption_certificate, trust,
                                     purpose=cms.KeyPurpose.ENCRYPTION,
                                     untrusted=[ca_certificate("personnes")])
    assert chain[-1] == ca_certificate("root")
    with pytest.raises(cms.CertificateInvalid) as exc:
        cms.validate_certificate(gp.signer.certificate, trust, purpose=cms.KeyPurpose.ENCRYPTION,
                                 untrusted=[ca_certificate("personnes")])
    assert exc.value.reason is Reason.KEY_USAGE
    store = cms.TrustStore([ca_certificate("root")], intermediates=[ca_certificate("personnes")],
                           crls=[make_crl([gp.encryption_certificate])])
    with pytest.raises(cms.CertificateInvalid) as exc:
        cms.validate_certificate(gp.encryption_certificate, store,
                                 purpose=cms.KeyPurpose.ENCRYPTION)
    assert exc.value.reason is Reason.REVOKED


def test_trust_store_needs_a_root() -> None:
    with pytest.raises(ValueError, match="root"):
        cms.TrustStore([])


def test_software_keys_stay_out_of_reprs() -> None:
    keys = card_keys("gp")
    signer = cms.SoftwareSigner(keys.signature_key, keys.signature_cert)
    decryptor = cms.SoftwareDecryptor(keys.authentication_key, keys.authentication_cert)
    assert "PrivateKey" not in repr(signer) and "PrivateKey" not in repr(decryptor)
