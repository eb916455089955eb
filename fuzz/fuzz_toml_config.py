"""edged's configuration file (docs/edged.md): load_config on any file."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import atheris

with atheris.instrument_imports(include=["bifente.edged.config", "tomllib"]):
    from bifente.edged.config import ConfigError, load_config

from fuzz.common import ROOT, main

_DIR = Path(tempfile.mkdtemp(prefix="bifente-fuzz-config-"))


def target(data: bytes) -> None:
    """The configuration file's bytes; a Config or a ConfigError naming the problem."""
    path = _DIR / "edged.toml"
    path.write_bytes(data)
    load_config(path)


def seeds() -> Iterator[bytes]:
    """The documented example configuration and a few small ones."""
    yield (ROOT / "docs" / "edged.example.toml").read_bytes()
    yield b'[server]\nport = 8443\nrate_per_second = 20.0\n[log]\nlog_level = "info"\n'
    yield b'[state]\nstate_dir = "x"\n[mail]\nsmtp = "a"\n[discovery]\nmdns_interfaces = ["lo"]\n'


if __name__ == "__main__":
    os.environ.pop("BIFENTE_STATE_DIR", None)
    main("toml_config", target, (ConfigError,), seeds)
