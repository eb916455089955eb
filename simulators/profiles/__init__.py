"""Card personalisation profiles: TOML data files that say what a simulated card holds.

A profile is named (a file in cps/ or vitale/ beside this module) or given as a path, so
integrators can bring their own.
"""

from __future__ import annotations

import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from bifente.apdu.cps_objects import CpsHolder, PracticeSituation
from bifente.apdu.identity import parse_nir

__all__ = [
    "CpsProfile",
    "ProfileError",
    "VitaleBeneficiary",
    "VitaleProfile",
    "available",
    "load_cps",
    "load_vitale",
]

HERE = Path(__file__).parent
_P = TypeVar("_P")


class ProfileError(ValueError):
    """A profile is missing or invalid; the message names the file and the field."""


def available(kind: str) -> list[str]:
    """Names of the ready-made profiles of a kind ('cps' or 'vitale')."""
    return sorted(p.stem for p in (HERE / kind).glob("*.toml"))


def _read(kind: str, name: str) -> tuple[str, dict[str, Any]]:
    path = Path(name)
    if path.suffix != ".toml":
        path = HERE / kind / f"{name}.toml"
    if not path.is_file():
        raise ProfileError(f"no {kind} profile {name!r}; ready-made: {', '.join(available(kind))}")
    try:
        return path.stem, tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ProfileError(f"{path.name}: {exc}") from exc
    except UnicodeDecodeError as exc:  # TOML v1.0.0: a document is UTF-8 text
        raise ProfileError(f"{path.name}: not UTF-8 text (byte {exc.start})") from exc
    except RecursionError as exc:  # tomllib recurses per nested array / inline table
        raise ProfileError(f"{path.name}: nested too deep") from exc


def _typed(kind: str, stem: str, build: Callable[[], _P]) -> _P:
    # A field of the wrong TOML type (a table where a string belongs...) is still a bad
    # profile, not a crash of the simulator: one ProfileError naming the file.
    try:
        return build()
    except ProfileError:
        raise
    except KeyError as exc:
        raise ProfileError(f"{kind} profile {stem}: missing field {exc}") from exc
    except (TypeError, ValueError, AttributeError, IndexError) as exc:
        raise ProfileError(f"{kind} profile {stem}: a field has the wrong type or value "
                           f"({exc})") from exc


@dataclass(frozen=True)
class CpsProfile:
    """What a simulated CPS3 card is personalised with."""

    name: str
    holder: CpsHolder
    serial: str
    situations: tuple[PracticeSituation, ...]
    pin: str = field(repr=False)
    puk: str = field(repr=False)
    pin_tries_left: int = 3
    puk_tries_left: int = 10
    certificates: str = "valid"  # or "expired"

    @property
    def email(self) -> str | None:
        """The first practice situation's mail address (used in certificates)."""
        return next((s.email for s in self.situations if s.email), None)


def load_cps(name: str) -> CpsProfile:
    """Load a CPS profile by name or path; raises ProfileError with the reason."""
    stem, d = _read("cps", name)
    return _typed("cps", stem, lambda: _cps(stem, d))


def _cps(stem: str, d: dict[str, Any]) -> CpsProfile:
    try:
        card, h = d["card"], d["holder"]
        holder = CpsHolder(card["card_type"], h["id_type"], h["national_id"], h["civility"],
                           h["name"], h["first_name"], h["profession"], h.get("specialty", ""))
        situations = tuple(
            PracticeSituation(i, s["mode"], s["sector"], s["structure_id"], s["structure_name"],
                              s.get("email"))
            for i, s in enumerate(d.get("situation", []), start=1))
        serial = card["serial"]
        pin, puk = str(card.get("pin", "1234")), str(card.get("puk", "12345678"))
    except KeyError as exc:
        raise ProfileError(f"cps profile {stem}: missing field {exc}") from exc
    if len(situations) > 16:
        raise ProfileError(f"cps profile {stem}: at most 16 practice situations")
    if not (len(serial) == 20 and serial.isdigit() and serial.startswith("8025000001")):
        raise ProfileError(f"cps profile {stem}: serial must be 20 digits starting 8025000001")
    if not (pin.isdigit() and len(pin) == 4 and puk.isdigit() and len(puk) == 8):
        raise ProfileError(f"cps profile {stem}: PIN is 4 digits and PUK 8 digits")
    return CpsProfile(stem, holder, serial, situations, pin, puk,
                      int(card.get("pin_tries_left", 3)), int(card.get("puk_tries_left", 10)),
                      card.get("certificates", "valid"))


@dataclass(frozen=True)
class VitaleBeneficiary:
    """One person on a Vitale card."""

    quality: int
    name: str
    birth_name: str
    first_name: str
    birth_date: str
    birth_rank: int
    nationality: str
    nir: str = field(repr=False)
    rights: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class VitaleProfile:
    """What a simulated Vitale 2 card is personalised with."""

    name: str
    serial: str
    validity_start: str
    end_of_validity: str
    environment: str
    insured_nir: str = field(repr=False)
    regime: str = "01"
    caisse: str = "349"
    centre: str = "0349"
    beneficiaries: tuple[VitaleBeneficiary, ...] = ()


def load_vitale(name: str) -> VitaleProfile:
    """Load a Vitale profile by name or path; raises ProfileError with the reason."""
    stem, d = _read("vitale", name)
    return _typed("vitale", stem, lambda: _vitale(stem, d))


def _vitale(stem: str, d: dict[str, Any]) -> VitaleProfile:
    try:
        card, ins = d["card"], d["insured"]
        people = tuple(
            VitaleBeneficiary(b["quality"], b["name"], b.get("birth_name", b["name"]),
                              b["first_name"], str(b["birth_date"]), b.get("birth_rank", 1),
                              b.get("nationality", "FR"), b["nir"],
                              tuple(tuple(r) for r in b.get("rights", [])))
            for b in d.get("beneficiary", []))
        profile = VitaleProfile(stem, card["serial"], card["validity_start"],
                                card["end_of_validity"], card.get("environment", "test"),
                                ins["nir"], ins.get("regime", "01"), ins.get("caisse", "349"),
                                ins.get("centre", "0349"), people)
    except KeyError as exc:
        raise ProfileError(f"vitale profile {stem}: missing field {exc}") from exc
    if not 1 <= len(people) <= 6:
        raise ProfileError(f"vitale profile {stem}: 1 to 6 beneficiaries")
    for nir in [profile.insured_nir, *(b.nir for b in people)]:
        try:
            parse_nir(nir)
        except ValueError as exc:
            raise ProfileError(f"vitale profile {stem}: {exc}") from exc
    return profile
