"""What the CMS modules share: the content cap, ContentInfo (RFC 5652 §3) loading, parse errors."""

from __future__ import annotations

from asn1crypto import cms
from asn1crypto import parser as asn1_parser
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from bifente.edged.services.cms.errors import MalformedCms

__all__ = ["DEFAULT_MAX_CONTENT", "PARSE_ERRORS", "asn1_cert", "content_type_of", "load"]

DEFAULT_MAX_CONTENT = 50 * 1024 * 1024  # bytes of content signed, encrypted or decrypted

# asn1crypto parses lazily: a malformed field raises ValueError/TypeError where it is read.
PARSE_ERRORS = (ValueError, TypeError, KeyError, IndexError, AttributeError,
                x509.InvalidVersion)


def asn1_cert(cert: x509.Certificate) -> asn1_x509.Certificate:
    """The certificate as asn1crypto reads it (to name it in a CMS structure)."""
    return asn1_x509.Certificate.load(cert.public_bytes(Encoding.DER))


def content_type_of(der: bytes) -> str:
    """The contentType of a ContentInfo (RFC 5652 §3), read without parsing its content."""
    start, end = asn1_parser._parse(der, len(der), 0, lengths_only=True)
    if der[0] != 0x30 or end != len(der):
        raise ValueError("not a DER ContentInfo")
    oid_end = asn1_parser._parse(der, end, start, lengths_only=True)[1]
    return str(cms.ContentType.load(der[start:oid_end]).native)


def load(der: bytes, expected: set[str]) -> cms.ContentInfo:
    """The ContentInfo of `der`; MalformedCms unless its contentType is one of `expected`."""
    info = cms.ContentInfo.load(der, strict=True)
    kind = info["content_type"].native
    if kind not in expected:
        raise MalformedCms(f"expected {' or '.join(sorted(expected))}, found {kind}")
    return info
