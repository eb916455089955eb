"""Incoming mail (RFC 8551): smime.open_message, the path mail.open runs on a fetched message."""

from __future__ import annotations

from collections.abc import Iterator

import atheris

with atheris.instrument_imports(include=["bifente.edged.services.smime",
                                         "bifente.edged.services.cms"]):
    from bifente.edged.services import cms, smime

from bifente.edged.services.pieces import base64_lines
from fuzz.common import main
from fuzz.mailkit import AT, MemoDecryptor, ber_indefinite, cms_blobs, messages, trust

DECRYPTOR = MemoDecryptor()
_WRAP = (b"From: claire.martin@cabinet.test\r\nMIME-Version: 1.0\r\n"
         b"Content-Type: application/pkcs7-mime; smime-type=enveloped-data\r\n"
         b"Content-Transfer-Encoding: binary\r\n\r\n")
_WRAP64 = _WRAP.replace(b"binary", b"base64")


def target(data: bytes) -> None:
    """First byte: clear (nothing required), strict (edged's defaults), or DER wrapped as
    application/pkcs7-mime, in binary or in base64 (read as a stream); the rest is the
    message as fetched from the mailbox."""
    if not data:
        return
    mode, raw = data[0] % 4, data[1:]
    if mode == 0:
        smime.open_message(raw, None, trust(), require_encrypted=False, require_signed=False,
                           at=AT)
    elif mode == 1:
        smime.open_message(raw, DECRYPTOR, trust(), at=AT)
    elif mode == 2:
        smime.open_message(_WRAP + raw, DECRYPTOR, trust(), require_encrypted=False,
                           require_signed=False, at=AT)
    else:
        smime.open_message(_WRAP64 + base64_lines(raw), DECRYPTOR, trust(),
                           require_encrypted=False, require_signed=False, at=AT)


def seeds() -> Iterator[bytes]:
    """Real messages in the first two modes, real CMS blobs in the others (and in BER)."""
    for msg in messages():
        yield b"\x00" + msg
        yield b"\x01" + msg
    for blob in cms_blobs():
        yield b"\x02" + blob
        yield b"\x03" + blob
        yield b"\x03" + ber_indefinite(blob, 5)


if __name__ == "__main__":
    main("smime", target, (cms.CmsError,), seeds)
