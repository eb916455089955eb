"""How the pages show the API's values: escaped, dates the French way, authors and types."""

from __future__ import annotations

import datetime as dt
from html import escape
from typing import Any

from simulators.dmp.pages.labels import type_fr

__all__ = ["JsonObject", "author_of", "e", "type_of", "when_hl7", "when_iso"]

# An answer of the JSON API (docs/dmp-api.md), decoded: the pages read the fields they show.
JsonObject = dict[str, Any]


def e(value: object) -> str:
    """The value as HTML text or attribute value (None shows as nothing)."""
    return escape("" if value is None else str(value), quote=True)


def when_iso(value: object) -> str:
    """2026-01-31T12:00:00Z -> 31/01/2026 12:00 UTC."""
    try:
        t = dt.datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return str(value or "")
    return t.strftime("%d/%m/%Y %H:%M UTC")


def when_hl7(value: object) -> str:
    """20260131120000+0000 -> 31/01/2026 12:00."""
    text = str(value or "")
    if len(text) >= 8 and text[:8].isdigit():
        out = f"{text[6:8]}/{text[4:6]}/{text[0:4]}"
        if len(text) >= 12 and text[8:12].isdigit():
            out += f" {text[8:10]}:{text[10:12]}"
        return out
    return text


def author_of(doc: JsonObject) -> str:
    """A document's author as the patient reads it ("Vous" for their own)."""
    author = doc.get("author") or {}
    if author.get("kind") == "patient":
        return "Vous"
    return str(author.get("name") or author.get("id") or "")


def type_of(doc: JsonObject) -> str:
    """A document's type in French (the host's name, else its code, when unknown)."""
    return type_fr(str(doc.get("type_code", "")), str(doc.get("type_name") or ""))
