"""Card profiles (simulators/profiles/*.toml): load_cps and load_vitale on any file."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import atheris

with atheris.instrument_imports(include=["bifente.simulators.profiles", "tomllib"]):
    from bifente.simulators import profiles

from fuzz.common import ROOT, main

_DIR = Path(tempfile.mkdtemp(prefix="bifente-fuzz-profile-"))


def target(data: bytes) -> None:
    """First byte: CPS or Vitale; the rest is the profile file's bytes."""
    if not data:
        return
    path = _DIR / "fuzzed.toml"
    path.write_bytes(data[1:])
    if data[0] % 2:
        profiles.load_vitale(str(path))
    else:
        profiles.load_cps(str(path))


def seeds() -> Iterator[bytes]:
    """Every ready-made profile, for its own loader."""
    for kind, flag in (("cps", b"\x00"), ("vitale", b"\x01")):
        for p in sorted((ROOT / "simulators" / "profiles" / kind).glob("*.toml")):
            yield flag + p.read_bytes()


if __name__ == "__main__":
    os.environ.pop("BIFENTE_STATE_DIR", None)
    main("toml_profile", target, (profiles.ProfileError,), seeds)
