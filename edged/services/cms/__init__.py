"""CMS (RFC 5652) with the CPS card: CAdES-BES signatures, EnvelopedData and AuthEnvelopedData.

Every structure is built and parsed with asn1crypto; cryptography does AES, RSA with public
keys, hashing and the certificate checks. Private-key operations go through two seams,
`Signer` and `Decryptor`, so the same code signs with the card (split hash, PSO DECIPHER) or
with a software key (the structure's seal key, tests). The profile is a STAND-IN for the
unpublished MSSanté S/MIME profile; docs/messaging.md describes it.

The modules, one job each: `errors`, `seams` (Signer, Decryptor and their card and software
keys), `trust` (TrustStore, certificate path validation), `structure` (what they share:
ContentInfo loading, the content cap), `signed` (sign, verify), `enveloped` (encrypt,
decrypt), `streamed` (decrypt_stream, its input read as chunks) and `ber` (the BER framing
`streamed` reads). This package is their public face.
"""

from __future__ import annotations

from bifente.edged.services.cms.enveloped import GcmParameters, decrypt, encrypt, encrypt_stream
from bifente.edged.services.cms.errors import (
    CertificateInvalid,
    CmsError,
    ContentTooLarge,
    DecryptionFailed,
    MalformedCms,
    NotForThisRecipient,
    Reason,
    SignatureInvalid,
    SigningFailed,
    Unstreamable,
    UnsuitableRecipient,
    UnsupportedAlgorithm,
)
from bifente.edged.services.cms.seams import (
    CardDecryptor,
    CardSigner,
    Decryptor,
    Signer,
    SoftwareDecryptor,
    SoftwareSigner,
)
from bifente.edged.services.cms.signed import VerifiedSignature, sign, verify
from bifente.edged.services.cms.streamed import CmsStream, decrypt_stream
from bifente.edged.services.cms.structure import DEFAULT_MAX_CONTENT, content_type_of
from bifente.edged.services.cms.trust import KeyPurpose, TrustStore, validate_certificate

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
    "GcmParameters",
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
