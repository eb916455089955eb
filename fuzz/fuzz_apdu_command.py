"""Command APDU parser (ISO 7816-4 §5.1): parse, and re-encode what parses to the same bytes."""

from __future__ import annotations

from collections.abc import Iterator

import atheris

with atheris.instrument_imports(include=["bifente.apdu"]):
    from bifente.apdu.command import CommandApdu
    from bifente.apdu.errors import MalformedData

from fuzz.common import ContractBroken, main


def target(data: bytes) -> None:
    """Parse; a parsed APDU must encode back to exactly its input (one encoding per case)."""
    apdu = CommandApdu.parse(data)
    if apdu.to_bytes() != data:
        raise ContractBroken("command APDU does not round-trip")


def seeds() -> Iterator[bytes]:
    """Cases 1-4 short and extended, and every APDU the CPS and Vitale sessions send."""
    yield from (bytes.fromhex(h) for h in (
        "00A4040C", "00B0000000", "00A4040C07A0000000040101", "00A4040C07A000000004010100",
        "00B000000000FFFF", "002A9E9A000020" + "00" * 32 + "0000",
        "0020000108" + "31" * 4 + "FF" * 4,
        "00CB3FFF0A4D087FFF05BF810183800000"))


if __name__ == "__main__":
    main("apdu_command", target, (MalformedData,), seeds)
