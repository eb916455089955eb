"""Trusted roots and certificate path validation (RFC 5280 subset) for signers and recipients."""

from __future__ import annotations

import datetime as dt
import enum
import itertools
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey
from cryptography.x509.oid import ExtendedKeyUsageOID, ExtensionOID

from bifente.edged.services.cms.errors import CertificateInvalid, Reason

__all__ = [
    "MAX_CHAIN_DEPTH",
    "UTC",
    "KeyPurpose",
    "TrustStore",
    "check_validity",
    "extension",
    "label",
    "now",
    "validate_certificate",
]

UTC = dt.UTC
MAX_CHAIN_DEPTH = 6  # certificates from the signer to a root, both included
# Extensions whose criticality we honour (RFC 5280 §4.2: reject an unknown critical one).
# Certificate policies are accepted without a policy constraint (any policy).
_UNDERSTOOD = {
    ExtensionOID.BASIC_CONSTRAINTS, ExtensionOID.KEY_USAGE, ExtensionOID.EXTENDED_KEY_USAGE,
    ExtensionOID.SUBJECT_ALTERNATIVE_NAME, ExtensionOID.CERTIFICATE_POLICIES,
    ExtensionOID.SUBJECT_KEY_IDENTIFIER, ExtensionOID.AUTHORITY_KEY_IDENTIFIER,
    ExtensionOID.CRL_DISTRIBUTION_POINTS, ExtensionOID.AUTHORITY_INFORMATION_ACCESS,
}


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


def now() -> dt.datetime:
    """The current time, in UTC."""
    return dt.datetime.now(UTC)


def label(cert: x509.Certificate) -> str:
    """The certificate's common name (its subject when it has none), to name it in errors."""
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


def extension(cert: x509.Certificate,
              ext_type: type[x509.ExtensionType]) -> x509.ExtensionType | None:
    """The value of the certificate's extension of that type, None when it has none."""
    try:
        return cert.extensions.get_extension_for_class(ext_type).value
    except x509.ExtensionNotFound:
        return None


def check_validity(cert: x509.Certificate, at: dt.datetime, what: str) -> None:
    """CertificateInvalid (expired, not yet valid) unless the certificate is valid at `at`."""
    if at < cert.not_valid_before_utc:
        raise CertificateInvalid(Reason.NOT_YET_VALID,
                                 f"{what} {label(cert)!r} is valid from "
                                 f"{cert.not_valid_before_utc:%Y-%m-%d}")
    if at > cert.not_valid_after_utc:
        raise CertificateInvalid(Reason.EXPIRED,
                                 f"{what} {label(cert)!r} expired on "
                                 f"{cert.not_valid_after_utc:%Y-%m-%d}")


def _check_usage(cert: x509.Certificate, purpose: KeyPurpose) -> None:
    ku = extension(cert, x509.KeyUsage)
    if isinstance(ku, x509.KeyUsage):
        ok = (ku.digital_signature or ku.content_commitment if purpose is KeyPurpose.SIGNATURE
              else ku.key_encipherment)
        if not ok:
            raise CertificateInvalid(Reason.KEY_USAGE,
                                     f"{label(cert)!r} has no key usage for {purpose}")
    eku = extension(cert, x509.ExtendedKeyUsage)
    if isinstance(eku, x509.ExtendedKeyUsage) and not (
            ExtendedKeyUsageOID.EMAIL_PROTECTION in eku
            or ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE in eku):
        raise CertificateInvalid(Reason.KEY_USAGE,
                                 f"{label(cert)!r} lacks the emailProtection extended usage")


def _check_revocation(cert: x509.Certificate, issuer: x509.Certificate, trust: TrustStore,
                      at: dt.datetime) -> None:
    crls = [c for c in trust.crls if c.issuer == issuer.subject]
    if not crls:
        if trust.require_crl:
            raise CertificateInvalid(Reason.REVOCATION_UNKNOWN,
                                     f"no CRL from {label(issuer)!r}")
        return
    public_key = issuer.public_key()
    signed = [c for c in crls if isinstance(public_key, RSAPublicKey)
              and c.is_signature_valid(public_key)]
    if not signed:
        raise CertificateInvalid(Reason.REVOCATION_UNKNOWN,
                                 f"the CRL of {label(issuer)!r} has a bad signature")
    fresh = [c for c in signed if c.next_update_utc is None or at <= c.next_update_utc]
    if not fresh:
        raise CertificateInvalid(Reason.REVOCATION_UNKNOWN,
                                 f"the CRL of {label(issuer)!r} is out of date")
    for crl in fresh:
        entry = crl.get_revoked_certificate_by_serial_number(cert.serial_number)
        if entry is not None and entry.revocation_date_utc <= at:
            raise CertificateInvalid(Reason.REVOKED,
                                     f"{label(cert)!r} was revoked on "
                                     f"{entry.revocation_date_utc:%Y-%m-%d}")


def _check_path(path: list[x509.Certificate], purpose: KeyPurpose, trust: TrustStore,
                at: dt.datetime) -> None:
    for index, cert in enumerate(path):
        what = "certificate" if index == 0 else "CA certificate"
        check_validity(cert, at, what)
        for ext in cert.extensions:
            if ext.critical and ext.oid not in _UNDERSTOOD:
                raise CertificateInvalid(Reason.UNTRUSTED_CHAIN,
                                         f"{label(cert)!r} has an unsupported critical "
                                         f"extension {ext.oid.dotted_string}")
        if index == 0:
            continue
        bc = extension(cert, x509.BasicConstraints)
        if not isinstance(bc, x509.BasicConstraints) or not bc.ca:
            raise CertificateInvalid(Reason.UNTRUSTED_CHAIN,
                                     f"issuer {label(cert)!r} is not a CA")
        if bc.path_length is not None and index - 1 > bc.path_length:
            raise CertificateInvalid(Reason.UNTRUSTED_CHAIN,
                                     f"path length constraint of {label(cert)!r} exceeded")
        ku = extension(cert, x509.KeyUsage)
        if isinstance(ku, x509.KeyUsage) and not ku.key_cert_sign:
            raise CertificateInvalid(Reason.UNTRUSTED_CHAIN,
                                     f"issuer {label(cert)!r} may not sign certificates")
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
    at = at or now()
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
                             f"no path from {label(cert)!r} to a trusted root")
