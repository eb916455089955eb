"""CMS (RFC 5652) with the CPS card: CAdES-BES signatures, EnvelopedData and AuthEnvelopedData.

Every structure is built and parsed with asn1crypto; cryptography does AES, RSA with public
keys, hashing and the certificate checks. Private-key operations go through two seams,
`Signer` and `Decryptor`, so the same code signs with the card (split hash, PSO DECIPHER) or
with a software key (the structure's seal key, tests). The profile is a STAND-IN for the
unpublished MSSanté S/MIME profile; docs/messaging.md describes it.
"""

from __future__ import annotations

import datetime as dt
import enum
import hashlib
import itertools
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol, runtime_checkable

import asn1crypto.tsp  # noqa: F401  (registers the signing-certificate-v2 attribute)
from asn1crypto import cms, core
from asn1crypto import parser as asn1_parser
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import hashes, padding
from cryptography.hazmat.primitives.asymmetric import padding as rsa_padding
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey, RSAPublicKey
from cryptography.hazmat.primitives.ciphers import (
    AEADDecryptionContext,
    AEADEncryptionContext,
    Cipher,
    CipherContext,
    algorithms,
    modes,
)
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import ExtendedKeyUsageOID, ExtensionOID

from apdu.cps import CpsSession
from apdu.cps_spec import KeyRef
from apdu.errors import ApduError
from apdu.sw import SW
from edged.services import ber
from edged.services.pieces import CHUNK, Pieces

__all__ = [
    "DEFAULT_MAX_CONTENT",
    "CardDecryptor",
    "CardSigner",
    "CertificateInvalid",
    "CmsError",
    "CmsStream",
    "ContentTooLarge",
    "DecryptionFailed",
    "Decryptor",
    "KeyPurpose",
    "MalformedCms",
    "NotForThisRecipient",
    "Reason",
    "SignatureInvalid",
    "Signer",
    "SigningFailed",
    "SoftwareDecryptor",
    "SoftwareSigner",
    "TrustStore",
    "Unstreamable",
    "UnsuitableRecipient",
    "UnsupportedAlgorithm",
    "VerifiedSignature",
    "content_type_of",
    "decrypt",
    "decrypt_stream",
    "encrypt",
    "encrypt_stream",
    "sign",
    "validate_certificate",
    "verify",
]

UTC = dt.UTC
DEFAULT_MAX_CONTENT = 50 * 1024 * 1024  # bytes of content signed, encrypted or decrypted
MAX_CERTIFICATES = 32  # certificates carried in one SignedData (a peer controls the count)
MAX_SIGNERS = 1  # one SignerInfo per SignedData: several signers are not part of the profile
MAX_RECIPIENTS = 500  # RecipientInfos built or scanned
MAX_CHAIN_DEPTH = 6  # certificates from the signer to a root, both included
GCM_NONCE_LEN = 12  # RFC 5084 §3.2: 12 octets RECOMMENDED
GCM_TAG_LEN = 16
CEK_LEN = 32  # AES-256

# RFC 5754: SHA-2 digests; weaker ones are refused. The card itself signs SHA-256 only.
_DIGESTS: dict[str, type[hashes.HashAlgorithm]] = {
    "sha256": hashes.SHA256, "sha384": hashes.SHA384, "sha512": hashes.SHA512}
# Content-encryption algorithms we open (we emit only the 256-bit ones): name -> key length.
_CBC = {"aes128_cbc": 16, "aes192_cbc": 24, "aes256_cbc": 32}
_GCM = {"aes128_gcm": 16, "aes192_gcm": 24, "aes256_gcm": 32}
# Extensions whose criticality we honour (RFC 5280 §4.2: reject an unknown critical one).
# Certificate policies are accepted without a policy constraint (any policy).
_UNDERSTOOD = {
    ExtensionOID.BASIC_CONSTRAINTS, ExtensionOID.KEY_USAGE, ExtensionOID.EXTENDED_KEY_USAGE,
    ExtensionOID.SUBJECT_ALTERNATIVE_NAME, ExtensionOID.CERTIFICATE_POLICIES,
    ExtensionOID.SUBJECT_KEY_IDENTIFIER, ExtensionOID.AUTHORITY_KEY_IDENTIFIER,
    ExtensionOID.CRL_DISTRIBUTION_POINTS, ExtensionOID.AUTHORITY_INFORMATION_ACCESS,
}


# -- errors -------------------------------------------------------------------------------
class CmsError(Exception):
    """Base of every error of the CMS and S/MIME services."""


class MalformedCms(CmsError, ValueError):
    """The bytes are not the CMS structure expected (says which part and why)."""


class UnsupportedAlgorithm(CmsError):
    """A well-formed structure uses an algorithm outside the profile (names it)."""


class ContentTooLarge(CmsError):
    """Content over the configured cap; nothing was allocated for it."""

    def __init__(self, size: int, limit: int) -> None:
        self.size = size
        self.limit = limit
        super().__init__(f"content of {size} bytes is over the limit of {limit} bytes")


class Reason(enum.StrEnum):
    """Why a signature or a certificate was refused (stable strings for the API)."""

    MALFORMED = "malformed"
    UNSUPPORTED_ALGORITHM = "unsupported-algorithm"
    SIGNER_CERTIFICATE_MISSING = "signer-certificate-missing"
    DIGEST_MISMATCH = "digest-mismatch"
    BAD_SIGNATURE = "bad-signature"
    SIGNING_CERTIFICATE_MISSING = "signing-certificate-v2-missing"
    SIGNING_CERTIFICATE_MISMATCH = "signing-certificate-v2-mismatch"
    UNTRUSTED_CHAIN = "untrusted-chain"
    EXPIRED = "expired"
    NOT_YET_VALID = "not-yet-valid"
    REVOKED = "revoked"
    REVOCATION_UNKNOWN = "revocation-unknown"
    KEY_USAGE = "wrong-key-usage"


class CertificateInvalid(CmsError):
    """A certificate failed path validation (chain, validity, usage, revocation)."""

    def __init__(self, reason: Reason, detail: str) -> None:
        self.reason = reason
        self.detail = detail
        super().__init__(f"{reason}: {detail}")


class SignatureInvalid(CmsError):
    """A signature was refused; `reason` says why, `detail` says where."""

    def __init__(self, reason: Reason, detail: str = "") -> None:
        self.reason = reason
        self.detail = detail
        super().__init__(f"signature invalid ({reason}){': ' + detail if detail else ''}")


class SigningFailed(CmsError):
    """The signer returned a signature that its own certificate does not verify."""


class NotForThisRecipient(CmsError):
    """No RecipientInfo names the decryptor's certificate (lists nobody: recipients are private)."""

    def __init__(self, recipient_count: int) -> None:
        self.recipient_count = recipient_count
        super().__init__(f"this message is encrypted for {recipient_count} recipient(s), "
                         "none of them the certificate in use")


class DecryptionFailed(CmsError):
    """The key could not be unwrapped or the content did not decrypt (wrong key, tampered)."""

    def __init__(self, detail: str = "wrong key or corrupted message") -> None:
        super().__init__(f"decryption failed: {detail}")


class UnsuitableRecipient(CmsError):
    """A recipient certificate cannot receive encrypted mail (key type or key usage)."""


# -- seams --------------------------------------------------------------------------------
@runtime_checkable
class Signer(Protocol):
    """Signs with a private key it keeps: RSA PKCS#1 v1.5 over SHA-256(data)."""

    certificate: x509.Certificate
    chain: Sequence[x509.Certificate]  # intermediates, signer's issuer first

    def sign(self, data: bytes) -> bytes:
        """Return the RSA PKCS#1 v1.5 signature of SHA-256(data) (the signer hashes)."""
        ...


@runtime_checkable
class Decryptor(Protocol):
    """Unwraps content-encryption keys with a private key it keeps."""

    certificate: x509.Certificate

    def decrypt(self, encrypted_key: bytes, *, oaep: bool) -> bytes:
        """RSA-decrypt (OAEP SHA-256 or PKCS#1 v1.5); DecryptionFailed when it does not open."""
        ...


class CardSigner:
    """The CPS signature key (split hash on the card); the PIN must already be verified."""

    def __init__(self, session: CpsSession, chain: Sequence[x509.Certificate] = (), *,
                 key: KeyRef = KeyRef.SIGNATURE) -> None:
        self._session = session
        self._key = key
        self.certificate = session.certificate(key)
        self.chain: Sequence[x509.Certificate] = tuple(chain)
        # The card's encryption certificate, so protect() can always encrypt to the sender.
        self.encryption_certificate: x509.Certificate | None = session.certificate(
            KeyRef.AUTHENTICATION)

    def sign(self, data: bytes) -> bytes:
        """PSO HASH + PSO COMPUTE DIGITAL SIGNATURE over SHA-256(data)."""
        return self._session.sign(data, self._key)


class CardDecryptor:
    """The CPS authentication key, which is the encryption key (PSO DECIPHER on the card)."""

    def __init__(self, session: CpsSession) -> None:
        self._session = session
        self.certificate = session.certificate(KeyRef.AUTHENTICATION)

    def decrypt(self, encrypted_key: bytes, *, oaep: bool) -> bytes:
        """PSO DECIPHER; the card's 6A80 (padding check failed) becomes DecryptionFailed."""
        if oaep:
            # A CPS3 deciphers PKCS#1 v1.5 only (docs/cards.md): refused before any APDU.
            raise UnsupportedAlgorithm("RSA-OAEP key transport (the CPS card deciphers "
                                       "RSA PKCS#1 v1.5 only)")
        try:
            return self._session.decipher(encrypted_key)
        except ApduError as exc:
            if exc.sw in (SW.INCORRECT_DATA, SW.WRONG_LENGTH):
                raise DecryptionFailed() from None
            raise


class SoftwareSigner:
    """A key in memory (the structure's seal key in the proxy; tests)."""

    def __init__(self, key: RSAPrivateKey, certificate: x509.Certificate,
                 chain: Sequence[x509.Certificate] = (), *,
                 encryption_certificate: x509.Certificate | None = None) -> None:
        self._key = key
        self.certificate = certificate
        self.chain: Sequence[x509.Certificate] = tuple(chain)
        self.encryption_certificate = encryption_certificate

    def __repr__(self) -> str:
        return f"SoftwareSigner({self.certificate.subject.rfc4514_string()!r})"

    def sign(self, data: bytes) -> bytes:
        """RSA PKCS#1 v1.5 SHA-256."""
        return self._key.sign(data, rsa_padding.PKCS1v15(), hashes.SHA256())


class SoftwareDecryptor:
    """A decryption key in memory (tests, interop with keys held in files)."""

    def __init__(self, key: RSAPrivateKey, certificate: x509.Certificate) -> None:
        self._key = key
        self.certificate = certificate

    def __repr__(self) -> str:
        return f"SoftwareDecryptor({self.certificate.subject.rfc4514_string()!r})"

    def decrypt(self, encrypted_key: bytes, *, oaep: bool) -> bytes:
        """RSA decryption with OAEP (SHA-256, MGF1-SHA-256) or PKCS#1 v1.5."""
        pad = _oaep() if oaep else rsa_padding.PKCS1v15()
        try:
            return self._key.decrypt(encrypted_key, pad)
        except ValueError:
            raise DecryptionFailed() from None


# -- trust --------------------------------------------------------------------------------
class KeyPurpose(enum.StrEnum):
    """What an end-entity certificate is checked for."""

    SIGNATURE = "signature"  # keyUsage digitalSignature or nonRepudiation
    ENCRYPTION = "encryption"  # keyUsage keyEncipherment


@dataclass(frozen=True)
class TrustStore:
    """Trusted roots, known intermediates and CRLs (IGC-Santé in production: docs/messaging.md)."""

    roots: Sequence[x509.Certificate]
    crls: Sequence[x509.CertificateRevocationList] = ()
    intermediates: Sequence[x509.Certificate] = ()
    require_crl: bool = False  # True: a certificate whose issuer has no CRL here is refused

    def __post_init__(self) -> None:
        if not self.roots:
            raise ValueError("a trust store needs at least one root")


def _now() -> dt.datetime:
    return dt.datetime.now(UTC)


def _label(cert: x509.Certificate) -> str:
    # Certificates are public, but subjects name people: keep details to the CN.
    cns = cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
    return str(cns[0].value) if cns else cert.subject.rfc4514_string()


def _issued_by(child: x509.Certificate, issuer: x509.Certificate) -> bool:
    try:
        child.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def _paths(chain: list[x509.Certificate], roots: Sequence[x509.Certificate],
           pool: Sequence[x509.Certificate]) -> Iterator[list[x509.Certificate]]:
    current = chain[-1]
    for root in roots:
        if current == root:
            yield chain
            return
    for root in roots:
        if _issued_by(current, root):
            yield [*chain, root]
    if len(chain) + 1 >= MAX_CHAIN_DEPTH:
        return
    for candidate in pool:
        if candidate not in chain and _issued_by(current, candidate):
            yield from _paths([*chain, candidate], roots, pool)


def _extension(cert: x509.Certificate,
               ext_type: type[x509.ExtensionType]) -> x509.ExtensionType | None:
    try:
        return cert.extensions.get_extension_for_class(ext_type).value
    except x509.ExtensionNotFound:
        return None


def _check_validity(cert: x509.Certificate, at: dt.datetime, what: str) -> None:
    if at < cert.not_valid_before_utc:
        raise CertificateInvalid(Reason.NOT_YET_VALID,
                                 f"{what} {_label(cert)!r} is valid from "
                                 f"{cert.not_valid_before_utc:%Y-%m-%d}")
    if at > cert.not_valid_after_utc:
        raise CertificateInvalid(Reason.EXPIRED,
                                 f"{what} {_label(cert)!r} expired on "
                                 f"{cert.not_valid_after_utc:%Y-%m-%d}")


def _check_usage(cert: x509.Certificate, purpose: KeyPurpose) -> None:
    ku = _extension(cert, x509.KeyUsage)
    if isinstance(ku, x509.KeyUsage):
        ok = (ku.digital_signature or ku.content_commitment if purpose is KeyPurpose.SIGNATURE
              else ku.key_encipherment)
        if not ok:
            raise CertificateInvalid(Reason.KEY_USAGE,
                                     f"{_label(cert)!r} has no key usage for {purpose}")
    eku = _extension(cert, x509.ExtendedKeyUsage)
    if isinstance(eku, x509.ExtendedKeyUsage) and not (
            ExtendedKeyUsageOID.EMAIL_PROTECTION in eku
            or ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE in eku):
        raise CertificateInvalid(Reason.KEY_USAGE,
                                 f"{_label(cert)!r} lacks the emailProtection extended usage")


def _check_revocation(cert: x509.Certificate, issuer: x509.Certificate, trust: TrustStore,
                      at: dt.datetime) -> None:
    crls = [c for c in trust.crls if c.issuer == issuer.subject]
    if not crls:
        if trust.require_crl:
            raise CertificateInvalid(Reason.REVOCATION_UNKNOWN,
                                     f"no CRL from {_label(issuer)!r}")
        return
    public_key = issuer.public_key()
    signed = [c for c in crls if isinstance(public_key, RSAPublicKey)
              and c.is_signature_valid(public_key)]
    if not signed:
        raise CertificateInvalid(Reason.REVOCATION_UNKNOWN,
                                 f"the CRL of {_label(issuer)!r} has a bad signature")
    fresh = [c for c in signed if c.next_update_utc is None or at <= c.next_update_utc]
    if not fresh:
        raise CertificateInvalid(Reason.REVOCATION_UNKNOWN,
                                 f"the CRL of {_label(issuer)!r} is out of date")
    for crl in fresh:
        entry = crl.get_revoked_certificate_by_serial_number(cert.serial_number)
        if entry is not None and entry.revocation_date_utc <= at:
            raise CertificateInvalid(Reason.REVOKED,
                                     f"{_label(cert)!r} was revoked on "
                                     f"{entry.revocation_date_utc:%Y-%m-%d}")


def _check_path(path: list[x509.Certificate], purpose: KeyPurpose, trust: TrustStore,
                at: dt.datetime) -> None:
    for index, cert in enumerate(path):
        what = "certificate" if index == 0 else "CA certificate"
        _check_validity(cert, at, what)
        for ext in cert.extensions:
            if ext.critical and ext.oid not in _UNDERSTOOD:
                raise CertificateInvalid(Reason.UNTRUSTED_CHAIN,
                                         f"{_label(cert)!r} has an unsupported critical "
                                         f"extension {ext.oid.dotted_string}")
        if index == 0:
            continue
        bc = _extension(cert, x509.BasicConstraints)
        if not isinstance(bc, x509.BasicConstraints) or not bc.ca:
            raise CertificateInvalid(Reason.UNTRUSTED_CHAIN,
                                     f"issuer {_label(cert)!r} is not a CA")
        if bc.path_length is not None and index - 1 > bc.path_length:
            raise CertificateInvalid(Reason.UNTRUSTED_CHAIN,
                                     f"path length constraint of {_label(cert)!r} exceeded")
        ku = _extension(cert, x509.KeyUsage)
        if isinstance(ku, x509.KeyUsage) and not ku.key_cert_sign:
            raise CertificateInvalid(Reason.UNTRUSTED_CHAIN,
                                     f"issuer {_label(cert)!r} may not sign certificates")
    _check_usage(path[0], purpose)
    for child, issuer in itertools.pairwise(path):
        _check_revocation(child, issuer, trust, at)


def validate_certificate(cert: x509.Certificate, trust: TrustStore, *, purpose: KeyPurpose,
                         at: dt.datetime | None = None, untrusted: Sequence[x509.Certificate] = (),
                         ) -> tuple[x509.Certificate, ...]:
    """The chain from `cert` to a trusted root, each link checked (RFC 5280 subset); raises.

    Checks: signatures and name chaining up to a root of `trust`; every certificate valid at
    `at` (default now); CA basicConstraints, pathLen and keyCertSign; no unknown critical
    extension; the end entity's key usage for `purpose` (and emailProtection if it has an
    extended key usage); CRLs of `trust`, when one is configured for an issuer.
    """
    at = at or _now()
    pool = [*trust.intermediates, *untrusted]
    first: CertificateInvalid | None = None
    for path in _paths([cert], trust.roots, pool):
        try:
            _check_path(path, purpose, trust, at)
        except CertificateInvalid as exc:
            first = first or exc
            continue
        return tuple(path)
    if first is not None:
        raise first
    raise CertificateInvalid(Reason.UNTRUSTED_CHAIN,
                             f"no path from {_label(cert)!r} to a trusted root")


# -- signing ------------------------------------------------------------------------------
@dataclass(frozen=True)
class VerifiedSignature:
    """What a valid signature proves: who signed what, with which chain."""

    signer: x509.Certificate
    chain: tuple[x509.Certificate, ...]  # signer first, trusted root last
    signing_time: dt.datetime | None  # claimed by the signer (CAdES-BES has no timestamp)
    content_type: str
    digest_algorithm: str
    content: bytes | bytearray | memoryview = field(repr=False)  # as given, when detached


def _asn1_cert(cert: x509.Certificate) -> asn1_x509.Certificate:
    return asn1_x509.Certificate.load(cert.public_bytes(Encoding.DER))


def _time(value: dt.datetime) -> cms.Time:
    value = value.astimezone(UTC).replace(microsecond=0)
    # RFC 5652 §11.3: UTCTime for 1950-2049, GeneralizedTime otherwise.
    return cms.Time({"utc_time" if 1950 <= value.year < 2050 else "generalized_time": value})


def sign(content: bytes | Pieces, signer: Signer, *, detached: bool, content_type: str = "data",
         signing_time: dt.datetime | None = None,
         max_content: int = DEFAULT_MAX_CONTENT) -> bytes:
    """DER ContentInfo(SignedData), CAdES-BES, with the signer's certificate and chain.

    Signed attributes: content-type, message-digest, signing-time, signing-certificate-v2
    (RFC 5035, ESSCertIDv2 with the SHA-256 of the certificate and its issuer/serial).
    Detached content may be given as Pieces: it is hashed a chunk at a time, never joined.
    """
    if len(content) > max_content:
        raise ContentTooLarge(len(content), max_content)
    content_digest = hashlib.sha256()
    for chunk in Pieces.of(content).chunks():
        content_digest.update(chunk)
    cert_der = signer.certificate.public_bytes(Encoding.DER)
    a_cert = asn1_x509.Certificate.load(cert_der)
    ess = {"certs": [{
        "cert_hash": hashlib.sha256(cert_der).digest(),  # hash_algorithm DEFAULT sha256
        "issuer_serial": {"issuer": [asn1_x509.GeneralName({"directory_name": a_cert.issuer})],
                          "serial_number": a_cert.serial_number},
    }]}
    attrs = cms.CMSAttributes([
        {"type": "content_type", "values": [content_type]},
        {"type": "signing_time", "values": [_time(signing_time or _now())]},
        {"type": "message_digest", "values": [content_digest.digest()]},
        {"type": "signing_certificate_v2", "values": [ess]},
    ])
    to_sign = attrs.dump()  # DER SET OF, sorted (RFC 5652 §5.4: the signature covers this)
    signature = signer.sign(to_sign)
    public_key = signer.certificate.public_key()
    if not isinstance(public_key, RSAPublicKey):
        raise UnsupportedAlgorithm("the signer's certificate has no RSA key")
    try:
        public_key.verify(signature, to_sign, rsa_padding.PKCS1v15(), hashes.SHA256())
    except InvalidSignature:
        raise SigningFailed("the signature does not match the signer's certificate "
                            "(wrong key on the card?)") from None
    signer_info = cms.SignerInfo({
        "version": "v1",
        "sid": cms.SignerIdentifier({"issuer_and_serial_number": {
            "issuer": a_cert.issuer, "serial_number": a_cert.serial_number}}),
        "digest_algorithm": {"algorithm": "sha256"},
        "signed_attrs": attrs,
        # RFC 5754 §3.2 allows rsaEncryption too; OpenSSL accepts both.
        "signature_algorithm": {"algorithm": "sha256_rsa"},
        "signature": signature,
    })
    certificates = [a_cert, *(_asn1_cert(c) for c in signer.chain)]
    signed_data = cms.SignedData({
        "version": "v1" if content_type == "data" else "v3",  # RFC 5652 §5.1
        "digest_algorithms": [{"algorithm": "sha256"}],
        "encap_content_info": {"content_type": content_type,
                               "content": None if detached else Pieces.of(content).join()},
        "certificates": certificates,
        "signer_infos": [signer_info],
    })
    der: bytes = cms.ContentInfo({"content_type": "signed_data", "content": signed_data}).dump()
    return der


# asn1crypto parses lazily: a malformed field raises ValueError/TypeError where it is read.
_PARSE_ERRORS = (ValueError, TypeError, KeyError, IndexError, AttributeError,
                 x509.InvalidVersion)


def content_type_of(der: bytes) -> str:
    """The contentType of a ContentInfo (RFC 5652 §3), read without parsing its content."""
    start, end = asn1_parser._parse(der, len(der), 0, lengths_only=True)
    if der[0] != 0x30 or end != len(der):
        raise ValueError("not a DER ContentInfo")
    oid_end = asn1_parser._parse(der, end, start, lengths_only=True)[1]
    return str(cms.ContentType.load(der[start:oid_end]).native)


def _load(der: bytes, expected: set[str]) -> cms.ContentInfo:
    info = cms.ContentInfo.load(der, strict=True)
    kind = info["content_type"].native
    if kind not in expected:
        raise MalformedCms(f"expected {' or '.join(sorted(expected))}, found {kind}")
    return info


def _single(attrs: cms.CMSAttributes, name: str) -> core.Asn1Value | None:
    found = [a for a in attrs if a["type"].native == name]
    if not found:
        return None
    if len(found) > 1 or len(found[0]["values"]) != 1:
        raise SignatureInvalid(Reason.MALFORMED, f"attribute {name} must appear once, one value")
    return found[0]["values"][0]


def _sid_matches(sid: cms.SignerIdentifier, cert: asn1_x509.Certificate) -> bool:
    if sid.name == "issuer_and_serial_number":
        return bool(sid.chosen["issuer"] == cert.issuer
                    and sid.chosen["serial_number"].native == cert.serial_number)
    return cert.key_identifier is not None and bool(sid.chosen.native == cert.key_identifier)


def _check_ess(attrs: cms.CMSAttributes, cert_der: bytes, a_cert: asn1_x509.Certificate,
               required: bool) -> None:
    ess = _single(attrs, "signing_certificate_v2")
    if ess is None:
        if required:
            raise SignatureInvalid(Reason.SIGNING_CERTIFICATE_MISSING,
                                   "no signing-certificate-v2 attribute (RFC 5035)")
        return
    certs = ess["certs"]
    if len(certs) == 0:
        raise SignatureInvalid(Reason.MALFORMED, "empty signing-certificate-v2")
    first = certs[0]  # RFC 5035 §5.4: the first ESSCertIDv2 is the signing certificate
    digest_name = first["hash_algorithm"]["algorithm"].native
    if digest_name not in _DIGESTS:
        raise SignatureInvalid(Reason.UNSUPPORTED_ALGORITHM,
                               f"signing-certificate-v2 hash {digest_name}")
    digest = hashes.Hash(_DIGESTS[digest_name]())
    digest.update(cert_der)
    if first["cert_hash"].native != digest.finalize():
        raise SignatureInvalid(Reason.SIGNING_CERTIFICATE_MISMATCH,
                               "the certificate in the message is not the one signed for")
    issuer_serial = first["issuer_serial"]
    if issuer_serial.native is not None:
        names = [n.chosen for n in issuer_serial["issuer"] if n.name == "directory_name"]
        if (issuer_serial["serial_number"].native != a_cert.serial_number
                or a_cert.issuer not in names):
            raise SignatureInvalid(Reason.SIGNING_CERTIFICATE_MISMATCH,
                                   "signing-certificate-v2 issuer/serial differ")


def verify(der: bytes, *, trust: TrustStore,
           detached_content: bytes | bytearray | memoryview | None = None,
           at: dt.datetime | None = None, require_signing_certificate: bool = True,
           max_content: int = DEFAULT_MAX_CONTENT) -> VerifiedSignature:
    """Verify a SignedData (one signer) against `trust`; SignatureInvalid(reason) otherwise.

    Certificates must be valid at `at` (default now): the signing-time is the signer's claim
    (CAdES-BES has no trusted timestamp), so it cannot rescue an expired certificate; it must
    also fall inside the signer's validity. CRLs come from `trust`.
    """
    try:
        return _verify(der, trust, detached_content, at, require_signing_certificate,
                       max_content)
    except MalformedCms as exc:
        raise SignatureInvalid(Reason.MALFORMED, str(exc)) from None
    except CmsError:
        raise
    except _PARSE_ERRORS as exc:
        raise SignatureInvalid(Reason.MALFORMED, f"cannot parse the SignedData: {exc}") from None


def _verify(der: bytes, trust: TrustStore,
            detached_content: bytes | bytearray | memoryview | None,
            at: dt.datetime | None, require_signing_certificate: bool,
            max_content: int) -> VerifiedSignature:
    info = _load(der, {"signed_data"})
    sd = info["content"]
    signer_infos = sd["signer_infos"]
    if len(signer_infos) != MAX_SIGNERS:
        raise SignatureInvalid(Reason.MALFORMED,
                               f"{len(signer_infos)} signers (exactly one is supported)")
    si = signer_infos[0]
    eci = sd["encap_content_info"]
    content_type = eci["content_type"].native
    embedded = eci["content"]
    if embedded.native is not None and detached_content is not None:
        raise SignatureInvalid(Reason.MALFORMED, "content both embedded and given detached")
    if embedded.native is None and detached_content is None:
        raise SignatureInvalid(Reason.MALFORMED, "detached signature: the content is needed")
    if detached_content is not None:
        content = detached_content
    else:
        content = embedded.native if content_type == "data" else embedded.contents
    if len(content) > max_content:
        raise ContentTooLarge(len(content), max_content)

    certificates = sd["certificates"]
    if certificates.native is not None and len(certificates) > MAX_CERTIFICATES:
        raise SignatureInvalid(Reason.MALFORMED, f"more than {MAX_CERTIFICATES} certificates")
    carried = [c.chosen for c in certificates if c.name == "certificate"] \
        if certificates.native is not None else []
    a_signer = next((c for c in carried if _sid_matches(si["sid"], c)), None)
    if a_signer is None:
        raise SignatureInvalid(Reason.SIGNER_CERTIFICATE_MISSING,
                               "the signer's certificate is not in the message")
    signer_der = a_signer.dump()
    try:
        signer = x509.load_der_x509_certificate(signer_der)
        untrusted = [x509.load_der_x509_certificate(c.dump()) for c in carried]
    except (ValueError, x509.InvalidVersion) as exc:  # InvalidVersion is not a ValueError
        raise SignatureInvalid(Reason.MALFORMED, f"certificate: {exc}") from None

    digest_name = si["digest_algorithm"]["algorithm"].native
    if digest_name not in _DIGESTS:
        raise SignatureInvalid(Reason.UNSUPPORTED_ALGORITHM, f"digest {digest_name}")
    sig_alg = si["signature_algorithm"]
    try:
        sig_ok = sig_alg.signature_algo == "rsassa_pkcs1v15" and (
            sig_alg["algorithm"].native in ("rsassa_pkcs1v15", "rsa")
            or sig_alg.hash_algo == digest_name)
    except ValueError:
        sig_ok = False
    if not sig_ok:
        raise SignatureInvalid(Reason.UNSUPPORTED_ALGORITHM,
                               f"signature algorithm {sig_alg['algorithm'].native}")
    attrs = si["signed_attrs"]
    if attrs.native is None:
        raise SignatureInvalid(Reason.MALFORMED, "no signed attributes (CAdES needs them)")
    claimed_type = _single(attrs, "content_type")
    claimed_digest = _single(attrs, "message_digest")
    if claimed_type is None or claimed_digest is None:
        raise SignatureInvalid(Reason.MALFORMED, "content-type or message-digest missing")
    if claimed_type.native != content_type:
        raise SignatureInvalid(Reason.MALFORMED, "content-type attribute differs from eContent")
    digest = hashes.Hash(_DIGESTS[digest_name]())
    digest.update(content)
    if claimed_digest.native != digest.finalize():
        raise SignatureInvalid(Reason.DIGEST_MISMATCH, "the content was changed after signing")

    _check_ess(attrs, signer_der, a_signer, require_signing_certificate)
    public_key = signer.public_key()
    if not isinstance(public_key, RSAPublicKey):
        raise SignatureInvalid(Reason.UNSUPPORTED_ALGORITHM, "signer key is not RSA")
    # The signature covers the attributes with a SET OF tag, as received (RFC 5652 §5.4).
    signed_bytes = attrs.untag().dump()
    try:
        public_key.verify(si["signature"].native, signed_bytes, rsa_padding.PKCS1v15(),
                          _DIGESTS[digest_name]())
    except InvalidSignature:
        raise SignatureInvalid(Reason.BAD_SIGNATURE,
                               "the signature does not match the signed attributes") from None

    time_value = _single(attrs, "signing_time")
    signing_time = time_value.native if time_value is not None else None
    try:
        chain = validate_certificate(signer, trust, purpose=KeyPurpose.SIGNATURE, at=at,
                                     untrusted=untrusted)
        if signing_time is not None:
            _check_validity(signer, signing_time, "at signing time, certificate")
    except CertificateInvalid as exc:
        raise SignatureInvalid(exc.reason, exc.detail) from None
    return VerifiedSignature(signer, chain, signing_time, content_type, digest_name, content)


# -- enveloping ---------------------------------------------------------------------------
class GcmParameters(core.Sequence):  # type: ignore[misc]  # asn1crypto is untyped
    """RFC 5084 §3.2 GCMParameters (asn1crypto has CCM's, not GCM's)."""

    _fields = [
        ("aes_nonce", core.OctetString),
        ("aes_icvlen", core.Integer, {"default": 12}),
    ]


def _oaep() -> rsa_padding.OAEP:
    return rsa_padding.OAEP(rsa_padding.MGF1(hashes.SHA256()), hashes.SHA256(), None)


def _recipient_key(cert: x509.Certificate) -> RSAPublicKey:
    key = cert.public_key()
    if not isinstance(key, RSAPublicKey):
        raise UnsuitableRecipient(f"{_label(cert)!r}: not an RSA key")
    ku = _extension(cert, x509.KeyUsage)
    if isinstance(ku, x509.KeyUsage) and not ku.key_encipherment:
        raise UnsuitableRecipient(f"{_label(cert)!r}: key usage forbids key encipherment "
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
        a_cert = _asn1_cert(cert)
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
    except _PARSE_ERRORS as exc:
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


def _unwrap(recipient_infos: cms.RecipientInfos, algorithm: cms.EncryptionAlgorithm,
            authenticated: bool, decryptor: Decryptor) -> bytes:
    """The content-encryption key from our RecipientInfo (RFC 5652 §6.2.1), checked."""
    alg_name = algorithm["algorithm"].native
    expected = _GCM if authenticated else _CBC
    if alg_name not in expected:
        raise UnsupportedAlgorithm(f"content encryption {alg_name}")
    if len(recipient_infos) > MAX_RECIPIENTS:
        raise MalformedCms(f"more than {MAX_RECIPIENTS} recipients")
    mine = _asn1_cert(decryptor.certificate)
    ktri = next((ri.chosen for ri in recipient_infos
                 if ri.name == "ktri" and _rid_matches(ri.chosen["rid"], mine)), None)
    if ktri is None:
        raise NotForThisRecipient(len(recipient_infos))
    oaep = _unwrap_mode(ktri["key_encryption_algorithm"])
    cek = decryptor.decrypt(ktri["encrypted_key"].native, oaep=oaep)
    if len(cek) != expected[alg_name]:
        raise DecryptionFailed("the unwrapped key has the wrong length")
    return cek


def _cbc_iv(algorithm: cms.EncryptionAlgorithm) -> bytes:
    iv = algorithm["parameters"].native
    if not isinstance(iv, bytes) or len(iv) != 16:
        raise MalformedCms("AES-CBC needs a 16-byte IV and whole blocks")
    return iv


def _gcm_parameters(algorithm: cms.EncryptionAlgorithm) -> tuple[bytes, int]:
    """(nonce, ICV length) of RFC 5084 §3.2 GCMParameters."""
    try:
        params = GcmParameters.load(algorithm["parameters"].dump())
        nonce, icv_len = params["aes_nonce"].native, params["aes_icvlen"].native
    except (ValueError, TypeError) as exc:
        raise MalformedCms(f"GCMParameters: {exc}") from None
    if not nonce:
        raise MalformedCms("GCM tag length must be 12 to 16 bytes and match aes-ICVlen")
    return nonce, icv_len


def _check_tag(tag: object, icv_len: int) -> bytes:
    if not isinstance(tag, bytes) or not 12 <= icv_len <= 16 or len(tag) != icv_len:
        raise MalformedCms("GCM tag length must be 12 to 16 bytes and match aes-ICVlen")
    return tag


def _decrypt(der: bytes, decryptor: Decryptor, max_content: int) -> bytes:
    cut = _skeleton(der)
    info = _load(cut[0] if cut else der, {"enveloped_data", "authenticated_enveloped_data"})
    envelope = info["content"]
    authenticated = info["content_type"].native == "authenticated_enveloped_data"
    eci = envelope["auth_encrypted_content_info" if authenticated else "encrypted_content_info"]
    ciphertext: bytes | memoryview | None = cut[1] if cut else eci["encrypted_content"].native
    if ciphertext is None:
        raise MalformedCms("the encrypted content is detached (not supported)")
    if len(ciphertext) > max_content + 16:  # + one CBC padding block
        raise ContentTooLarge(len(ciphertext), max_content)
    algorithm = eci["content_encryption_algorithm"]
    cek = _unwrap(envelope["recipient_infos"], algorithm, authenticated, decryptor)

    if not authenticated:
        iv = _cbc_iv(algorithm)
        if len(ciphertext) % 16:
            raise MalformedCms("AES-CBC needs a 16-byte IV and whole blocks")
        decryptor_ = Cipher(algorithms.AES(cek), modes.CBC(iv)).decryptor()
        padded = decryptor_.update(ciphertext) + decryptor_.finalize()
        unpadder = padding.PKCS7(128).unpadder()
        try:
            return unpadder.update(padded) + unpadder.finalize()
        except ValueError:
            raise DecryptionFailed() from None

    nonce, icv_len = _gcm_parameters(algorithm)
    tag = _check_tag(envelope["mac"].native, icv_len)
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


# -- decrypting a stream ------------------------------------------------------------------
class Unstreamable(Exception):
    """The input must be read whole instead (raised by a chunk source; decrypt_stream does)."""


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
        except _PARSE_ERRORS as exc:
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
            return _decrypt(whole(), once, max_content)
    except CmsError:
        raise
    except _PARSE_ERRORS as exc:
        raise MalformedCms(f"cannot parse the enveloped data: {exc}") from None


def _decrypt_stream(stream: CmsStream, decryptor: Decryptor,
                    max_content: int) -> bytearray:
    # RFC 5652 §6.1 EnvelopedData / RFC 5083 §2.1 AuthEnvelopedData, field by field: the
    # framing is read here (edged/services/ber.py), each field by asn1crypto.
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
    cek = _unwrap(infos, algorithm, authenticated, decryptor)
    cipher: CipherContext
    if authenticated:
        nonce, icv_len = _gcm_parameters(algorithm)
        cipher = Cipher(algorithms.AES(cek), modes.GCM(nonce, min_tag_length=12)).decryptor()
    else:
        cipher = Cipher(algorithms.AES(cek), modes.CBC(_cbc_iv(algorithm))).decryptor()
    plaintext = _decrypt_chunks(cipher, ber.octet_string_chunks(reader, content, CHUNK),
                                content.length, max_content)
    eci.finish()
    header = envelope.next()
    if authenticated:
        if header is not None and (header.cls, header.tag) == (_CONTEXT, 1):
            raise Unstreamable  # authAttrs: GCM's additional data, needed first (RFC 5083 §2.2)
        mac = ber.read_element(reader, _expect(header, _UNIVERSAL, 4, "mac"), 64)
        tag = _check_tag(core.OctetString.load(mac, strict=True).native, icv_len)
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
