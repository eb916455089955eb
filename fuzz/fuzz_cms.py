"""CMS (RFC 5652, RFC 5083): cms.verify and cms.decrypt on DER from a message."""

from __future__ import annotations

from collections.abc import Iterator

import atheris

with atheris.instrument_imports(include=["bifente.edged.services.cms", "asn1crypto"]):
    from bifente.edged.services import cms

from fuzz.common import main
from fuzz.mailkit import AT, MemoDecryptor, ber_indefinite, cms_blobs, trust

DECRYPTOR = MemoDecryptor()


def target(data: bytes) -> None:
    """First byte: verify (embedded), verify (detached content), decrypt, or decrypt as a
    stream of chunks of the size the second byte gives (BER framing read as it comes); the
    rest is DER or BER."""
    if not data:
        return
    mode, der = data[0] % 4, data[1:]
    if mode == 0:
        cms.verify(der, trust=trust(), at=AT)
    elif mode == 1:
        cms.verify(der, trust=trust(), at=AT, detached_content=b"content")
    elif mode == 2:
        cms.decrypt(der, DECRYPTOR)
    elif der:
        size, der = der[0] + 1, der[1:]
        chunks = (der[i:i + size] for i in range(0, len(der), size))
        cms.decrypt_stream(cms.CmsStream(chunks, len(der)), DECRYPTOR, whole=lambda: der)


def seeds() -> Iterator[bytes]:
    """Real SignedData and EnvelopedData of the test PKI, for each mode; for the streamed
    decryption, the envelopes in DER and in BER (indefinite lengths, segmented content)."""
    for blob in cms_blobs():
        for mode in range(3):
            yield bytes((mode,)) + blob
        for ber in (blob, ber_indefinite(blob, 5), ber_indefinite(blob, 7, nest=True)):
            yield b"\x03\x10" + ber


if __name__ == "__main__":
    main("cms", target, (cms.CmsError,), seeds)
