"""Find the CPS and Vitale cards among the PC/SC readers."""

from __future__ import annotations

import enum
from dataclasses import dataclass

from bifente.apdu.cps_spec import is_cps_atr
from bifente.apdu.errors import CardError
from bifente.apdu.pcsc import PcscTransport, reader_states
from bifente.apdu.vitale_spec import is_vitale1_atr, is_vitale2_atr

__all__ = ["CardKind", "NoCard", "SlotView", "card_kind", "find_reader", "open_reader", "scan"]


class NoCard(CardError):
    """No reader holds the kind of card asked for."""


class CardKind(enum.StrEnum):
    """What a slot holds, from the card's ATR (the API's `kind` strings)."""

    CPS = "cps"
    VITALE = "vitale"
    VITALE1 = "vitale1"
    UNKNOWN = "unknown"
    EMPTY = "empty"


def card_kind(atr: bytes) -> CardKind:
    """CPS, Vitale 2, Vitale 1 or unknown from an ATR."""
    if is_cps_atr(atr):
        return CardKind.CPS
    if is_vitale2_atr(atr):
        return CardKind.VITALE
    if is_vitale1_atr(atr):
        return CardKind.VITALE1
    return CardKind.UNKNOWN


@dataclass(frozen=True)
class SlotView:
    """A reader, whether a card is in it, and what kind."""

    index: int
    reader: str
    present: bool
    atr: bytes
    kind: CardKind


def scan() -> list[SlotView]:
    """Every PC/SC reader and what is in it."""
    out = []
    for i, st in enumerate(reader_states()):
        out.append(SlotView(i, st.reader, st.present, st.atr,
                            card_kind(st.atr) if st.present else CardKind.EMPTY))
    return out


def find_reader(kind: str, reader: str | None = None) -> str:
    """The reader to use: the one named (or numbered), else the first holding `kind`."""
    views = scan()
    if reader is not None:
        for v in views:
            if reader in (v.reader, str(v.index)):
                if not v.present:
                    raise NoCard(f"no card in reader {v.reader!r}")
                return v.reader
        names = ", ".join(f"{v.index}: {v.reader}" for v in views) or "none"
        raise NoCard(f"no reader {reader!r} (readers: {names})")
    for v in views:
        if v.kind == kind:
            return v.reader
    if kind == "vitale" and any(v.kind == "vitale1" for v in views):
        raise NoCard("a Vitale 1 card is inserted; only Vitale 2 cards are read")
    wanted = {"cps": "CPS", "vitale": "Vitale"}.get(kind, kind)
    raise NoCard(f"no {wanted} card found in {len(views)} reader(s): insert one")


def open_reader(kind: str, reader: str | None = None) -> PcscTransport:
    """Connect to the card of `kind` (or in the named reader)."""
    return PcscTransport(find_reader(kind, reader))


