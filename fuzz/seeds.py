"""Seed corpora built from the project's own test vectors and simulated cards."""

from __future__ import annotations

import json
from collections.abc import Iterator
from functools import cache

from fuzz.common import ROOT


@cache
def card_files() -> tuple[bytes, ...]:
    """Every EF and record of the simulated CPS3 and Vitale cards (real card data)."""
    from bifente.simulators.cardos.fs import DF, EF, RecordEF
    from bifente.simulators.cps3.card import Cps3Card
    from bifente.simulators.vitale.card import Vitale2Card as VitaleCard

    out: list[bytes] = []
    for card in (Cps3Card("gp"), Cps3Card("nurse"), VitaleCard("adult"), VitaleCard("family")):
        for df in card.mf.walk():
            assert isinstance(df, DF)
            for node in df.children.values():
                if isinstance(node, EF) and node.data:
                    out.append(node.data)
                elif isinstance(node, RecordEF):
                    out.extend(r for r in node.records if r)
    return tuple(out)


@cache
def atrs() -> tuple[bytes, ...]:
    """ATRs of the simulated cards plus classic real-world ones."""
    from bifente.simulators.cps3.card import Cps3Card
    from bifente.simulators.vitale.card import Vitale2Card as VitaleCard

    return (Cps3Card("gp").atr, VitaleCard("adult").atr,
            bytes.fromhex("3B6D000080318065B08905017F8F4C8200"),
            bytes.fromhex("3BFF9600008131804380318065B0850300EF120FFF82900073"),
            bytes.fromhex("3F6525082204689000"))


def link_vectors() -> dict:
    """docs/link-vectors.json, the frames both codecs are checked against."""
    return json.loads((ROOT / "docs" / "link-vectors.json").read_text(encoding="utf-8"))


def link_frames() -> Iterator[bytes]:
    """Every whole frame of the link vectors, and a stream of all of them."""
    vectors = link_vectors()
    frames = [bytes.fromhex(f["hex"]) for f in vectors["frames"]]
    yield from frames
    yield b"".join(frames)
    for group in ("streams", "expire"):
        yield from (bytes.fromhex(s["hex"]) for s in vectors[group])


def link_payloads() -> Iterator[bytes]:
    """(type byte + payload) of every good and bad payload vector."""
    vectors = link_vectors()
    types = vectors["types"]
    for f in vectors["frames"]:
        yield bytes((types[f["type"]],)) + bytes.fromhex(f["payload"])
    for b in vectors["bad_payloads"]:
        yield bytes((b["type_code"],)) + bytes.fromhex(b["payload"])
