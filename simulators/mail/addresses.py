"""Mail addresses of the trust space: parsing, patient addresses, masking for logs and replies."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from bifente.apdu.identity import mask_nir

__all__ = [
    "PATIENT_PREFIX",
    "Address",
    "TrustSpace",
    "mask_address",
    "mask_text",
    "parse_address",
]

PATIENT_PREFIX = "patient."  # <INS>@patient.<domain> (docs/messaging.md: <INS>@patient.mssante.fr)
MAX_ADDRESS = 254  # RFC 5321 §4.5.3.1.3 (path 256 with the brackets)
_LOCAL_RE = re.compile(r"^[a-z0-9!#$%&'*+/=?^_`{|}~-]+(\.[a-z0-9!#$%&'*+/=?^_`{|}~-]+)*$")
_LABEL_RE = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
# A NIR-shaped token (docs/cards.md): sex, year, month, department (2A/2B), commune, order, key.
_NIR_TOKEN = re.compile(
    r"(?<![0-9A-Za-z])([12378]\d{2})(\d{2}(?:\d{2}|2[AaBb])\d{8})(?![0-9A-Za-z])")


@dataclass(frozen=True)
class Address:
    """A lower-cased mail address split at its last '@'."""

    local: str
    domain: str

    def __str__(self) -> str:
        return f"{self.local}@{self.domain}"

    @property
    def is_patient(self) -> bool:
        """True for a patient mailbox address (<INS>@patient.<domain>)."""
        return self.domain.startswith(PATIENT_PREFIX)

    @property
    def masked(self) -> str:
        """The address fit for logs and replies: a patient's INS is masked."""
        return f"{mask_nir(self.local)}@{self.domain}" if self.is_patient else str(self)


def parse_address(text: str) -> Address:
    """Parse a plain address (no display name, no quoting); ValueError says what is wrong."""
    raw = text.strip().strip("<>").lower()
    if not raw or len(raw) > MAX_ADDRESS:
        raise ValueError(f"an address has 1 to {MAX_ADDRESS} characters")
    local, at, domain = raw.rpartition("@")
    if not at or not local or len(local) > 64 or not _LOCAL_RE.match(local):
        raise ValueError("not a mail address (local part)")
    labels = domain.split(".")
    if len(labels) < 2 or not all(_LABEL_RE.match(label) for label in labels):
        raise ValueError("not a mail address (domain)")
    return Address(local, domain)


def mask_address(text: str) -> str:
    """Mask an address given as text, valid or not (never echoes a full NIR)."""
    try:
        return parse_address(text).masked
    except ValueError:
        return mask_text(text)


def mask_text(text: str) -> str:
    """Mask every NIR-shaped token in free text (log lines, SMTP replies)."""
    return _NIR_TOKEN.sub(lambda m: m.group(1) + "*" * len(m.group(2)), text)


@dataclass(frozen=True)
class TrustSpace:
    """The whitelist of operator domains that trust each other (docs/messaging.md)."""

    domains: frozenset[str]

    @classmethod
    def of(cls, domains: Iterable[str]) -> TrustSpace:
        """A trust space from domain names (lower-cased)."""
        return cls(frozenset(d.lower().strip(".") for d in domains))

    def operator_of(self, domain: str) -> str | None:
        """The trusted operator domain that serves `domain` (patient.<d> is served by d)."""
        domain = domain.lower()
        if domain in self.domains:
            return domain
        if domain.startswith(PATIENT_PREFIX) and domain[len(PATIENT_PREFIX):] in self.domains:
            return domain[len(PATIENT_PREFIX):]
        return None
