"""Streaming pieces: base64 in chunks, CMS enveloping around a streamed ciphertext, CMS signing
of pieces. Each streamed result is compared with the one-shot form (email's own base64,
asn1crypto's own DER), which stays the oracle."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable

import pytest
from asn1crypto import cms as asn1_cms
from hypothesis import given, settings
from hypothesis import strategies as st

from bifente.edged.services import cms
from bifente.edged.services.cms import enveloped, signed
from bifente.edged.services.pieces import Base64Lines, Pieces, base64_lines


def email_base64(data: bytes, newline: bytes) -> bytes:
    """What email's contentmanager writes: 57-byte groups, one b2a_base64 call per line."""
    lines = [binascii.b2a_base64(data[i:i + 57]) for i in range(0, len(data), 57)]
    return b"".join(lines).replace(b"\n", newline)


@pytest.mark.parametrize("size", [0, 1, 2, 3, 56, 57, 58, 114, 1000, 57 * 1000 + 5])
@pytest.mark.parametrize("newline", [b"\r\n", b"\n"])
def test_base64_lines_equal_email_base64(size: int, newline: bytes) -> None:
    data = bytes((i * 31 + 7) & 0xFF for i in range(size))
    assert base64_lines(data, newline) == email_base64(data, newline)


@given(st.lists(st.binary(max_size=300), max_size=12))
def test_base64_in_any_chunks_equals_one_shot(chunks: list[bytes]) -> None:
    encoder = Base64Lines()
    out = b"".join(encoder.update(c) for c in chunks) + encoder.finish()
    assert out == email_base64(b"".join(chunks), b"\r\n")
    assert base64.b64decode(out) == b"".join(chunks)


@given(st.lists(st.one_of(st.binary(max_size=50), st.text("abc\r\n=", max_size=50)),
                max_size=8), st.integers(1, 40))
def test_pieces_read_in_any_chunk_size(parts: list, size: int) -> None:
    pieces = Pieces(parts)
    whole = b"".join(p.encode() if isinstance(p, str) else p for p in parts)
    assert len(pieces) == len(whole)
    chunks = [bytes(c) for c in pieces.chunks(size)]
    assert b"".join(chunks) == whole == pieces.join()
    assert all(0 < len(c) <= size for c in chunks)


def test_non_ascii_str_is_refused() -> None:
    with pytest.raises(ValueError):
        Pieces(["données"])


@pytest.mark.parametrize("mode", ["gcm", "cbc"])
@pytest.mark.parametrize("size", [0, 1, 15, 16, 17, 4096, (1 << 20) + 3])
def test_streamed_envelope_is_der_and_decrypts(card: Callable, mode: str, size: int) -> None:
    nurse = card("nurse")
    content = bytes((i * 13) & 0xFF for i in range(size))
    pieces = Pieces([content[:size // 3], content[size // 3:].decode("latin-1")
                     .encode("latin-1")])
    der = b"".join(cms.encrypt_stream(pieces, [nurse.encryption_certificate], mode=mode))
    # Re-encoded from its parsed values by asn1crypto, it is the same bytes: valid DER.
    assert asn1_cms.ContentInfo.load(der, strict=True).dump(force=True) == der
    assert cms.decrypt(der, nurse.decryptor) == content


def test_encrypt_errors_are_raised_before_any_chunk(card: Callable) -> None:
    with pytest.raises(cms.ContentTooLarge):
        cms.encrypt_stream(b"x" * 11, [card("nurse").encryption_certificate], max_content=10)
    with pytest.raises(ValueError):
        cms.encrypt_stream(b"x", [])


@settings(max_examples=10, deadline=None)
@given(st.lists(st.binary(max_size=200), min_size=1, max_size=5))
def test_signing_pieces_equals_signing_the_joined_bytes(card: Callable,
                                                        parts: list[bytes]) -> None:
    import datetime as dt

    gp = card("gp")
    at = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
    joined = b"".join(parts)
    # PKCS#1 v1.5 signatures are deterministic: same attributes, same DER.
    assert cms.sign(Pieces(parts), gp.signer, detached=True, signing_time=at) == \
        cms.sign(joined, gp.signer, detached=True, signing_time=at)


# -- S/MIME: the streamed protect against the composition of the one-shot layers ------------
def test_protect_bytes_equals_sign_then_encrypt(card: Callable,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    import datetime as dt
    import itertools
    import secrets
    from email.message import EmailMessage

    from bifente.edged.services import smime

    counter = itertools.count()
    # Boundaries from a counter (placeholders do not use secrets): the same in both runs.
    monkeypatch.setattr(secrets, "token_hex", lambda n=16: f"{next(counter):0{2 * n}x}")
    at = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
    monkeypatch.setattr(signed, "now", lambda: at)
    gp, nurse = card("gp"), card("nurse")
    big = smime.Attachment("scan.bin", "application/octet-stream",
                           bytes(range(256)) * 4000 + b"tail")
    small = smime.Attachment("note.txt", "text/plain", "é\n".encode() * 10)

    def build() -> EmailMessage:
        return smime.build_message("Claire MARTIN <claire.martin@cabinet.test>",
                                   ["paul.infirmier@cabinet.test"], subject="Compte rendu",
                                   text="Bonjour\n", html="<p>Bonjour</p>",
                                   attachments=[big, small], message_id="<1@cabinet.test>",
                                   date=at)

    def inner(raw: bytes) -> tuple[bytes, bytes]:
        head, _, body = raw.partition(b"\r\n\r\n")
        return head, cms.decrypt(base64.b64decode(body), nurse.decryptor)

    streamed = smime.protect_bytes(build(), gp.signer, [nurse.encryption_certificate])
    counter = itertools.count()
    layered = smime.to_bytes(smime.encrypt_message(
        smime.sign_message(build(), gp.signer, hp="cipher"),
        [nurse.encryption_certificate, gp.signer.encryption_certificate]))
    assert inner(streamed) == inner(layered)
    assert len(streamed) == len(layered)  # same DER sizes, same 76-column base64 lines


def test_attachments_are_encoded_as_email_would(monkeypatch: pytest.MonkeyPatch) -> None:
    from email.message import EmailMessage

    from bifente.edged.services import smime

    data = bytes(range(256)) * 1000
    ours = smime.build_message("a@b.test", "c@d.test", text="x",
                               attachments=[smime.Attachment("f.pdf", "application/pdf",
                                                             data)])
    part = next(ours.iter_attachments())
    reference = EmailMessage(policy=smime.POLICY)
    reference.set_content(data, maintype="application", subtype="pdf", filename="f.pdf")
    del reference["MIME-Version"]
    assert smime.to_bytes(part) == smime.to_bytes(reference)


@pytest.mark.parametrize("mode", ["gcm", "cbc"])
def test_decrypt_cuts_the_ciphertext_out_before_parsing(card: Callable, mode: str,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    nurse = card("nurse")
    content = bytes(range(256)) * 700
    der = cms.encrypt(content, [nurse.encryption_certificate], mode=mode)
    skeleton, ciphertext = enveloped._skeleton(der)
    assert len(ciphertext) == (len(content) if mode == "gcm" else len(content) // 16 * 16 + 16)
    assert len(skeleton) < len(der) - len(ciphertext) + 10  # only the lengths shrank
    parsed = asn1_cms.ContentInfo.load(skeleton, strict=True)
    whole = asn1_cms.ContentInfo.load(der, strict=True)
    assert parsed["content"]["recipient_infos"].dump() == \
        whole["content"]["recipient_infos"].dump()
    assert cms.decrypt(der, nurse.decryptor) == content
    monkeypatch.setattr(enveloped, "_skeleton", lambda _der: None)  # the plain asn1crypto parse
    assert cms.decrypt(der, nurse.decryptor) == content


def test_ber_or_truncated_envelopes_are_parsed_the_usual_way(card: Callable) -> None:
    nurse = card("nurse")
    der = cms.encrypt(b"x" * 1000, [nurse.encryption_certificate])
    assert enveloped._skeleton(der[:-1]) is None
    assert enveloped._skeleton(der + b"\x00") is None
    with pytest.raises(cms.MalformedCms):
        cms.decrypt(der[:-1], nurse.decryptor)
