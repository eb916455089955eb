"""Enveloped data decrypted as it is read from chunks, the DER never whole in memory."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

from asn1crypto import cms, core
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import (
    AEADDecryptionContext,
    Cipher,
    CipherContext,
    algorithms,
    modes,
)

import bifente.edged.services.cms.ber as ber
from bifente.edged.services.cms.enveloped import cbc_iv, check_tag, decrypt, gcm_parameters, unwrap
from bifente.edged.services.cms.errors import (
    CmsError,
    ContentTooLarge,
    DecryptionFailed,
    MalformedCms,
    Unstreamable,
)
from bifente.edged.services.cms.seams import Decryptor
from bifente.edged.services.cms.structure import DEFAULT_MAX_CONTENT, PARSE_ERRORS
from bifente.edged.services.pieces import CHUNK

__all__ = ["CmsStream", "decrypt_stream"]

_ENVELOPES = {"enveloped_data", "authenticated_enveloped_data"}
_FIELD_LIMIT = 4 * 1024 * 1024  # one field around the ciphertext, read whole (RecipientInfos)
_CONTEXT, _UNIVERSAL = ber.CONTEXT, ber.UNIVERSAL


class CmsStream:
    """A ContentInfo (RFC 5652 §3) read from chunks: its contentType read, its content not.

    MalformedCms when the chunks do not start as one (or what the chunk source raises).
    `size`, when known, bounds the bytes the chunks hold: a length announced beyond it is
    refused before any buffer is sized by it.
    """

    def __init__(self, chunks: Iterable[bytes | bytearray | memoryview],
                 size: int | None = None) -> None:
        self._reader = ber.ChunkReader(chunks)
        self.size = size
        try:
            self._frame = ber.Frame(self._reader, _expect(ber.read_header(self._reader),
                                                          _UNIVERSAL, 16, "ContentInfo"))
            oid = _expect(self._frame.next(), _UNIVERSAL, 6, "contentType")
            element = ber.read_element(self._reader, oid, 256)
            self.content_type = str(cms.ContentType.load(element).native)
        except CmsError:
            raise
        except PARSE_ERRORS as exc:
            raise MalformedCms(f"not a ContentInfo: {exc}") from None


def _expect(header: ber.Header | None, cls: int, tag: int, what: str) -> ber.Header:
    if header is None or header.cls != cls or header.tag != tag:
        raise MalformedCms(f"{what} missing or out of place")
    return header


class _OnceDecryptor:
    """A decryptor that unwraps each key once (a fallback re-reads the input, not the card)."""

    def __init__(self, decryptor: Decryptor) -> None:
        self._decryptor = decryptor
        self.certificate = decryptor.certificate
        self._memo: dict[tuple[bytes, bool], bytes] = {}

    def decrypt(self, encrypted_key: bytes, *, oaep: bool) -> bytes:
        """The inner decryptor's answer, remembered."""
        key = (encrypted_key, oaep)
        if key not in self._memo:
            self._memo[key] = self._decryptor.decrypt(encrypted_key, oaep=oaep)
        return self._memo[key]


def decrypt_stream(stream: CmsStream, decryptor: Decryptor, *, whole: Callable[[], bytes],
                   max_content: int = DEFAULT_MAX_CONTENT) -> bytes | bytearray:
    """decrypt() of a ContentInfo read as chunks: the DER is never whole in memory.

    The ciphertext is decrypted as it arrives into one plaintext buffer, returned once the
    GCM tag or the CBC padding checks. What the stream does not follow (authenticated
    attributes, which GCM needs before the ciphertext; Unstreamable from the chunk source)
    is decrypted from `whole()` instead, with the key unwrapped once. Raises as decrypt().
    """
    once = _OnceDecryptor(decryptor)
    try:
        try:
            return _decrypt_stream(stream, once, max_content)
        except Unstreamable:
            return decrypt(whole(), once, max_content=max_content)
    except CmsError:
        raise
    except PARSE_ERRORS as exc:
        raise MalformedCms(f"cannot parse the enveloped data: {exc}") from None


def _decrypt_stream(stream: CmsStream, decryptor: Decryptor,
                    max_content: int) -> bytearray:
    # RFC 5652 §6.1 EnvelopedData / RFC 5083 §2.1 AuthEnvelopedData, field by field: the
    # framing is read here (edged/services/cms/ber.py), each field by asn1crypto.
    if stream.content_type not in _ENVELOPES:
        raise MalformedCms(f"expected authenticated_enveloped_data or enveloped_data, "
                           f"found {stream.content_type}")
    authenticated = stream.content_type == "authenticated_enveloped_data"
    reader = stream._reader
    explicit = ber.Frame(reader, _expect(stream._frame.next(), _CONTEXT, 0, "content [0]"))
    envelope = ber.Frame(reader, _expect(explicit.next(), _UNIVERSAL, 16, "the envelope"))
    ber.read_element(reader, _expect(envelope.next(), _UNIVERSAL, 2, "version"), 16)
    header = envelope.next()
    if header is not None and (header.cls, header.tag) == (_CONTEXT, 0):
        ber.read_element(reader, header, _FIELD_LIMIT)  # originatorInfo: not used
        header = envelope.next()
    infos = cms.RecipientInfos.load(ber.read_element(
        reader, _expect(header, _UNIVERSAL, 17, "recipientInfos"), _FIELD_LIMIT), strict=True)
    eci = ber.Frame(reader, _expect(envelope.next(), _UNIVERSAL, 16, "encryptedContentInfo"))
    ber.read_element(reader, _expect(eci.next(), _UNIVERSAL, 6, "contentType"), 256)
    algorithm = cms.EncryptionAlgorithm.load(ber.read_element(
        reader, _expect(eci.next(), _UNIVERSAL, 16, "contentEncryptionAlgorithm"),
        _FIELD_LIMIT), strict=True)
    content = eci.next()
    if content is None:
        raise MalformedCms("the encrypted content is detached (not supported)")
    _expect(content, _CONTEXT, 0, "encryptedContent")
    if content.length is not None and content.length > max_content + 16:
        raise ContentTooLarge(content.length, max_content)
    if content.length is not None and stream.size is not None \
            and content.length > stream.size - reader.offset:
        raise MalformedCms("the encrypted content is longer than the input")
    cek = unwrap(infos, algorithm, authenticated, decryptor)
    cipher: CipherContext
    if authenticated:
        nonce, icv_len = gcm_parameters(algorithm)
        cipher = Cipher(algorithms.AES(cek), modes.GCM(nonce, min_tag_length=12)).decryptor()
    else:
        cipher = Cipher(algorithms.AES(cek), modes.CBC(cbc_iv(algorithm))).decryptor()
    plaintext = _decrypt_chunks(cipher, ber.octet_string_chunks(reader, content, CHUNK),
                                content.length, max_content)
    eci.finish()
    header = envelope.next()
    if authenticated:
        if header is not None and (header.cls, header.tag) == (_CONTEXT, 1):
            raise Unstreamable  # authAttrs: GCM's additional data, needed first (RFC 5083 §2.2)
        mac = ber.read_element(reader, _expect(header, _UNIVERSAL, 4, "mac"), 64)
        tag = check_tag(core.OctetString.load(mac, strict=True).native, icv_len)
        header = envelope.next()
        if header is not None and (header.cls, header.tag) == (_CONTEXT, 2):
            ber.read_element(reader, header, _FIELD_LIMIT)  # unauthAttrs: not used
            header = envelope.next()
    elif header is not None and (header.cls, header.tag) == (_CONTEXT, 1):
        ber.read_element(reader, header, _FIELD_LIMIT)  # unprotectedAttrs: not used
        header = envelope.next()
    if header is not None:
        raise MalformedCms("an unexpected field after the encrypted content")
    explicit.finish()
    stream._frame.finish()
    if not reader.at_end():
        raise MalformedCms("data after the ContentInfo")
    if isinstance(cipher, AEADDecryptionContext):
        try:
            cipher.finalize_with_tag(tag)
        except InvalidTag:
            raise DecryptionFailed("authentication tag mismatch") from None
        return plaintext
    try:
        plaintext += cipher.finalize()
    except ValueError:  # cryptography's "not a multiple of the block length"
        raise MalformedCms("AES-CBC needs a 16-byte IV and whole blocks") from None
    return _unpad(plaintext)


def _decrypt_chunks(cipher: CipherContext, chunks: Iterator[memoryview], size: int | None,
                    max_content: int) -> bytearray:
    """The ciphertext decrypted into one buffer (sized up front when its length is known)."""
    total = 0
    if size is None:  # constructed, indefinite: the buffer grows
        out = bytearray()
        for piece in chunks:
            total += len(piece)
            if total > max_content + 16:
                raise ContentTooLarge(total, max_content)
            out += cipher.update(piece)
    else:
        # update_into wants room for one more block than it writes.
        out = bytearray(size + 16)
        written = 0
        with memoryview(out) as view:
            for piece in chunks:
                total += len(piece)
                written += cipher.update_into(piece, view[written:])
        del out[written:]
    return out


def _unpad(padded: bytearray) -> bytearray:
    """PKCS#7 padding (RFC 5652 §6.3) removed in place, checked by cryptography's unpadder."""
    if len(padded) % 16:
        raise MalformedCms("AES-CBC needs a 16-byte IV and whole blocks")
    if not padded:
        raise DecryptionFailed()
    unpadder = padding.PKCS7(128).unpadder()
    try:
        kept = len(unpadder.update(bytes(padded[-16:])) + unpadder.finalize())
    except ValueError:
        raise DecryptionFailed() from None
    del padded[len(padded) - 16 + kept:]
    return padded
