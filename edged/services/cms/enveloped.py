"""EnvelopedData and AuthEnvelopedData (RFC 5652 §6, RFC 5083): encrypt, and decrypt whole."""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from typing import Literal

from asn1crypto import cms, core
from asn1crypto import parser as asn1_parser
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, padding
from cryptography.hazmat.primitives.asymmetric import padding as rsa_padding
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey
from cryptography.hazmat.primitives.ciphers import (
    AEADEncryptionContext,
    Cipher,
    CipherContext,
    algorithms,
    modes,
)

from bifente.edged.services.cms.errors import (
    CmsError,
    ContentTooLarge,
    DecryptionFailed,
    MalformedCms,
    NotForThisRecipient,
    UnsuitableRecipient,
    UnsupportedAlgorithm,
)
from bifente.edged.services.cms.seams import Decryptor
from bifente.edged.services.cms.structure import DEFAULT_MAX_CONTENT, PARSE_ERRORS, asn1_cert, load
from bifente.edged.services.cms.trust import extension, label
from bifente.edged.services.pieces import CHUNK, Pieces

__all__ = [
    "CEK_LEN",
    "GCM_NONCE_LEN",
    "GCM_TAG_LEN",
    "MAX_RECIPIENTS",
    "GcmParameters",
    "cbc_iv",
    "check_tag",
    "decrypt",
    "encrypt",
    "encrypt_stream",
    "gcm_parameters",
    "unwrap",
]

MAX_RECIPIENTS = 500  # RecipientInfos built or scanned
GCM_NONCE_LEN = 12  # RFC 5084 §3.2: 12 octets RECOMMENDED
GCM_TAG_LEN = 16
CEK_LEN = 32  # AES-256
# Content-encryption algorithms we open (we emit only the 256-bit ones): name -> key length.
_CBC = {"aes128_cbc": 16, "aes192_cbc": 24, "aes256_cbc": 32}
_GCM = {"aes128_gcm": 16, "aes192_gcm": 24, "aes256_gcm": 32}


class GcmParameters(core.Sequence):  # type: ignore[misc]  # asn1crypto is untyped
    """RFC 5084 §3.2 GCMParameters (asn1crypto has CCM's, not GCM's)."""

    _fields = [
        ("aes_nonce", core.OctetString),
        ("aes_icvlen", core.Integer, {"default": 12}),
    ]


def _recipient_key(cert: x509.Certificate) -> RSAPublicKey:
    key = cert.public_key()
    if not isinstance(key, RSAPublicKey):
        raise UnsuitableRecipient(f"{label(cert)!r}: not an RSA key")
    ku = extension(cert, x509.KeyUsage)
    if isinstance(ku, x509.KeyUsage) and not ku.key_encipherment:
        raise UnsuitableRecipient(f"{label(cert)!r}: key usage forbids key encipherment "
                                  "(the signature certificate?)")
    return key


def encrypt(content: bytes | Pieces, recipients: Sequence[x509.Certificate], *,
            mode: Literal["gcm", "cbc"] = "gcm",
            max_content: int = DEFAULT_MAX_CONTENT) -> bytes:
    """AES-256 content encryption, the key sent to each recipient with RSA PKCS#1 v1.5.

    PKCS#1 v1.5 key transport because a recipient's key may live on a CPS card, which
    deciphers nothing else (docs/cards.md); RFC 8551 §2.3 has every agent open it.

    'gcm' gives AuthEnvelopedData (RFC 5083/5084), 'cbc' EnvelopedData (id-aes256-CBC).
    Duplicate certificates are sent one key; recipients are named by issuer and serial.
    """
    return b"".join(encrypt_stream(content, recipients, mode=mode, max_content=max_content))


def encrypt_stream(content: bytes | Pieces, recipients: Sequence[x509.Certificate], *,
                   mode: Literal["gcm", "cbc"] = "gcm",
                   max_content: int = DEFAULT_MAX_CONTENT) -> Iterator[bytes]:
    """encrypt(), as DER chunks in order: the ciphertext is made a chunk at a time.

    Every check runs before this returns (errors are not deferred to the first chunk).
    """
    if mode not in ("gcm", "cbc"):
        raise ValueError(f"mode must be 'gcm' or 'cbc', not {mode!r}")
    pieces = Pieces.of(content)
    if len(pieces) > max_content:
        raise ContentTooLarge(len(pieces), max_content)
    unique = list({c.fingerprint(hashes.SHA256()): c for c in recipients}.values())
    if not unique:
        raise ValueError("at least one recipient certificate is needed")
    if len(unique) > MAX_RECIPIENTS:
        raise ValueError(f"more than {MAX_RECIPIENTS} recipients")
    keys = [_recipient_key(c) for c in unique]
    cek = os.urandom(CEK_LEN)
    infos = []
    for cert, key in zip(unique, keys, strict=True):
        a_cert = asn1_cert(cert)
        infos.append(cms.RecipientInfo({"ktri": cms.KeyTransRecipientInfo({
            "version": "v0",
            "rid": cms.RecipientIdentifier({"issuer_and_serial_number": {
                "issuer": a_cert.issuer, "serial_number": a_cert.serial_number}}),
            "key_encryption_algorithm": {"algorithm": "rsaes_pkcs1v15"},
            "encrypted_key": key.encrypt(cek, rsa_padding.PKCS1v15()),
        })}))
    if mode == "cbc":
        iv = os.urandom(16)
        algorithm = cms.EncryptionAlgorithm({"algorithm": "aes256_cbc", "parameters": iv})
        encryptor = Cipher(algorithms.AES(cek), modes.CBC(iv)).encryptor()
        size = (len(pieces) // 16 + 1) * 16  # PKCS#7 padding always adds 1 to 16 bytes
        return _enveloped_chunks(pieces, encryptor, "enveloped_data", algorithm, infos, size)
    nonce = os.urandom(GCM_NONCE_LEN)
    algorithm = cms.EncryptionAlgorithm({
        "algorithm": "aes256_gcm",
        "parameters": GcmParameters({"aes_nonce": nonce, "aes_icvlen": GCM_TAG_LEN})})
    encryptor = Cipher(algorithms.AES(cek), modes.GCM(nonce)).encryptor()
    return _enveloped_chunks(pieces, encryptor, "authenticated_enveloped_data", algorithm, infos,
                             len(pieces))


class _Length:
    """Contents known by their length only: asn1crypto encodes a DER header from len() alone."""

    def __init__(self, length: int) -> None:
        self.length = length

    def __len__(self) -> int:
        return self.length


def _header(tag: int, length: int, *, constructed: bool = True, context: bool = False) -> bytes:
    """The DER identifier and length octets (X.690 §8.1) of a value of `length` bytes."""
    # asn1crypto's own header encoder, so that the streamed DER is the DER its dump() writes.
    header: bytes = core._dump_header(2 if context else 0, int(constructed), tag, _Length(length))
    return header


def _enveloped_chunks(pieces: Pieces, encryptor: CipherContext, kind: str,
                      algorithm: cms.EncryptionAlgorithm, infos: list[cms.RecipientInfo],
                      size: int) -> Iterator[bytes]:
    # RFC 5652 §6.1 EnvelopedData / RFC 5083 §2.1 AuthEnvelopedData, written in order around
    # a streamed encryptedContent: every field but the ciphertext is dumped by asn1crypto,
    # and the enclosing headers need only the ciphertext's length, known in advance.
    authenticated = kind == "authenticated_enveloped_data"
    fields = (cms.CMSVersion("v0").dump()  # v0: only KeyTransRecipientInfo v0, no attributes
              + cms.RecipientInfos(infos).dump())
    eci = (cms.ContentType("data").dump() + algorithm.dump()
           + _header(0, size, constructed=False, context=True))  # [0] IMPLICIT OCTET STRING
    mac_size = len(core.OctetString(bytes(GCM_TAG_LEN)).dump()) if authenticated else 0
    eci = _header(16, len(eci) + size) + eci  # EncryptedContentInfo SEQUENCE
    body = len(fields) + len(eci) + size + mac_size
    envelope = _header(16, body)  # (Auth)EnvelopedData SEQUENCE
    explicit = _header(0, len(envelope) + body, context=True)  # ContentInfo content [0]
    oid = cms.ContentType(kind).dump()
    outer = _header(16, len(oid) + len(explicit) + len(envelope) + body)  # ContentInfo
    return _cipher_chunks(pieces, encryptor, outer + oid + explicit + envelope + fields + eci,
                          size, authenticated)


def _cipher_chunks(pieces: Pieces, encryptor: CipherContext, head: bytes, size: int,
                   authenticated: bool) -> Iterator[bytes]:
    yield head
    padder = None if authenticated else padding.PKCS7(128).padder()
    written = 0
    for chunk in pieces.chunks(CHUNK):
        out = encryptor.update(padder.update(chunk) if padder else chunk)
        written += len(out)
        yield out
    out = encryptor.update(padder.finalize()) if padder else b""
    out += encryptor.finalize()
    written += len(out)
    if written != size:  # the headers above announced `size` bytes
        raise RuntimeError(f"encrypted {written} bytes, announced {size}")
    yield out
    if isinstance(encryptor, AEADEncryptionContext):
        yield core.OctetString(encryptor.tag).dump()


def _rid_matches(rid: cms.RecipientIdentifier, cert: asn1_x509.Certificate) -> bool:
    if rid.name == "issuer_and_serial_number":
        return bool(rid.chosen["issuer"] == cert.issuer
                    and rid.chosen["serial_number"].native == cert.serial_number)
    return cert.key_identifier is not None and bool(rid.chosen.native == cert.key_identifier)


def _unwrap_mode(algorithm: cms.KeyEncryptionAlgorithm) -> bool:
    name = algorithm["algorithm"].native
    if name in ("rsaes_pkcs1v15", "rsa"):
        return False  # OpenSSL's default key transport, ours, and the card's only one
    if name != "rsaes_oaep":
        raise UnsupportedAlgorithm(f"key transport {name}")
    params = algorithm["parameters"]
    hash_name = params["hash_algorithm"]["algorithm"].native
    mgf = params["mask_gen_algorithm"]
    label = params["p_source_algorithm"]["parameters"].native
    if (hash_name != "sha256" or mgf["algorithm"].native != "mgf1"
            or mgf["parameters"]["algorithm"].native != "sha256" or label):
        # Software keys open OAEP with SHA-256 only; the card opens no OAEP at all.
        raise UnsupportedAlgorithm(f"RSA-OAEP with {hash_name} / "
                                   f"{mgf['parameters']['algorithm'].native} (need SHA-256)")
    return True


def decrypt(der: bytes, decryptor: Decryptor, *, max_content: int = DEFAULT_MAX_CONTENT) -> bytes:
    """Open EnvelopedData (AES-CBC) or AuthEnvelopedData (AES-GCM) with the decryptor's key.

    NotForThisRecipient when no RecipientInfo names its certificate; DecryptionFailed when
    the key does not unwrap or the content does not decrypt or authenticate.
    """
    try:
        return _decrypt(der, decryptor, max_content)
    except CmsError:
        raise
    except PARSE_ERRORS as exc:
        raise MalformedCms(f"cannot parse the enveloped data: {exc}") from None


def _tlv(der: bytes, at: int, end: int) -> tuple[int, int]:
    """(contents start, contents end) of the DER value at `at`, which must end by `end`."""
    start, stop = asn1_parser._parse(der, end, at, lengths_only=True)  # no copy
    if der[at + 1] == 0x80:  # indefinite length (BER): not the DER walked here
        raise ValueError("indefinite length")
    return start, stop


def _skeleton(der: bytes) -> tuple[bytes, memoryview] | None:
    """The envelope without its ciphertext (re-encoded lengths), and the ciphertext in place.

    asn1crypto copies a value's contents at every nesting level it parses: five copies of a
    large ciphertext. Here only the TLV boundaries are read (asn1crypto's own parser), the
    ciphertext is cut out, and the rest, small, is parsed as usual. None: not plain DER with
    a primitive encryptedContent (BER from `openssl cms -stream`, say); the caller then
    parses the whole thing.
    """
    try:
        ci_start, ci_end = _tlv(der, 0, len(der))
        _oid_start, oid_end = _tlv(der, ci_start, ci_end)
        if ci_end != len(der) or der[oid_end] != 0xA0:  # ContentInfo content [0] EXPLICIT
            return None
        x_start, x_end = _tlv(der, oid_end, ci_end)
        if der[x_start] != 0x30:
            return None
        env_start, env_end = _tlv(der, x_start, x_end)
        at = env_start
        while der[at] != 0x30:  # version, originatorInfo, recipientInfos: to the ECI
            at = _tlv(der, at, env_end)[1]
        eci_at = at
        eci_start, eci_end = _tlv(der, eci_at, env_end)
        at = _tlv(der, eci_start, eci_end)[1]  # contentType
        at = _tlv(der, at, eci_end)[1]  # contentEncryptionAlgorithm
        if at >= eci_end or der[at] != 0x80:  # [0] IMPLICIT OCTET STRING, primitive
            return None
        ct_at = at
        ct_start, ct_end = _tlv(der, ct_at, eci_end)
    except (ValueError, IndexError):
        return None
    cut = ct_end - ct_start
    # Innermost first: each enclosing header is re-encoded for contents `cut` bytes shorter.
    empty = _header(0, 0, constructed=False, context=True)
    eci = _header(16, eci_end - eci_start - (ct_start - ct_at) - cut + len(empty))
    eci_len = len(eci) + (ct_at - eci_start) + len(empty) + (eci_end - ct_end)
    env_len = (eci_at - env_start) + eci_len + (env_end - eci_end)
    env = _header(16, env_len)
    x_len = len(env) + env_len + (x_end - env_end)
    explicit = _header(0, x_len, context=True)
    ci = _header(16, (oid_end - ci_start) + len(explicit) + x_len + (ci_end - x_end))
    skeleton = b"".join((ci, der[ci_start:oid_end], explicit, env, der[env_start:eci_at], eci,
                         der[eci_start:ct_at], empty, der[ct_end:eci_end],
                         der[eci_end:env_end], der[env_end:x_end], der[x_end:ci_end]))
    return skeleton, memoryview(der)[ct_start:ct_end]


def unwrap(recipient_infos: cms.RecipientInfos, algorithm: cms.EncryptionAlgorithm,
           authenticated: bool, decryptor: Decryptor) -> bytes:
    """The content-encryption key from our RecipientInfo (RFC 5652 §6.2.1), checked."""
    alg_name = algorithm["algorithm"].native
    expected = _GCM if authenticated else _CBC
    if alg_name not in expected:
        raise UnsupportedAlgorithm(f"content encryption {alg_name}")
    if len(recipient_infos) > MAX_RECIPIENTS:
        raise MalformedCms(f"more than {MAX_RECIPIENTS} recipients")
    mine = asn1_cert(decryptor.certificate)
    ktri = next((ri.chosen for ri in recipient_infos
                 if ri.name == "ktri" and _rid_matches(ri.chosen["rid"], mine)), None)
    if ktri is None:
        raise NotForThisRecipient(len(recipient_infos))
    oaep = _unwrap_mode(ktri["key_encryption_algorithm"])
    cek = decryptor.decrypt(ktri["encrypted_key"].native, oaep=oaep)
    if len(cek) != expected[alg_name]:
        raise DecryptionFailed("the unwrapped key has the wrong length")
    return cek


def cbc_iv(algorithm: cms.EncryptionAlgorithm) -> bytes:
    """The 16-byte IV of an AES-CBC algorithm identifier (RFC 3565)."""
    iv = algorithm["parameters"].native
    if not isinstance(iv, bytes) or len(iv) != 16:
        raise MalformedCms("AES-CBC needs a 16-byte IV and whole blocks")
    return iv


def gcm_parameters(algorithm: cms.EncryptionAlgorithm) -> tuple[bytes, int]:
    """(nonce, ICV length) of RFC 5084 §3.2 GCMParameters."""
    try:
        params = GcmParameters.load(algorithm["parameters"].dump())
        nonce, icv_len = params["aes_nonce"].native, params["aes_icvlen"].native
    except (ValueError, TypeError) as exc:
        raise MalformedCms(f"GCMParameters: {exc}") from None
    if not nonce:
        raise MalformedCms("GCM tag length must be 12 to 16 bytes and match aes-ICVlen")
    return nonce, icv_len


def check_tag(tag: object, icv_len: int) -> bytes:
    """The GCM tag, checked against the aes-ICVlen of its GCMParameters (RFC 5084 §3.2)."""
    if not isinstance(tag, bytes) or not 12 <= icv_len <= 16 or len(tag) != icv_len:
        raise MalformedCms("GCM tag length must be 12 to 16 bytes and match aes-ICVlen")
    return tag


def _decrypt(der: bytes, decryptor: Decryptor, max_content: int) -> bytes:
    cut = _skeleton(der)
    info = load(cut[0] if cut else der, {"enveloped_data", "authenticated_enveloped_data"})
    envelope = info["content"]
    authenticated = info["content_type"].native == "authenticated_enveloped_data"
    eci = envelope["auth_encrypted_content_info" if authenticated else "encrypted_content_info"]
    ciphertext: bytes | memoryview | None = cut[1] if cut else eci["encrypted_content"].native
    if ciphertext is None:
        raise MalformedCms("the encrypted content is detached (not supported)")
    if len(ciphertext) > max_content + 16:  # + one CBC padding block
        raise ContentTooLarge(len(ciphertext), max_content)
    algorithm = eci["content_encryption_algorithm"]
    cek = unwrap(envelope["recipient_infos"], algorithm, authenticated, decryptor)

    if not authenticated:
        iv = cbc_iv(algorithm)
        if len(ciphertext) % 16:
            raise MalformedCms("AES-CBC needs a 16-byte IV and whole blocks")
        decryptor_ = Cipher(algorithms.AES(cek), modes.CBC(iv)).decryptor()
        padded = decryptor_.update(ciphertext) + decryptor_.finalize()
        unpadder = padding.PKCS7(128).unpadder()
        try:
            return unpadder.update(padded) + unpadder.finalize()
        except ValueError:
            raise DecryptionFailed() from None

    nonce, icv_len = gcm_parameters(algorithm)
    tag = check_tag(envelope["mac"].native, icv_len)
    decryptor_ = Cipher(algorithms.AES(cek), modes.GCM(nonce, tag, min_tag_length=12)).decryptor()
    auth_attrs = envelope["auth_attrs"]
    if auth_attrs.native is not None:
        decryptor_.authenticate_additional_data(auth_attrs.untag().dump())  # RFC 5083 §2.2
    plaintext = decryptor_.update(ciphertext)
    try:
        decryptor_.finalize()
    except InvalidTag:
        raise DecryptionFailed("authentication tag mismatch") from None
    return plaintext
