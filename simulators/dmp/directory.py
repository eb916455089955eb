"""STAND-IN national directory: what the real host reads from the "annuaire santé".

The real DMP host looks professionals up in the national directory for what a certificate
does not say (specialty, card type, practice sector, the structure's sector). The reference
host reads `data/standin_directory.toml` instead, generated from the CPS test profiles by
`python -m bifente.simulators.dmp.generate`.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from bifente.simulators.dmp.rules import Professional

__all__ = ["DEFAULT_DIRECTORY", "Directory", "DirectoryEntry", "Situation", "Structure"]

DEFAULT_DIRECTORY = Path(__file__).parent / "data" / "standin_directory.toml"


@dataclass(frozen=True)
class Situation:
    """A practice situation of a professional (mode, card sector, structure)."""

    mode: int
    sector: str
    structure_id: str
    structure_name: str


@dataclass(frozen=True)
class Structure:
    """A care structure: its sector (SAxx), whether it is a SAMU, whether it may vouch."""

    id: str
    name: str
    sector: str = ""
    samu: bool = False
    indirect_auth: bool = False  # trusted to vouch for its local users (indirect mode)


@dataclass(frozen=True)
class DirectoryEntry:
    """One professional in the directory."""

    national_id: str
    name: str
    card_type: int
    profession: str
    specialty: str
    situations: tuple[Situation, ...]


class Directory:
    """Professionals and structures, read from the stand-in directory file."""

    def __init__(self, professionals: Mapping[str, DirectoryEntry],
                 structures: Mapping[str, Structure]) -> None:
        self.professionals = dict(professionals)
        self.structures = dict(structures)

    @classmethod
    def load(cls, path: Path = DEFAULT_DIRECTORY) -> Directory:
        """Read a directory file (ValueError names the entry when one is incomplete)."""
        data = tomllib.loads(path.read_text(encoding="utf-8"))
        try:
            structures = {sid: Structure(sid, s["name"], s.get("sector", ""),
                                         bool(s.get("samu", False)),
                                         bool(s.get("indirect_auth", False)))
                          for sid, s in data.get("structures", {}).items()}
            people = {nid: DirectoryEntry(
                nid, p["name"], int(p["card_type"]), p["profession"], p.get("specialty", ""),
                tuple(Situation(int(s["mode"]), s["sector"], s["structure_id"],
                                s["structure_name"]) for s in p.get("situations", [])))
                for nid, p in data.get("professionals", {}).items()}
        except KeyError as exc:
            raise ValueError(f"{path.name}: missing field {exc}") from exc
        return cls(people, structures)

    def professional(self, national_id: str, *, structure_id: str | None = None,
                     auth_mode: str = "direct") -> Professional | None:
        """The professional acting in the situation at `structure_id` (else the first one)."""
        entry = self.professionals.get(national_id)
        if entry is None:
            return None
        situation = next((s for s in entry.situations if s.structure_id == structure_id),
                         entry.situations[0] if entry.situations else None)
        if situation is None:
            return Professional(national_id, entry.name, entry.profession, entry.specialty,
                                entry.card_type, "", "", "", auth_mode=auth_mode)
        structure = self.structures.get(situation.structure_id)
        return Professional(
            national_id, entry.name, entry.profession, entry.specialty, entry.card_type,
            situation.sector, situation.structure_id, situation.structure_name,
            structure.sector if structure else "", structure.samu if structure else False,
            auth_mode)

    def is_member(self, national_id: str, structure_id: str) -> bool:
        """True when the professional has a practice situation in this structure."""
        entry = self.professionals.get(national_id)
        return entry is not None and any(s.structure_id == structure_id
                                         for s in entry.situations)
