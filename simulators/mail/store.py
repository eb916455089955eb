"""Accounts and Maildir mailboxes under the simulator's data folder (data_dir/<domain>/<local>/)."""

from __future__ import annotations

import email.parser
import email.policy
import hashlib
import hmac
import logging
import mailbox
import os
import re
import threading
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

from bifente.simulators.mail.addresses import Address

__all__ = ["Account", "AccountKind", "MailStore"]

log = logging.getLogger(__name__)
SEEN_FILE = ".message-ids"  # SHA-256 of every Message-ID delivered to the mailbox, one a line
_KEY_ORDER = re.compile(r"^(\d+)\.M(\d+)P\d+Q(\d+)\.")  # mailbox.Maildir's unique names


def _message_id(text: bytes) -> str | None:
    """The Message-ID of a message (its header only is parsed), normalised; None if absent."""
    end = text.find(b"\n\n")
    head = email.parser.BytesHeaderParser(policy=email.policy.compat32).parsebytes(
        text[:end + 1] if end >= 0 else text)
    value = head.get("Message-ID")
    return " ".join(str(value).split()) or None if value else None


class AccountKind(StrEnum):
    """Who owns a mailbox."""

    PROFESSIONAL = "professional"  # from a CPS profile; sends with the CPS card
    PATIENT = "patient"  # <INS>@patient.<domain>, made on demand
    STRUCTURE = "structure"  # structure@<domain>: the structure's proxy (M8), sends for its domain


@dataclass(frozen=True)
class Account:
    """A mailbox owner and its (test) password."""

    address: Address
    kind: AccountKind
    password: str = field(repr=False)
    profile: str | None = None  # the CPS profile of a professional

    def check_password(self, password: str) -> bool:
        """Constant-time password comparison."""
        return hmac.compare_digest(self.password.encode(), password.encode())

    def may_send_as(self, sender: Address) -> bool:
        """A person sends as itself; a structure account sends for anyone of its domain."""
        if self.kind is AccountKind.STRUCTURE:
            return sender.domain == self.address.domain
        return sender == self.address


class MailStore:
    """Maildir folders, one per address; delivery is atomic (tmp/ then new/)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._lock = threading.Lock()  # Maildir's unique-name counter is not thread-safe

    def path(self, address: Address) -> Path:
        """The Maildir folder of an address."""
        return self.root / address.domain / address.local

    def create(self, address: Address) -> None:
        """Make the Maildir (cur/, new/, tmp/, mode 0700) if missing."""
        self.path(address).parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        mailbox.Maildir(self.path(address), create=True)

    def deliver(self, addresses: list[Address], content: bytes) -> list[str]:
        """Store one copy per address (LF line endings, as Maildir keeps them); their keys.

        A Message-ID is delivered at most once per mailbox: a client that retries after a
        crash (it cannot know whether its first try got through) does not duplicate it.
        """
        text = content.replace(b"\r\n", b"\n")
        message_id = _message_id(text)
        keys = []
        with self._lock:
            for a in addresses:
                box = mailbox.Maildir(self.path(a), create=True)
                seen = self.path(a) / SEEN_FILE
                digest = (hashlib.sha256(message_id.encode()).hexdigest()
                          if message_id else None)
                if digest and seen.exists() and digest in seen.read_text().split():
                    log.info("duplicate Message-ID for %s: not delivered again", a.masked)
                    continue
                keys.append(box.add(text))
                if digest:
                    with seen.open("a", encoding="ascii") as f:
                        f.write(digest + "\n")
                        f.flush()
                        os.fsync(f.fileno())
        return keys

    def keys(self, address: Address) -> list[str]:
        """Message keys in delivery order."""
        def order(key: str) -> tuple[int, int, int, str]:
            m = _KEY_ORDER.match(key)
            return (int(m[1]), int(m[2]), int(m[3]), key) if m else (0, 0, 0, key)

        with self._lock:
            return sorted(mailbox.Maildir(self.path(address), create=True).keys(), key=order)

    def read(self, address: Address, key: str) -> bytes:
        """The stored bytes of a message."""
        return mailbox.Maildir(self.path(address), create=False).get_bytes(key)

    def remove(self, address: Address, key: str) -> None:
        """Delete a message (missing is fine)."""
        with self._lock:
            mailbox.Maildir(self.path(address), create=False).discard(key)
