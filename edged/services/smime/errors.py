"""The S/MIME message errors (the CMS errors pass through unchanged)."""

from __future__ import annotations

from collections.abc import Sequence

from bifente.edged.services.cms import CmsError

__all__ = ["AttachmentTooLarge", "DecryptorNeeded", "MalformedMessage", "MessageTooLarge",
           "NotEncrypted", "NotSigned", "SenderMismatch", "SmimeError"]


class SmimeError(CmsError):
    """Base of the S/MIME message errors (CMS errors pass through unchanged)."""


class MalformedMessage(SmimeError, ValueError):
    """The message's MIME structure is not a valid S/MIME message (says where)."""


class DecryptorNeeded(SmimeError, ValueError):
    """An encrypted layer was met and the caller gave no decryptor (no card to open it)."""


class AttachmentTooLarge(SmimeError):
    """An attachment is over the configured limit."""

    def __init__(self, name: str, size: int, limit: int) -> None:
        self.name = name
        self.size = size
        self.limit = limit
        super().__init__(f"attachment {name!r} is {size} bytes, over the limit of {limit}")


class MessageTooLarge(SmimeError):
    """The raw message is over the configured limit (refused before parsing)."""

    def __init__(self, size: int, limit: int) -> None:
        self.size = size
        self.limit = limit
        super().__init__(f"message of {size} bytes is over the limit of {limit}")


class NotEncrypted(SmimeError):
    """The message was sent in clear where encryption is required (M1)."""


class NotSigned(SmimeError):
    """The message carries no signature where one is required (M4)."""


class SenderMismatch(SmimeError):
    """The From address is not an address of the signer's certificate (RFC 8550 §3)."""

    def __init__(self, sender: str, certificate_addresses: Sequence[str]) -> None:
        self.sender = sender
        self.certificate_addresses = tuple(certificate_addresses)
        super().__init__(f"the message is from {sender!r} but signed with a certificate "
                         f"for {', '.join(self.certificate_addresses) or 'no address'}")
