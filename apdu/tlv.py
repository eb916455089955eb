"""BER-TLV data objects (ISO/IEC 7816-4 §5.2, X.690 §8.1.2-8.1.3): encode, decode, find.

A tag is an int whose big-endian bytes are the tag field (0x5A, 0x9F36, 0xBF8101). Lengths are
always definite; `decode` caps every length before slicing. Decoding accepts non-minimal long
lengths (81 05) as BER allows, and `to_bytes()` re-encodes them minimally; it accepts EMV-style
two-byte tags with a tag number below 31 (9F02), which strict X.690 forbids but cards send.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from bifente.apdu.errors import MalformedData

__all__ = [
    "DEFAULT_MAX_LENGTH",
    "MAX_TAG_BYTES",
    "Tlv",
    "decode",
    "decode_one",
    "encode",
    "encode_constructed",
    "encode_length",
    "encode_tag",
    "find",
    "find_path",
]

DEFAULT_MAX_LENGTH = 65535  # largest value a short/extended APDU can carry
MAX_TAG_BYTES = 4  # ISO 7816-4 §5.2.2.1 defines tag fields of up to three bytes; we allow four
MAX_LENGTH_BYTES = 4  # 84 xx xx xx xx; longer length fields are refused (ISO 7816-4 §5.2.2.2)
_PADDING = (0x00, 0xFF)  # ISO 7816-4 §5.2.2: may occur before, between or after BER-TLV objects
_CONSTRUCTED = 0x20  # bit 6 of the first tag byte (X.690 §8.1.2.5)
_MULTI_BYTE_TAG = 0x1F  # bits 5-1 all set: tag number follows (X.690 §8.1.2.4)
_MORE = 0x80  # bit 8 of a subsequent tag byte: another byte follows (X.690 §8.1.2.4.2)
_INDEFINITE = 0x80  # X.690 §8.1.3.6; not allowed in ISO 7816-4


def _tag_bytes(tag: int) -> bytes:
    """The tag field for `tag`; raises ValueError if it is not a well-formed BER tag."""
    if not isinstance(tag, int) or tag <= 0:
        raise ValueError(f"tag must be a positive int, got {tag!r}")
    size = (tag.bit_length() + 7) // 8
    if size > MAX_TAG_BYTES:
        raise ValueError(f"tag {tag:X} is longer than {MAX_TAG_BYTES} bytes")
    raw = tag.to_bytes(size, "big")
    if raw[0] == 0xFF:  # ISO 7816-4 §5.2.2.1: 00 and FF are invalid first tag bytes
        raise ValueError(f"tag {tag:X}: FF is not a valid first tag byte")
    if raw[0] & _MULTI_BYTE_TAG != _MULTI_BYTE_TAG:
        if size != 1:
            raise ValueError(f"tag {tag:X}: first byte {raw[0]:02X} announces a one-byte tag")
        return raw
    if size == 1:
        raise ValueError(f"tag {tag:X}: first byte announces more tag bytes")
    if any(b & _MORE == 0 for b in raw[1:-1]) or raw[-1] & _MORE:
        raise ValueError(f"tag {tag:X}: only the last subsequent byte may have bit 8 clear")
    return raw


def encode_tag(tag: int) -> bytes:
    """Tag field bytes for `tag`; ValueError if `tag` is not a valid BER tag of 1-4 bytes."""
    return _tag_bytes(tag)


def encode_length(n: int) -> bytes:
    """Definite length field: one byte below 0x80, else 81/82/83/84 and the big-endian count."""
    if n < 0:
        raise ValueError(f"length must not be negative, got {n}")
    if n < 0x80:
        return bytes((n,))
    size = (n.bit_length() + 7) // 8
    if size > MAX_LENGTH_BYTES:
        raise ValueError(f"length {n} does not fit in {MAX_LENGTH_BYTES} length bytes")
    return bytes((0x80 | size,)) + n.to_bytes(size, "big")


def encode(tag: int, value: bytes) -> bytes:
    """One BER-TLV object: tag, definite length, value."""
    value = bytes(value)
    return _tag_bytes(tag) + encode_length(len(value)) + value


def encode_constructed(tag: int, *children: bytes) -> bytes:
    """A constructed object whose value is the concatenation of already-encoded `children`."""
    if not _tag_bytes(tag)[0] & _CONSTRUCTED:
        raise ValueError(f"tag {tag:X} is primitive; a constructed tag has bit 6 set")
    return encode(tag, b"".join(bytes(c) for c in children))


@dataclass(frozen=True)
class Tlv:
    """One BER-TLV data object; the value may hold health data, so it stays out of repr."""

    tag: int
    value: bytes = field(default=b"", repr=False)

    def __post_init__(self) -> None:
        _tag_bytes(self.tag)
        object.__setattr__(self, "value", bytes(self.value))

    @property
    def constructed(self) -> bool:
        """True when bit 6 of the first tag byte is set (X.690 §8.1.2.5)."""
        return bool(_tag_bytes(self.tag)[0] & _CONSTRUCTED)

    def to_bytes(self) -> bytes:
        """Render tag, minimal definite length and value."""
        return encode(self.tag, self.value)

    def children(self) -> tuple[Tlv, ...]:
        """Decode the value of a constructed object; MalformedData if primitive or malformed."""
        if not self.constructed:
            raise MalformedData(f"tag {self.tag:X} is primitive and has no children")
        # A child can never be longer than its parent's value, which was capped on decode.
        return decode(self.value, max_length=len(self.value))

    @classmethod
    def parse(cls, raw: bytes, *, max_length: int = DEFAULT_MAX_LENGTH) -> Tlv:
        """Parse exactly one object filling `raw`; MalformedData on anything else."""
        tlv, used = decode_one(raw, max_length=max_length)
        if used != len(raw):
            raise MalformedData(f"{len(raw) - used} trailing bytes after TLV at offset {used}")
        return tlv

    def __repr__(self) -> str:
        return f"Tlv({self.tag:X}, len={len(self.value)})"


def _decode_at(data: bytes, pos: int, max_length: int) -> tuple[Tlv, int]:
    """Decode one object starting at `pos`; return it and the offset just past it."""
    n = len(data)
    start = pos
    first = data[pos]
    if first in _PADDING:
        raise MalformedData(f"invalid first tag byte {first:02X} at offset {pos}")
    pos += 1
    if first & _MULTI_BYTE_TAG == _MULTI_BYTE_TAG:
        while True:
            if pos - start >= MAX_TAG_BYTES:
                raise MalformedData(f"tag longer than {MAX_TAG_BYTES} bytes at offset {start}")
            if pos >= n:
                raise MalformedData(f"truncated tag at offset {start}")
            more = data[pos] & _MORE
            pos += 1
            if not more:
                break
    tag = int.from_bytes(data[start:pos], "big")

    if pos >= n:
        raise MalformedData(f"missing length for tag {tag:X} at offset {pos}")
    length = data[pos]
    len_at = pos
    pos += 1
    if length == _INDEFINITE:
        raise MalformedData(f"indefinite length for tag {tag:X} at offset {len_at}")
    if length > 0x80:
        count = length & 0x7F
        if count > MAX_LENGTH_BYTES:
            raise MalformedData(
                f"{count} length bytes for tag {tag:X} at offset {len_at} (max {MAX_LENGTH_BYTES})"
            )
        if pos + count > n:
            raise MalformedData(f"truncated length for tag {tag:X} at offset {len_at}")
        length = int.from_bytes(data[pos:pos + count], "big")
        pos += count
    # Cap before touching the value (STYLE habit 6).
    if length > max_length:
        raise MalformedData(
            f"length {length} of tag {tag:X} at offset {len_at} exceeds the cap of {max_length}"
        )
    if pos + length > n:
        raise MalformedData(
            f"truncated value for tag {tag:X} at offset {pos}: need {length}, have {n - pos}"
        )
    return Tlv(tag, data[pos:pos + length]), pos + length


def decode_one(data: bytes, *, max_length: int = DEFAULT_MAX_LENGTH) -> tuple[Tlv, int]:
    """Decode the object at the start of `data` (no padding skipped); return it and bytes used."""
    data = bytes(data)
    if not data:
        raise MalformedData("no TLV: empty input")
    return _decode_at(data, 0, max_length)


def decode(data: bytes, *, max_length: int = DEFAULT_MAX_LENGTH) -> tuple[Tlv, ...]:
    """Decode concatenated objects, skipping 00/FF padding before, between and after them."""
    data = bytes(data)
    out: list[Tlv] = []
    pos, n = 0, len(data)
    while pos < n:
        if data[pos] in _PADDING:  # ISO 7816-4 §5.2.2
            pos += 1
            continue
        tlv, pos = _decode_at(data, pos, max_length)
        out.append(tlv)
    return tuple(out)


def find(tlvs: tuple[Tlv, ...] | list[Tlv], tag: int) -> Tlv | None:
    """The first top-level object with `tag`, or None."""
    return next((t for t in tlvs if t.tag == tag), None)


def find_path(data: bytes, *tags: int, max_length: int = DEFAULT_MAX_LENGTH) -> bytes | None:
    """Value at `tags` (first match at each level), descending constructed objects, or None.

    None also when an intermediate tag is primitive; MalformedData when the bytes do not decode.
    """
    if not tags:
        raise ValueError("find_path needs at least one tag")
    level = decode(data, max_length=max_length)
    for tag in tags[:-1]:
        parent = find(level, tag)
        if parent is None or not parent.constructed:
            return None
        level = parent.children()
    last = find(level, tags[-1])
    return None if last is None else last.value
