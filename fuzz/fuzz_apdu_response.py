"""Response APDU parser (ISO 7816-4 §5.1): data + SW1 SW2, and the status word's description."""

from __future__ import annotations

from collections.abc import Iterator

import atheris

with atheris.instrument_imports(include=["bifente.apdu"]):
    from bifente.apdu.command import ResponseApdu
    from bifente.apdu.errors import MalformedData, error_for_sw
    from bifente.apdu.sw import describe

from fuzz.common import ContractBroken, main
from fuzz.seeds import card_files


def target(data: bytes) -> None:
    """Parse, describe the status word, map it to an error; the bytes must come back."""
    rsp = ResponseApdu.parse(data)
    describe(rsp.sw)
    error_for_sw(rsp.sw)
    if rsp.to_bytes() != data:
        raise ContractBroken("response APDU does not round-trip")


def seeds() -> Iterator[bytes]:
    """Status words alone and card files with 9000 (what READ BINARY returns)."""
    for sw in ("9000", "6982", "63C2", "6A82", "6CFF", "61FF", "6700"):
        yield bytes.fromhex(sw)
    yield from (f[:256] + b"\x90\x00" for f in card_files())


if __name__ == "__main__":
    main("apdu_response", target, (MalformedData,), seeds)
