"""mypy over the host code, under the names it installs with (`bifente.<layer>`).

    python tools/typecheck.py                      # every package (what `make test` checks)
    python tools/typecheck.py -p bifente.edged     # one package; mypy's options pass through

Each layer keeps its folder in the checkout (`edged/`, `apdu/` ...) and the packaging maps it
into the `bifente` namespace (pyproject.toml and simulators/pyproject.toml, `package-dir`).
An editable install reaches those folders through an import hook, which mypy does not follow,
so this lays the same namespace out as symbolic links in build/namespace/ and points mypy at
it. File names in mypy's report are given back as the checkout's own.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FARM = ROOT / "build" / "namespace"
PACKAGES = ("bifente.apdu", "bifente.contracts", "bifente.client", "bifente.edged",
            "bifente.simulators")


def mapped_folders() -> dict[str, Path]:
    """`bifente.<layer>` -> its folder, as the product's and the simulators' pyproject map it."""
    folders: dict[str, Path] = {}
    for project in (ROOT, ROOT / "simulators"):
        setuptools = tomllib.loads((project / "pyproject.toml").read_text())["tool"]["setuptools"]
        for name, folder in setuptools["package-dir"].items():
            folders[name] = (project / folder).resolve()
    return folders


def lay_out_namespace() -> dict[str, Path]:
    """build/namespace/bifente/<layer> -> the layer's folder, for every mapped layer; the map."""
    folders = mapped_folders()
    (FARM / "bifente").mkdir(parents=True, exist_ok=True)
    for name, folder in folders.items():
        link = FARM.joinpath(*name.split("."))
        target = os.path.relpath(folder, link.parent)
        if link.is_symlink() and os.readlink(link) == target:
            continue
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(target, target_is_directory=True)
    return folders


def run(args: list[str]) -> subprocess.CompletedProcess[str]:
    """mypy on `args` (packages to check by default) with the namespace laid out; the report's
    paths are the checkout's."""
    folders = lay_out_namespace()
    if not any(not a.startswith("-") for a in args):
        args = [*args, *(f"--package={name}" for name in PACKAGES)]
    env = {**os.environ, "MYPYPATH": os.pathsep.join(
        p for p in (str(FARM), os.environ.get("MYPYPATH", "")) if p)}
    done = subprocess.run([sys.executable, "-m", "mypy", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=900, check=False)
    for name, folder in folders.items():
        farm_path = FARM.relative_to(ROOT).joinpath(*name.split(".")).as_posix() + "/"
        own = folder.relative_to(ROOT).as_posix() + "/"
        done.stdout = done.stdout.replace(farm_path, own)
        done.stderr = done.stderr.replace(farm_path, own)
    return done


def main(argv: list[str] | None = None) -> int:
    """Run mypy as the module docstring says; mypy's exit status."""
    done = run(sys.argv[1:] if argv is None else argv)
    sys.stdout.write(done.stdout)
    sys.stderr.write(done.stderr)
    return done.returncode


if __name__ == "__main__":
    raise SystemExit(main())
