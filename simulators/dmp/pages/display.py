"""How the pages show the patient's values: escaped, dates the French way, authors and types."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from html import escape

from bifente.simulators.dmp.pages.labels import type_fr
from bifente.simulators.dmp.rules import DocumentType
from bifente.simulators.dmp.storage import Document

__all__ = ["author_of", "e", "type_of", "when", "when_hl7"]


def e(value: object) -> str:
    """The value as HTML text or attribute value (None shows as nothing)."""
    return escape("" if value is None else str(value), quote=True)


def when(ts: float | None) -> str:
    """A time (seconds since the epoch) -> 31/01/2026 12:00 UTC; None shows as nothing."""
    if ts is None:
        return ""
    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%d/%m/%Y %H:%M UTC")


def when_hl7(value: object) -> str:
    """20260131120000+0000 -> 31/01/2026 12:00."""
    text = str(value or "")
    if len(text) >= 8 and text[:8].isdigit():
        out = f"{text[6:8]}/{text[4:6]}/{text[0:4]}"
        if len(text) >= 12 and text[8:12].isdigit():
            out += f" {text[8:10]}:{text[10:12]}"
        return out
    return text


def author_of(doc: Document) -> str:
    """A document's author as the patient reads it ("Vous" for their own)."""
    if doc.author_kind == "patient":
        return "Vous"
    return doc.author_name or doc.author_id


def type_of(doc: Document, types: Mapping[str, DocumentType]) -> str:
    """A document's type in French (the host's name, else its code, when unknown)."""
    known = types.get(doc.type_code)
    return type_fr(doc.type_code, known.name if known else "")
