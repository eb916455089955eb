"""A multipart entity split on its delimiters (RFC 2046 §5.1.1), its large bodies left in place."""

from __future__ import annotations

import itertools
from email.message import EmailMessage, Message
from email.parser import BytesParser

from bifente.edged.services.smime.mime import BLANK_LINE, POLICY, SPLICE_MIN

__all__ = ["before_line_break", "delimiters", "tree"]


def delimiters(entity: bytes | bytearray, dash: bytes, start: int) -> list[tuple[int, int, bool]]:
    """(start, end of line, is close-delimiter) of each boundary line (RFC 2046 §5.1.1)."""
    found = []
    pos = start
    while (at := entity.find(dash, pos)) >= 0:
        pos = at + len(dash)
        if at != start and entity[at - 1:at] != b"\n":
            continue  # not at the start of a line
        eol = entity.find(b"\n", pos)
        eol = len(entity) if eol < 0 else eol + 1
        rest = entity[pos:eol].rstrip(b"\r\n")
        close = rest.startswith(b"--")
        if (rest[2:] if close else rest).strip(b" \t"):
            continue  # a longer boundary that starts with ours
        found.append((at, eol, close))
        if close:
            break
    return found


def before_line_break(entity: bytes | bytearray, end: int) -> int:
    """Where the line break before the delimiter at `end` starts (`end` when there is none)."""
    # The line break before a delimiter belongs to the delimiter (RFC 2046 §5.1.1).
    return end - 2 if entity[end - 2:end] == b"\r\n" else end - 1 \
        if entity[end - 1:end] == b"\n" else end



_MAX_TREE_DEPTH = 8


def tree(raw: bytes | bytearray) -> tuple[EmailMessage, dict[int, tuple[int, int]]] | None:
    """parse(raw), multiparts split on their delimiters with bytes.find (RFC 2046 §5.1.1).

    Large base64 attachment bodies are not copied: their (start, end) in `raw` is returned
    by id of the part. None when the entity is not plain (message/* parts, a part without
    header fields, a missing delimiter): the caller then uses email's full parser.
    """
    spans: dict[int, tuple[int, int]] = {}
    entity = _subtree(raw, 0, len(raw), spans, 0)
    return None if entity is None else (entity, spans)


def _subtree(raw: bytes | bytearray, start: int, end: int, spans: dict[int, tuple[int, int]],
             depth: int) -> EmailMessage | None:
    if depth > _MAX_TREE_DEPTH or raw[start:start + 1] in (b"\r", b"\n"):
        return None
    blank = BLANK_LINE.search(raw, start, end)
    if blank is None:
        return None
    part = BytesParser(policy=POLICY).parsebytes(raw[start:blank.end()], headersonly=True)
    assert isinstance(part, EmailMessage)
    body = blank.end()
    if part.get_content_maintype() == "message":
        return None
    if not part.is_multipart() and part.get_content_maintype() != "multipart":
        large = end - body >= SPLICE_MIN and part.is_attachment() and str(
            part.get("Content-Transfer-Encoding", "")).strip().lower() == "base64"
        if large:
            spans[id(part)] = (body, end)
            part.set_payload("")
        else:
            part.set_payload(raw[body:end].decode("ascii", "surrogateescape"))
        return part
    boundary = part.get_boundary()
    if boundary is None:
        return None
    marks = delimiters(raw, b"--" + boundary.encode("ascii", "surrogateescape"), body)
    if len(marks) < 2 or not marks[-1][2] or marks[-1][1] > end:
        return None
    children: list[Message[str, str] | str] = []
    for (_, part_start, _), (next_at, _, _) in itertools.pairwise(marks):
        child = _subtree(raw, part_start, before_line_break(raw, next_at), spans, depth + 1)
        if child is None:
            return None
        children.append(child)
    part.set_payload(children)
    first = marks[0][0]
    if first > body:
        part.preamble = raw[body:before_line_break(raw, first)].decode("ascii",
                                                                         "surrogateescape")
    return part
