"""Opening a message as a stream: the envelope base64-decoded and decrypted a slice at a time
(BER framing of edged/services/cms/ber.py), the signed part cut in place, the largest attachment
decoded into the decrypted buffer. The one-shot paths (cms.decrypt, a2b_base64 of the whole
body) stay the oracles."""

from __future__ import annotations

import binascii
import os
from collections.abc import Callable, Iterator

import pytest
from asn1crypto import cms as asn1_cms
from asn1crypto import core
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bifente.edged.services import cms, smime
from bifente.edged.services.cms import ber, enveloped
from bifente.edged.services.smime import Attachment, decode
from fuzz.mailkit import ber_indefinite

SENDER = "Claire MARTIN <claire.martin@cabinet.test>"
CONTENT = bytes(range(256)) * 40 + b"tail"


def chunked(data: bytes, size: int) -> Iterator[bytes]:
    return (data[i:i + size] for i in range(0, len(data), size))


def stream_decrypt(blob: bytes, decryptor: cms.Decryptor, size: int = 7) -> bytes | bytearray:
    return cms.decrypt_stream(cms.CmsStream(chunked(blob, size), len(blob)), decryptor,
                              whole=lambda: blob)


@pytest.fixture(scope="module", params=["gcm", "cbc"])
def envelope(request: pytest.FixtureRequest, card: Callable) -> tuple[bytes, object]:
    nurse = card("nurse")
    return cms.encrypt(CONTENT, [nurse.encryption_certificate], mode=request.param), nurse


@pytest.mark.parametrize("encoding", ["DER", "BER, 1000-byte segments",
                                      "BER, 5-byte segments", "BER, nested segments"])
def test_streamed_decryption_equals_decrypt(envelope: tuple, encoding: str) -> None:
    der, nurse = envelope
    blob = {"DER": der, "BER, 1000-byte segments": ber_indefinite(der, 1000),
            "BER, 5-byte segments": ber_indefinite(der, 5),
            "BER, nested segments": ber_indefinite(der, 7, nest=True)}[encoding]
    assert encoding == "DER" or blob[1] == 0x80  # indefinite length: really BER
    nurse.decryptor.calls.clear()
    assert cms.decrypt(blob, nurse.decryptor) == CONTENT
    for size in (1, 2, 64, 1 << 20):
        assert stream_decrypt(blob, nurse.decryptor, size) == CONTENT
    assert nurse.decryptor.calls == [False] * 5  # one PSO DECIPHER each, PKCS#1 v1.5


@given(cut=st.integers(0, 10**6))
@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_a_truncated_stream_is_malformed(envelope: tuple, cut: int) -> None:
    der, nurse = envelope
    blob = ber_indefinite(der, 100)
    with pytest.raises(cms.MalformedCms):
        stream_decrypt(blob[:cut % len(blob)], nurse.decryptor, 13)


@given(data=st.data())
@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_a_damaged_stream_raises_typed_errors_only(envelope: tuple, data: st.DataObject) -> None:
    der, nurse = envelope
    blob = bytearray(data.draw(st.sampled_from([der, ber_indefinite(der, 50)])))
    for _ in range(data.draw(st.integers(1, 4))):
        blob[data.draw(st.integers(0, len(blob) - 1))] = data.draw(st.integers(0, 255))
    try:  # MalformedCms, DecryptionFailed, NotForThisRecipient...: typed, as decrypt()
        streamed = stream_decrypt(bytes(blob), nurse.decryptor, data.draw(st.integers(1, 300)))
    except cms.CmsError:
        return
    assert streamed == cms.decrypt(bytes(blob), nurse.decryptor)  # what it accepts, decrypt does


def test_trailing_data_and_a_short_content_are_malformed(envelope: tuple) -> None:
    der, nurse = envelope
    with pytest.raises(cms.MalformedCms, match="after the ContentInfo"):
        stream_decrypt(der + b"\x00", nurse.decryptor)
    with pytest.raises(cms.MalformedCms):
        cms.CmsStream(iter([b"\x04\x01x"]))  # an OCTET STRING, not a ContentInfo
    blob = ber_indefinite(der, 100)
    # The first 100-byte segment of the indefinite [0] encryptedContent, retagged INTEGER.
    segment = blob.index(b"\xa0\x80\x04\x64") + 2
    with pytest.raises(cms.MalformedCms, match="not an OCTET STRING"):
        stream_decrypt(blob[:segment] + b"\x02" + blob[segment + 1:], nurse.decryptor)
    with pytest.raises(cms.MalformedCms, match="longer than the input"):
        cms.decrypt_stream(cms.CmsStream(iter([der]), len(der) // 2), nurse.decryptor,
                           whole=lambda: der)


def test_signed_data_is_not_decrypted(card: Callable) -> None:
    der = cms.sign(b"content", card("gp").signer, detached=False)
    stream = cms.CmsStream(chunked(der, 5))
    assert stream.content_type == "signed_data"
    with pytest.raises(cms.MalformedCms, match="found signed_data"):
        cms.decrypt_stream(stream, card("nurse").decryptor, whole=lambda: der)


def test_content_over_the_limit_is_refused_while_it_streams(envelope: tuple) -> None:
    der, nurse = envelope
    for blob in (der, ber_indefinite(der, 100)):
        with pytest.raises(cms.ContentTooLarge):
            cms.decrypt_stream(cms.CmsStream(chunked(blob, 64)), nurse.decryptor,
                               whole=lambda blob=blob: blob, max_content=1000)


def test_authenticated_attributes_are_read_whole_with_one_key_unwrap(
        card: Callable, monkeypatch: pytest.MonkeyPatch) -> None:
    # GCM needs authAttrs (RFC 5083 §2.2) before the ciphertext, and they come after it.
    nurse = card("nurse")
    cek = bytes(range(32))
    monkeypatch.setattr(enveloped.os, "urandom", lambda n: cek[:n])
    der = cms.encrypt(CONTENT, [nurse.encryption_certificate], mode="gcm")
    info = asn1_cms.ContentInfo.load(der)
    envelope = info["content"]
    eci = envelope["auth_encrypted_content_info"]
    attrs = asn1_cms.CMSAttributes([{"type": "content_type", "values": ["data"]}])
    nonce = cek[:12]
    sealed = AESGCM(cek).encrypt(nonce, CONTENT, attrs.dump())  # AAD: the SET OF encoding
    rebuilt = asn1_cms.ContentInfo({"content_type": "authenticated_enveloped_data", "content": {
        "version": envelope["version"], "recipient_infos": envelope["recipient_infos"],
        "auth_encrypted_content_info": {
            "content_type": eci["content_type"],
            "content_encryption_algorithm": eci["content_encryption_algorithm"],
            "encrypted_content": sealed[:-16]},
        "auth_attrs": attrs, "mac": core.OctetString(sealed[-16:])}}).dump()
    nurse.decryptor.calls.clear()
    assert stream_decrypt(rebuilt, nurse.decryptor) == CONTENT
    assert nurse.decryptor.calls == [False]  # the fallback reused the unwrapped key


def test_ber_header_forms() -> None:
    reader = ber.ChunkReader(iter([b"\x9f\x81\x00\x81\x02ab", b"\x30\x80\x00\x00"]))
    header = ber.read_header(reader)  # [128] in the high tag number form, long-form length
    assert (header.cls, header.tag, header.length) == (ber.CONTEXT, 128, 2)
    assert ber.read_element(reader, header, 10) == b"\x9f\x81\x00\x81\x02ab"
    sequence = ber.read_header(reader)
    assert sequence.length is None and ber.read_element(reader, sequence, 10) == \
        b"\x30\x80\x00\x00"
    assert reader.at_end()
    for bad in (b"\x04\x80", b"\x04\xff", b"\x1f\x80\x01\x00", b"\x00\x01\x00",
                b"\x04\x89" + bytes(9), b"\x04"):
        with pytest.raises(ber.BerError):
            ber.read_header(ber.ChunkReader(iter([bad])))


# -- smime ---------------------------------------------------------------------------------
def protected(card: Callable, data: bytes, mode: str = "gcm") -> bytes:
    msg = smime.build_message(SENDER, ["paul.infirmier@cabinet.test"], subject="Scan",
                              text="Bonjour\n",
                              attachments=[Attachment("scan.bin", "application/pdf", data)])
    return smime.protect_bytes(msg, card("gp").signer, [card("nurse").encryption_certificate],
                               mode)


@pytest.mark.parametrize("mode", ["gcm", "cbc"])
def test_a_large_attachment_is_decoded_into_the_decrypted_buffer(card: Callable, trust,
                                                                 mode: str) -> None:
    data = os.urandom(300_000)  # over the splice threshold: its body is a span
    opened = smime.open_message(protected(card, data, mode), card("nurse").decryptor, trust)
    [attachment] = opened.attachments
    assert attachment.data == data and isinstance(attachment.data, bytearray)
    assert opened.text == "Bonjour\n" and opened.signer == card("gp").signer.certificate
    assert opened.signature is not None and opened.signature.content == b""


def rewrap(raw: bytes, width: int) -> bytes:
    """The message with its base64 body in lines of `width` characters."""
    head, _, body = raw.partition(b"\r\n\r\n")
    text = b"".join(body.split())
    return head + b"\r\n\r\n" + b"\r\n".join(text[i:i + width]
                                             for i in range(0, len(text), width)) + b"\r\n"


@pytest.mark.parametrize("width", [76, 75, 1, 10**8])
def test_any_base64_line_width_opens(card: Callable, trust, width: int,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    # Lines that are not whole groups of 4 are not cut a slice at a time: read whole instead.
    monkeypatch.setattr(decode, "CHUNK", 4096)
    data = os.urandom(200_000)
    raw = rewrap(protected(card, data), width)
    opened = smime.open_message(raw, card("nurse").decryptor, trust)
    assert [a.data for a in opened.attachments] == [data]


def test_base64_slices_equal_one_call(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(decode, "CHUNK", 100)
    text = binascii.b2a_base64(bytes(range(256)) * 9)
    lines = b"\r\n".join(text[i:i + 76] for i in range(0, len(text), 76))
    assert b"".join(decode.base64_chunks(lines, 0)) == binascii.a2b_base64(lines)
    odd = b"\r\n".join(text[i:i + 75] for i in range(0, len(text), 75))
    with pytest.raises(cms.Unstreamable):
        b"".join(decode.base64_chunks(odd, 0))
    padded = b"QQ==\r\n" * 40  # a pad inside: one call stops at the first one
    with pytest.raises(cms.Unstreamable):
        b"".join(decode.base64_chunks(padded, 0))
    junk = lines.replace(b"\r\n", b"\r\n*", 3)  # skipped by a2b_base64, as by the slices
    for text in (lines, odd, padded, junk, lines[:-3], b"", b"QUJD\r\n" * 30 + b"QQ=\r\n"):
        try:
            expected: int | None = len(b"".join(decode.base64_chunks(text, 0)))
        except cms.Unstreamable:
            expected = None
        assert decode._base64_size(text, 0, len(text)) == expected


@given(st.text("AB+/=\r\n*", max_size=300))
@settings(max_examples=300, deadline=None)
def test_base64_size_is_what_the_slices_give(text: str) -> None:
    data = text.encode()
    original, decode.CHUNK = decode.CHUNK, 16  # many slices; restored below
    try:
        try:
            expected: int | None = len(b"".join(decode.base64_chunks(data, 0)))
        except cms.Unstreamable:
            expected = None
        assert decode._base64_size(data, 0, len(data)) == expected
        if expected is not None and b"=" not in data:  # no pad: one call decodes the same
            assert b"".join(decode.base64_chunks(data, 0)) == binascii.a2b_base64(data)
    finally:
        decode.CHUNK = original
