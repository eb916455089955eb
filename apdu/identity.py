"""Patient identifiers: NIR validation, the historical INS-C, the INS, its OID (docs/cards.md)."""

from __future__ import annotations

import hashlib
import re
import unicodedata
from dataclasses import dataclass, field
from enum import StrEnum

__all__ = [
    "Ins",
    "InsAuthority",
    "Nir",
    "compute_ins_c",
    "ins_for",
    "mask_nir",
    "nir_key",
    "normalise_first_name",
    "parse_nir",
]

# ASCII digits only: \d also takes Arabic-Indic and other decimal digits, which int() reads,
# so "1" followed by Arabic-Indic digits passed as a valid, non-ASCII NIR (review, minor).
_NIR_RE = re.compile(r"^([1278])(\d{2})(\d{2})(\d{2}|2[AB])(\d{3})(\d{3})(\d{2})?$", re.ASCII)


def nir_key(first13: str) -> int:
    """NIR key: 97 - (N mod 97), Corsica's 2A read as 19 and 2B as 18 (docs/cards.md)."""
    dept = first13[5:7].upper()
    digits = first13[:5] + {"2A": "19", "2B": "18"}.get(dept, dept) + first13[7:]
    if not digits.isdigit() or len(digits) != 13:
        raise ValueError(f"not a 13-character NIR body: {mask_nir(first13)}")
    return 97 - int(digits) % 97


def mask_nir(nir: str) -> str:
    """A NIR fit for logs and errors: sex and year only (never the full number)."""
    return (nir[:3] + "*" * max(len(nir) - 3, 0)) if nir else ""


@dataclass(frozen=True)
class Nir:
    """A validated NIR (15 characters: 13 + key)."""

    value: str = field(repr=False)

    @property
    def body(self) -> str:
        """The 13 characters without the key."""
        return self.value[:13]

    @property
    def key(self) -> int:
        """The 2-digit key."""
        return int(self.value[13:])

    @property
    def temporary(self) -> bool:
        """Sex digit 7 or 8: a temporary number (NIA), which has no INS-C."""
        return self.value[0] in "78"

    @property
    def sex(self) -> str:
        """'M' or 'F' from the first digit (1/7 male, 2/8 female)."""
        return "M" if self.value[0] in "17" else "F"

    @property
    def department(self) -> str:
        """Department of birth (2 characters, 2A/2B for Corsica, 99 abroad)."""
        return self.value[5:7]

    def formatted(self) -> str:
        """Spaced for people: 1 80 01 75 115 001 42."""
        v = self.value
        return f"{v[0]} {v[1:3]} {v[3:5]} {v[5:7]} {v[7:10]} {v[10:13]} {v[13:]}"

    def __repr__(self) -> str:
        return f"Nir({mask_nir(self.value)!r})"


def parse_nir(text: str, *, key_required: bool = True) -> Nir:
    """Validate a NIR (spaces allowed); raises ValueError saying what is wrong, never echoing it.

    With `key_required=False` a 13-character body gets its computed key appended.
    """
    raw = re.sub(r"[\s.-]", "", text).upper()
    m = _NIR_RE.match(raw)
    if m is None:
        raise ValueError("NIR must be 15 characters: sex 1/2 (7/8 temporary), year, month, "
                         "department (2A/2B for Corsica), commune, order, key")
    month = int(m.group(3))
    if not (1 <= month <= 12 or 20 <= month <= 42 or 50 <= month <= 99):
        raise ValueError(f"NIR month {month:02d} is not a valid month code")
    if m.group(4) == "00":
        raise ValueError("NIR department 00 does not exist")
    expected = nir_key(raw[:13])
    if m.group(7) is None:
        if key_required:
            raise ValueError("NIR key missing (15 characters expected, got 13)")
        raw += f"{expected:02d}"
    elif int(m.group(7)) != expected:
        raise ValueError("NIR key does not match: the number is mistyped")
    return Nir(raw)


def normalise_first_name(first_name: str) -> str:
    """INS-C first-name rule: no accents, non-letters to spaces, upper case, spaces removed."""
    decomposed = unicodedata.normalize("NFKD", first_name)
    plain = "".join(c for c in decomposed if not unicodedata.combining(c))
    letters = "".join(c if "A" <= c.upper() <= "Z" else " " for c in plain)
    return letters.upper().replace(" ", "")


def compute_ins_c(first_name: str, birth_date: str | None, nir: Nir) -> str:
    """The historical INS-C (22 digits) from a beneficiary's data (docs/cards.md, Identifiers).

    `birth_date` is YYYYMMDD (lunar dates allowed) or None. No INS-C for a temporary NIR.
    """
    if nir.temporary:
        raise ValueError("no INS-C for a temporary NIR")
    name10 = normalise_first_name(first_name)[:10].ljust(10)
    if birth_date:
        if not re.fullmatch(r"\d{8}", birth_date):
            raise ValueError("birth date must be YYYYMMDD")
        date6 = birth_date[2:]
    else:
        date6 = "000000"
    seed = (name10 + date6 + nir.body).encode("ascii")
    n = int(hashlib.sha256(seed).hexdigest()[:16], 16)
    body = f"{n:020d}"
    return body + f"{97 - n % 97:02d}"


class InsAuthority(StrEnum):
    """Assigning authorities of the INS (docs/cards.md); test cards carry the test OID."""

    NIR = "1.2.250.1.213.1.4.8"
    NIA = "1.2.250.1.213.1.4.9"
    NIR_TEST = "1.2.250.1.213.1.4.10"
    NIR_DEMO = "1.2.250.1.213.1.4.11"


@dataclass(frozen=True)
class Ins:
    """The INS: the NIR (or NIA) with the OID of its assigning authority."""

    nir: Nir
    oid: InsAuthority

    @property
    def value(self) -> str:
        """The 15-character identifier."""
        return self.nir.value

    @property
    def kind(self) -> str:
        """'NIA' for a temporary number, else 'NIR'."""
        return "NIA" if self.oid is InsAuthority.NIA else "NIR"


def ins_for(nir: Nir, *, environment: str = "production") -> Ins:
    """The INS for a NIR: NIA OID for temporary numbers, test/demo OIDs off production.

    No public OID exists for a test NIA, so a temporary number keeps the NIA OID.
    """
    if nir.temporary:
        return Ins(nir, InsAuthority.NIA)
    oid = {"production": InsAuthority.NIR, "test": InsAuthority.NIR_TEST,
           "demo": InsAuthority.NIR_DEMO}.get(environment)
    if oid is None:
        raise ValueError(f"unknown environment {environment!r}")
    return Ins(nir, oid)
