"""CMS (RFC 5652, RFC 5083): cms.verify and cms.decrypt on DER from a message."""

from __future__ import annotations

from collections.abc import Iterator

import atheris

with atheris.instrument_imports(include=["edged.services.cms", "asn1crypto"]):
    from edged.services import cms

from fuzz.common import main
from fuzz.mailkit import AT, MemoDecryptor, cms_blobs, trust

DECRYPTOR = MemoDecryptor()


def target(data: bytes) -> None:
    """First byte: verify (embedded), verify (detached content) or decrypt; the rest is DER."""
    if not data:
        return
    mode, der = data[0] % 3, data[1:]
    if mode == 0:
        cms.verify(der, trust=trust(), at=AT)
    elif mode == 1:
        cms.verify(der, trust=trust(), at=AT, detached_content=b"content")
    else:
        cms.decrypt(der, DECRYPTOR)


def seeds() -> Iterator[bytes]:
    """Real SignedData and EnvelopedData of the test PKI, for each mode."""
    for blob in cms_blobs():
        for mode in range(3):
            yield bytes((mode,)) + blob


if __name__ == "__main__":
    main("cms", target, (cms.CmsError,), seeds)
