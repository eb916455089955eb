"""The CMS and S/MIME errors, and Reason: why a signature or certificate was refused."""

from __future__ import annotations

import enum

__all__ = ["CertificateInvalid", "CmsError", "ContentTooLarge", "DecryptionFailed", "MalformedCms",
           "NotForThisRecipient", "Reason", "SignatureInvalid", "SigningFailed", "Unstreamable",
           "UnsuitableRecipient", "UnsupportedAlgorithm"]


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



class Unstreamable(Exception):
    """The input must be read whole instead (raised by a chunk source; decrypt_stream does)."""
