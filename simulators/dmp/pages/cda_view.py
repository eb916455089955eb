"""A stored CDA document as the patient pages show it (HL7 CDA R2 header and body)."""

from __future__ import annotations

import binascii
from dataclasses import dataclass, replace

from bifente.simulators.dmp import cda
from bifente.simulators.dmp.pages.display import when_hl7

__all__ = ["CdaView", "read_cda"]

N = "{urn:hl7-org:v3}"


@dataclass(frozen=True)
class CdaView:
    """What the pages show of a stored CDA: its header, and a text, a PDF or sections."""

    title: str
    author: str
    date: str
    media_type: str
    text: str | None = None  # a text/plain nonXMLBody
    data: bytes | None = None  # any other nonXMLBody (a PDF)
    sections: tuple[tuple[str, str], ...] = ()  # a structured body: (title, text) each


def read_cda(data: bytes) -> CdaView:
    """Title, author, date and a body (text, or PDF bytes) from a stored CDA."""
    root = cda.parse_xml(data)  # stored documents passed the D7 check; no DTD is ever expanded
    title = root.find(N + "title")
    person = root.find(f"{N}author/{N}assignedAuthor/{N}assignedPerson/{N}name")
    when = root.find(N + "effectiveTime")
    header = CdaView(
        title="".join(title.itertext()) if title is not None else "",
        author=" ".join(t.strip() for t in person.itertext() if t.strip())
        if person is not None else "",
        date=when_hl7(when.get("value") if when is not None else ""), media_type="text/xml")
    text = root.find(f"{N}component/{N}nonXMLBody/{N}text")
    if text is not None:
        media = text.get("mediaType", "")
        content = text.text or ""
        raw = binascii.a2b_base64("".join(content.split())) if text.get(
            "representation") == "B64" else content.encode("utf-8")
        if media == "text/plain":
            return replace(header, media_type=media, text=raw.decode("utf-8", "replace"))
        return replace(header, media_type=media, data=raw)
    sections = []
    for section in root.iter(N + "section"):
        heading = section.find(N + "title")
        body = section.find(N + "text")
        sections.append(("".join(heading.itertext()) if heading is not None else "",
                         "".join(body.itertext()) if body is not None else ""))
    return replace(header, sections=tuple(sections))
