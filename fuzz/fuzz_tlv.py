"""BER-TLV (ISO 7816-4 §5.2, ISO 8825-1): decode, decode_one, parse, find_path, children."""

from __future__ import annotations

from collections.abc import Iterator

import atheris

with atheris.instrument_imports(include=["bifente.apdu"]):
    from bifente.apdu import tlv
    from bifente.apdu.errors import MalformedData

import contextlib

from fuzz.common import ContractBroken, main
from fuzz.seeds import card_files


def _walk(node: tlv.Tlv, depth: int = 0) -> None:
    if depth > 64 or not node.constructed:
        return
    for child in node.children():
        _walk(child, depth + 1)


def target(data: bytes) -> None:
    """Every decoding entry point; a decoded sequence must re-encode to the same objects."""
    fdp = atheris.FuzzedDataProvider(data)
    path = [fdp.ConsumeIntInRange(1, 0xFFFF) for _ in range(fdp.ConsumeIntInRange(1, 3))]
    rest = fdp.ConsumeBytes(fdp.remaining_bytes())
    with contextlib.suppress(MalformedData):
        tlv.find_path(rest, *path)
    with contextlib.suppress(MalformedData):
        tlv.decode_one(rest)
    items = tlv.decode(rest)
    for item in items:
        _walk(item)
    # Lengths may arrive non-minimal (BER), so the round trip is on values, not bytes.
    if tlv.decode(b"".join(t.to_bytes() for t in items)) != items:
        raise ContractBroken("BER-TLV does not round-trip")
    tlv.Tlv.parse(rest)


def seeds() -> Iterator[bytes]:
    """Card files (every EF of the simulated cards is TLV or ASN.1), behind a 3-byte path."""
    for f in card_files():
        yield b"\x02\x00\x62" + f


if __name__ == "__main__":
    main("tlv", target, (MalformedData,), seeds)
