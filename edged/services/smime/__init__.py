"""S/MIME 4.0 messages (RFC 8551) signed and encrypted with the CPS card, built with `email`.

Signing gives `multipart/signed` (detached CMS over the canonical CRLF form of the inner
entity); encryption gives `application/pkcs7-mime` (enveloped-data with AES-256-CBC or
authEnveloped-data with AES-256-GCM). The header fields are also copied into the protected
payload (RFC 9788 header protection), so a subject replaced outside is restored inside.
The MSSanté profile is not public: this one is a STAND-IN (docs/messaging.md).

The modules, one job each: `errors`, `mime` (the email policy, the wire form, parsing),
`build` (a plain message), `protect` (signing and encrypting it), `opened` (opening one:
layers, fields, bodies, attachments), with `tree` (a multipart split in place) and `decode`
(base64 bodies decoded from the raw entity) under it. This package is their public face.
"""

from __future__ import annotations

from bifente.edged.services.smime.build import DEFAULT_MAX_ATTACHMENT, Attachment, build_message
from bifente.edged.services.smime.errors import (
    AttachmentTooLarge,
    DecryptorNeeded,
    MalformedMessage,
    MessageTooLarge,
    NotEncrypted,
    NotSigned,
    SenderMismatch,
    SmimeError,
)
from bifente.edged.services.smime.mime import POLICY, to_bytes
from bifente.edged.services.smime.opened import (
    DEFAULT_MAX_MESSAGE,
    EMAIL_ERRORS,
    OpenedMessage,
    open_message,
)
from bifente.edged.services.smime.protect import (
    SMIME_TYPE,
    Mode,
    encrypt_message,
    protect,
    protect_bytes,
    protect_to,
    sign_message,
)

__all__ = [
    "DEFAULT_MAX_ATTACHMENT",
    "DEFAULT_MAX_MESSAGE",
    "EMAIL_ERRORS",
    "POLICY",
    "SMIME_TYPE",
    "Attachment",
    "AttachmentTooLarge",
    "DecryptorNeeded",
    "MalformedMessage",
    "MessageTooLarge",
    "Mode",
    "NotEncrypted",
    "NotSigned",
    "OpenedMessage",
    "SenderMismatch",
    "SmimeError",
    "build_message",
    "encrypt_message",
    "open_message",
    "protect",
    "protect_bytes",
    "protect_to",
    "sign_message",
    "to_bytes",
]
