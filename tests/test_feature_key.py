"""docs/features.md, the key to the feature numbers the code cites, is whole and points at
files that exist."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
KEY = (ROOT / "docs" / "features.md").read_text(encoding="utf-8")


def test_every_feature_number_has_one_line() -> None:
    ids = re.findall(r"^\| ([MDT]\d+) \|", KEY, re.M)
    expected = ([f"M{i}" for i in range(1, 9)] + [f"D{i}" for i in range(1, 22)]
                + [f"T{i}" for i in range(1, 7)])
    assert ids == expected


def test_the_places_named_exist() -> None:
    places = re.findall(r"`((?:apdu|contracts|edged|firmware|simulators|tests)/[^`]*)`", KEY)
    assert places, "the key names where each feature lives"
    assert [p for p in places if not (ROOT / p).exists()] == []
