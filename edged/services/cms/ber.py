"""The outer framing of a large BER value read as a stream of chunks (X.690), never whole.

Only what streaming the encryptedContent of an (Auth)EnvelopedData needs: identifier and
length octets, end-of-contents, small elements returned as their encoding (asn1crypto parses
them), and the content of an OCTET STRING, primitive or constructed, a slice at a time.
Everything else in a CMS structure is parsed by asn1crypto. Malformed input raises BerError.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

__all__ = ["MAX_DEPTH", "BerError", "ChunkReader", "Frame", "Header", "octet_string_chunks",
           "read_element", "read_header"]

UNIVERSAL, CONTEXT = 0, 2
OCTET_STRING = 4
MAX_DEPTH = 16  # nested constructed values inside one element (a peer controls the nesting)
_MAX_LENGTH_OCTETS = 8  # lengths up to 2^64: more is refused, not allocated
_MAX_TAG_OCTETS = 4  # high tag numbers up to 2^28


class BerError(ValueError):
    """The bytes are not well-formed BER (says what and at which offset)."""


class ChunkReader:
    """Bytes from an iterable of chunks, read in order; `offset` counts what was consumed."""

    def __init__(self, chunks: Iterable[bytes | bytearray | memoryview]) -> None:
        self._chunks = iter(chunks)
        self._view = memoryview(b"")
        self.offset = 0

    def _fill(self) -> bool:
        while not self._view:
            chunk = next(self._chunks, None)
            if chunk is None:
                return False
            self._view = memoryview(chunk).cast("B")
        return True

    def at_end(self) -> bool:
        """True when every chunk has been consumed."""
        return not self._fill()

    def read_some(self, limit: int) -> memoryview:
        """Between 1 and `limit` bytes, without copying; BerError at the end of the input."""
        if not self._fill():
            raise BerError(f"truncated at offset {self.offset}")
        piece, self._view = self._view[:limit], self._view[limit:]
        self.offset += len(piece)
        return piece

    def read(self, size: int) -> bytes:
        """Exactly `size` bytes (a copy: for small values); BerError when fewer are left."""
        parts = []
        while size:
            piece = self.read_some(size)
            parts.append(piece)
            size -= len(piece)
        return b"".join(parts)


@dataclass(frozen=True)
class Header:
    """Identifier and length octets of one value; length None is the indefinite form."""

    cls: int
    constructed: bool
    tag: int
    length: int | None
    encoding: bytes

    @property
    def is_end_of_contents(self) -> bool:
        """The end-of-contents octets 00 00 (X.690 §8.1.5)."""
        return self.encoding == b"\x00\x00"


def read_header(reader: ChunkReader) -> Header:
    """The next value's identifier (X.690 §8.1.2) and length (§8.1.3) octets."""
    at = reader.offset
    first = reader.read(1)[0]
    encoding = bytearray((first,))
    cls, constructed, tag = first >> 6, bool(first & 0x20), first & 0x1F
    if tag == 0x1F:  # §8.1.2.4: high tag number, base 128, bit 8 set on all but the last
        tag = 0
        for count in range(_MAX_TAG_OCTETS + 1):
            octet = reader.read(1)[0]
            encoding.append(octet)
            if count == _MAX_TAG_OCTETS or (count == 0 and octet == 0x80):
                raise BerError(f"bad high tag number at offset {at}")  # §8.1.2.4.2 c)
            tag = tag << 7 | octet & 0x7F
            if not octet & 0x80:
                break
    octet = reader.read(1)[0]
    encoding.append(octet)
    length: int | None
    if octet < 0x80:  # §8.1.3.4: short form
        length = octet
    elif octet == 0x80:  # §8.1.3.6: indefinite form, constructed values only (§8.1.3.2 a)
        if not constructed:
            raise BerError(f"indefinite length on a primitive value at offset {at}")
        length = None
    else:  # §8.1.3.5: long form; 0xFF is reserved (§8.1.3.5 c)
        count = octet & 0x7F
        if octet == 0xFF or count > _MAX_LENGTH_OCTETS:
            raise BerError(f"unsupported length form at offset {at}")
        octets = reader.read(count)
        encoding += octets
        length = int.from_bytes(octets, "big")
    header = Header(cls, constructed, tag, length, bytes(encoding))
    if cls == UNIVERSAL and tag == 0 and not header.is_end_of_contents:
        raise BerError(f"bad end-of-contents octets at offset {at}")
    return header


class Frame:
    """The children of a constructed value being read: definite (by offset) or up to EOC."""

    def __init__(self, reader: ChunkReader, header: Header) -> None:
        if not header.constructed:
            raise BerError(f"expected a constructed value at offset {reader.offset}")
        self._reader = reader
        self._end = None if header.length is None else reader.offset + header.length
        self.done = False

    def next(self) -> Header | None:
        """The next child's header, or None after the last child (its EOC read, if any)."""
        if self.done:
            return None
        reader = self._reader
        if self._end is not None:
            if reader.offset > self._end:
                raise BerError(f"a value overruns its enclosing value at offset {self._end}")
            if reader.offset == self._end:
                self.done = True
                return None
        header = read_header(reader)
        if header.is_end_of_contents:
            if self._end is not None:  # §8.1.5: EOC closes indefinite-length values only
                raise BerError(f"end-of-contents in a definite-length value at offset "
                               f"{reader.offset - 2}")
            self.done = True
            return None
        if self._end is not None and reader.offset + (header.length or 0) > self._end:
            raise BerError(f"a value overruns its enclosing value at offset {self._end}")
        return header

    def finish(self) -> None:
        """Require that no child is left (each child has been read whole)."""
        if self.next() is not None:
            raise BerError(f"unexpected extra value before offset {self._reader.offset}")


def read_element(reader: ChunkReader, header: Header, limit: int, depth: int = 0) -> bytes:
    """The whole encoding of the value whose header was just read, at most `limit` bytes."""
    if header.length is not None:
        if header.length > limit:
            raise BerError(f"a value of {header.length} bytes is over the {limit} expected")
        return header.encoding + reader.read(header.length)
    if depth >= MAX_DEPTH:
        raise BerError("values nested too deeply")
    parts = [header.encoding]
    size = len(header.encoding)
    frame = Frame(reader, header)
    while (child := frame.next()) is not None:
        part = read_element(reader, child, limit - size, depth + 1)
        parts.append(part)
        size += len(part)
    parts.append(b"\x00\x00")
    return b"".join(parts)


def octet_string_chunks(reader: ChunkReader, header: Header, chunk: int,
                        depth: int = 0) -> Iterator[memoryview]:
    """The contents of an OCTET STRING (X.690 §8.7), a slice of at most `chunk` at a time.

    Primitive (§8.7.2) or constructed from OCTET STRING segments (§8.7.3.2), themselves
    primitive or constructed, of definite or indefinite length (what `openssl cms -stream`
    writes). The value's own tag may be context-specific (an IMPLICIT tag); a segment's may not.
    """
    if not header.constructed:
        remaining = header.length or 0  # read_header gives a primitive value a length
        while remaining:
            piece = reader.read_some(min(remaining, chunk))
            remaining -= len(piece)
            yield piece
        return
    if depth >= MAX_DEPTH:
        raise BerError("OCTET STRING segments nested too deeply")
    frame = Frame(reader, header)
    while (segment := frame.next()) is not None:
        if segment.cls != UNIVERSAL or segment.tag != OCTET_STRING:
            raise BerError(f"a segment of a constructed OCTET STRING is not an OCTET STRING "
                           f"(before offset {reader.offset})")
        yield from octet_string_chunks(reader, segment, chunk, depth + 1)
