"""Keys, trust and real S/MIME messages of the test PKI, for the CMS and S/MIME harnesses."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from functools import cache

from asn1crypto import parser as asn1_parser

from bifente.edged.services import cms, smime
from bifente.simulators.pki import ca_certificate, card_keys

SENDER = "claire.martin@cabinet.test"  # the gp profile's address, in its certificates
AT = dt.datetime(2026, 6, 1, tzinfo=dt.UTC)  # inside the test certificates' validity


class MemoDecryptor(cms.SoftwareDecryptor):
    """The card's decryption, remembered per wrapped key: mutants of the content path reach
    the content decryption at full speed instead of paying an RSA operation each time."""

    def __init__(self) -> None:
        keys = card_keys("gp")
        super().__init__(keys.authentication_key, keys.authentication_cert)
        self._memo: dict[tuple[bytes, bool], bytes] = {}

    def decrypt(self, encrypted_key: bytes, *, oaep: bool) -> bytes:
        """RSA unwrap, memoised (bounded)."""
        key = (encrypted_key, oaep)
        if key not in self._memo:
            if len(self._memo) > 256:
                self._memo.clear()
            self._memo[key] = super().decrypt(encrypted_key, oaep=oaep)
        return self._memo[key]


@cache
def trust() -> cms.TrustStore:
    """The test IGC-Santé root, as edged trusts it."""
    return cms.TrustStore([ca_certificate("root")])


def signer() -> cms.SoftwareSigner:
    """The gp card's signature key, with the intermediate CA carried in each signature."""
    keys = card_keys("gp")
    return cms.SoftwareSigner(keys.signature_key, keys.signature_cert,
                              [ca_certificate("personnes")],
                              encryption_certificate=keys.authentication_cert)


def messages() -> Iterator[bytes]:
    """Clear, signed-only (both forms), signed+encrypted (GCM and CBC) messages."""
    attachment = smime.Attachment("cr.pdf", "application/pdf", b"%PDF-1.4\n%%EOF\n")
    plain = smime.build_message(SENDER, ["bob@clinique.test"], subject="Résultats",
                                text="Bonjour,\nvoici le compte rendu.", html="<p>Bonjour</p>",
                                attachments=[attachment], message_id="<1.2@cabinet.test>",
                                date=AT)
    yield smime.to_bytes(plain)
    yield smime.to_bytes(smime.sign_message(plain, signer()))
    yield smime.to_bytes(smime.sign_message(plain, signer(), hp="cipher"))
    for mode in ("gcm", "cbc"):
        yield smime.to_bytes(smime.protect(plain, signer(), [], mode))  # type: ignore[arg-type]


def cms_blobs() -> Iterator[bytes]:
    """DER SignedData (embedded and detached) and EnvelopedData/AuthEnvelopedData."""
    keys = card_keys("gp")
    yield cms.sign(b"content", signer(), detached=False)
    yield cms.sign(b"content", signer(), detached=True)
    for mode in ("gcm", "cbc"):
        yield cms.encrypt(b"content", [keys.authentication_cert], mode=mode)  # type: ignore[arg-type]


def _ber_header(first: int, length: int | None) -> bytes:
    if length is None:
        return bytes((first, 0x80))
    if length < 0x80:
        return bytes((first, length))
    octets = length.to_bytes((length.bit_length() + 7) // 8, "big")
    return bytes((first, 0x80 | len(octets))) + octets


def _children(contents: bytes) -> Iterator[tuple[int, int, int, bytes, bytes]]:
    at = 0
    while at < len(contents):
        end = asn1_parser._parse(contents, len(contents), at, lengths_only=True)[1]
        cls, method, tag, _header, inner, _trailer = asn1_parser.parse(contents[at:end])
        yield cls, method, tag, inner, contents[at:end]
        at = end


def _is_content(cls: int, method: int, tag: int, contents: bytes) -> bool:
    return cls == 2 and method == 0 and tag == 0 and len(contents) > 64


def _holds_content(contents: bytes) -> bool:
    return any(_is_content(c, m, t, inner) or (m == 1 and _holds_content(inner))
               for c, m, t, inner, _der in _children(contents))


def ber_indefinite(der: bytes, segment: int = 1000, nest: bool = False) -> bytes:
    """An envelope re-encoded as `openssl cms -stream` writes it: the values around the
    encryptedContent of indefinite length, and the encryptedContent ([0] IMPLICIT OCTET STRING)
    in `segment`-byte OCTET STRING segments (X.690 §8.7.3), each one itself constructed when
    `nest`; the small fields stay DER. The oracle of the streamed decryption's tests."""
    cls, method, tag, header, contents, _trailer = asn1_parser.parse(der)
    first = header[0]
    if _is_content(cls, method, tag, contents):
        parts = b""
        for i in range(0, len(contents), segment):
            piece = _ber_header(0x04, len(contents[i:i + segment])) + contents[i:i + segment]
            parts += _ber_header(0x24, None) + piece + b"\x00\x00" if nest else piece
        return _ber_header(first | 0x20, None) + parts + b"\x00\x00"
    if method == 1 and _holds_content(contents):
        inner = b"".join(ber_indefinite(child, segment, nest)
                         for *_, child in _children(contents))
        return _ber_header(first, None) + inner + b"\x00\x00"
    return der
