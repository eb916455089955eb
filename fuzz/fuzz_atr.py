"""ATR parser (ISO 7816-3 §8): the structure, TCK, and every derived property."""

from __future__ import annotations

from collections.abc import Iterator

import atheris

with atheris.instrument_imports(include=["bifente.apdu"]):
    from bifente.apdu.atr import Atr
    from bifente.apdu.errors import MalformedData

from fuzz.common import ContractBroken, main
from fuzz.seeds import atrs

_PROPERTIES = ("convention", "protocols", "fi", "di", "f_max_hz", "etu_clocks", "specific_mode",
               "guard_time_n", "wi", "ifsc")


def target(data: bytes) -> None:
    """Parse, read every property, describe; a parsed ATR must encode back to its bytes."""
    atr = Atr.parse(data)
    for name in _PROPERTIES:
        getattr(atr, name)
    atr.describe()
    repr(atr)
    if atr.to_bytes() != data:
        raise ContractBroken("ATR does not round-trip")


def seeds() -> Iterator[bytes]:
    """The simulated cards' ATRs and a few real ones."""
    yield from atrs()


if __name__ == "__main__":
    main("atr", target, (MalformedData,), seeds)
