"""The audit log's privacy guard: full NIRs found in text, masked; secret-looking names."""

from __future__ import annotations

import functools
import re
from typing import Any

from bifente.apdu.identity import mask_nir, nir_key

__all__ = ["mask_nirs", "masked", "nir_spans", "secret_name"]

# A full NIR: sex, year, month (20-42 and 50-99 are the registry's special months), department
# (2A/2B for Corsica), commune, order, key. 13 characters without the key are not refused:
# too close to millisecond timestamps to tell apart by pattern.
_NIR = re.compile(r"[1278]\d{2}(0[1-9]|1[0-2]|[2-9]\d)(\d{2}|2[AB])\d{6}\d{2}",
                  re.IGNORECASE | re.ASCII)
# Where a NIR written in groups may be split: sex|year|month|department|commune|order|key
# (docs/cards.md, Identifiers). A split elsewhere is another identifier: a Message-ID's
# 12-digit time and a 3-digit PID joined by a dot are not a NIR (D1 of the reliability review).
_NIR_SPLITS = frozenset({1, 3, 5, 7, 10, 13})
# Groups of digits (and the A/B of Corsica) split by one space, dot or dash, standing alone.
_NUMBER_RUN = re.compile(
    r"(?<![0-9A-Za-z])[0-9AB]+(?:[ .\u00a0-][0-9AB]+)*(?![0-9A-Za-z])", re.IGNORECASE)
_GROUP_SEP = re.compile(r"[ .\u00a0-]")
_WHITESPACE = re.compile(r"\s+")
_DIGIT = re.compile(r"\d", re.ASCII)
# A NIR has 15 characters, at most one of them a letter (the A or B of Corsica's 2A/2B).
_NIR_MIN_DIGITS = 14
_NAME_TOKENS = re.compile(r"[A-Z]?[a-z]+|[A-Z]+(?![a-z])|\d+")
_SECRET_TOKENS = frozenset({"pin", "puk", "key", "pwd", "token", "otp"})
_SECRET_WORDS = ("password", "passphrase", "secret", "private")


@functools.lru_cache(maxsize=1024)  # field names come from a small set, on every record
def secret_name(name: str) -> bool:
    """Whether a field name says it holds a PIN, PUK, password, key or the like."""
    lowered = name.lower()
    if any(word in lowered for word in _SECRET_WORDS):
        return True
    return any(t.lower() in _SECRET_TOKENS for t in _NAME_TOKENS.findall(name))


def _is_nir(candidate: str) -> bool:
    # The layout and the key (97 - N mod 97) must both hold: a 15-digit number that fails
    # the key is not a NIR, and masking it would corrupt an innocent identifier.
    if not _NIR.fullmatch(candidate):
        return False
    try:
        return nir_key(candidate[:13]) == int(candidate[13:])
    except ValueError:
        return False


def nir_spans(text: str) -> list[tuple[int, int]]:
    """Where `text` holds a full NIR: the whole text, or a stand-alone run of groups."""
    if len(_DIGIT.findall(text)) < _NIR_MIN_DIGITS:
        return []  # most values: too few digits to hold one (checked on every record)
    if _is_nir(_WHITESPACE.sub("", text)):
        return [(0, len(text))]
    spans = []
    for run in _NUMBER_RUN.finditer(text):
        starts = [run.start()] + [m.end() + run.start() for m in _GROUP_SEP.finditer(run.group())]
        groups = _GROUP_SEP.split(run.group())
        for i in range(len(groups)):  # every run of adjacent groups 15 characters long
            joined, splits = "", set()
            for j in range(i, len(groups)):
                if joined:
                    splits.add(len(joined))
                joined += groups[j]
                if len(joined) >= 15:
                    break
            if len(joined) == 15 and splits <= _NIR_SPLITS and _is_nir(joined):
                spans.append((starts[i], starts[j] + len(groups[j])))
    return spans


def mask_nirs(text: str) -> str:
    """`text` with every full NIR in it masked as bifente.apdu.identity.mask_nir does."""
    for start, end in reversed(nir_spans(text)):
        text = text[:start] + mask_nir(text[start:end]) + text[end:]
    return text


def masked(value: Any, found: list[str], where: str) -> Any:
    """`value` with full NIRs masked at any depth; appends to `found` where one was."""
    # Runs after the record's value check, so types and depth are known to be sound.
    if isinstance(value, bool) or value is None or isinstance(value, float):
        return value
    if isinstance(value, int | str):
        text = str(value)
        safe = mask_nirs(text)
        if safe == text:
            return value
        found.append(where)
        return safe
    if isinstance(value, list | tuple):
        return [masked(v, found, f"{where}[{i}]") for i, v in enumerate(value)]
    return {k: masked(v, found, f"{where}.{k}") for k, v in value.items()}
