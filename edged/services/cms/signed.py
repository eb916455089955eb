"""CAdES-BES SignedData (RFC 5652 §5): sign with a Signer, verify against a TrustStore."""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass, field

import asn1crypto.tsp  # noqa: F401  (registers the signing-certificate-v2 attribute)
from asn1crypto import cms, core
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding as rsa_padding
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey
from cryptography.hazmat.primitives.serialization import Encoding

from bifente.edged.services.cms.errors import (
    CertificateInvalid,
    CmsError,
    ContentTooLarge,
    MalformedCms,
    Reason,
    SignatureInvalid,
    SigningFailed,
    UnsupportedAlgorithm,
)
from bifente.edged.services.cms.seams import Signer
from bifente.edged.services.cms.structure import DEFAULT_MAX_CONTENT, PARSE_ERRORS, asn1_cert, load
from bifente.edged.services.cms.trust import (
    UTC,
    KeyPurpose,
    TrustStore,
    check_validity,
    now,
    validate_certificate,
)
from bifente.edged.services.pieces import Pieces

__all__ = ["MAX_CERTIFICATES", "MAX_SIGNERS", "VerifiedSignature", "sign", "verify"]

MAX_CERTIFICATES = 32  # certificates carried in one SignedData (a peer controls the count)
MAX_SIGNERS = 1  # one SignerInfo per SignedData: several signers are not part of the profile

# RFC 5754: SHA-2 digests; weaker ones are refused. The card itself signs SHA-256 only.
_DIGESTS: dict[str, type[hashes.HashAlgorithm]] = {
    "sha256": hashes.SHA256, "sha384": hashes.SHA384, "sha512": hashes.SHA512}


@dataclass(frozen=True)
class VerifiedSignature:
    """What a valid signature proves: who signed what, with which chain."""

    signer: x509.Certificate
    chain: tuple[x509.Certificate, ...]  # signer first, trusted root last
    signing_time: dt.datetime | None  # claimed by the signer (CAdES-BES has no timestamp)
    content_type: str
    digest_algorithm: str
    content: bytes | bytearray | memoryview = field(repr=False)  # as given, when detached


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
        {"type": "signing_time", "values": [_time(signing_time or now())]},
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
    certificates = [a_cert, *(asn1_cert(c) for c in signer.chain)]
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
    except PARSE_ERRORS as exc:
        raise SignatureInvalid(Reason.MALFORMED, f"cannot parse the SignedData: {exc}") from None


def _verify(der: bytes, trust: TrustStore,
            detached_content: bytes | bytearray | memoryview | None,
            at: dt.datetime | None, require_signing_certificate: bool,
            max_content: int) -> VerifiedSignature:
    info = load(der, {"signed_data"})
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
            check_validity(signer, signing_time, "at signing time, certificate")
    except CertificateInvalid as exc:
        raise SignatureInvalid(exc.reason, exc.detail) from None
    return VerifiedSignature(signer, chain, signing_time, content_type, digest_name, content)
