"""PKCS#15 directory files (ISO 7816-15): ODF, TokenInfo, AODF, PrKDF, CDF, DODF from a card."""

from __future__ import annotations

from collections.abc import Iterator

import atheris

with atheris.instrument_imports(include=["bifente.apdu", "asn1crypto"]):
    from bifente.apdu import pkcs15
    from bifente.apdu.errors import MalformedData

from fuzz.common import main
from fuzz.seeds import card_files

_DECODERS = (pkcs15.decode_odf, pkcs15.decode_token_info, pkcs15.decode_aodf,
             pkcs15.decode_prkdf, pkcs15.decode_cdf, pkcs15.decode_dodf)


def target(data: bytes) -> None:
    """The first byte picks the decoder, the rest is the file as read from the card."""
    if not data:
        return
    decoder = _DECODERS[data[0] % len(_DECODERS)]
    result = decoder(data[1:])
    repr(result)


def seeds() -> Iterator[bytes]:
    """Every card file, offered to every decoder."""
    for f in card_files():
        for i in range(len(_DECODERS)):
            yield bytes((i,)) + f


if __name__ == "__main__":
    main("pkcs15", target, (MalformedData,), seeds)
