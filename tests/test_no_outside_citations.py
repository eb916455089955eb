"""Source files cite the repository's docs/ or a public spec, never a planning file or an issue.

A comment, docstring or --help text that says "FACTS §1", "MISSION.md", "../shared/..." or
"issue 12" points at something a fresh clone does not have. Public trackers cited with their
project and a `#` (OpenSC issue #2267) are fine: anyone can open them.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
_SUFFIXES = (".py", ".ts", ".mjs", ".toml", ".ini", ".mk", ".md", ".sh")
# A line carrying this marker defines a pattern below (or in another checker) and is skipped.
_MARKER = "outside-citation-pattern"
_OUTSIDE = [  # outside-citation-pattern
    re.compile(r"\bFACTS\b"),  # outside-citation-pattern
    re.compile(r"MISSION\.md|ARCHITECTURE\.md|\.\./shared", re.I),  # outside-citation-pattern
    re.compile(r"\bissues? \d+", re.I),  # outside-citation-pattern
]


def _tracked() -> list[str]:
    out = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True)
    names = [n for n in out.stdout.decode().split("\0") if n]
    return [n for n in names
            if n.endswith(_SUFFIXES) or n == "Makefile" or n.startswith("hardware/")]


def outside_citations(root: Path, names: list[str]) -> list[str]:
    """`file:line: text` for every line of the named files citing something outside the repo."""
    found = []
    for name in names:
        path = root / name
        if not path.is_file():
            continue
        try:
            text = path.read_text()
        except UnicodeDecodeError:
            continue
        for number, line in enumerate(text.splitlines(), 1):
            if _MARKER not in line and any(p.search(line) for p in _OUTSIDE):
                found.append(f"{name}:{number}: {line.strip()}")
    return found


def test_the_scan_covers_the_sources() -> None:
    names = _tracked()
    assert "apdu/cps.py" in names and "Makefile" in names and "CHANGELOG.md" in names
    assert any(n.startswith("hardware/") for n in names)
    assert any(n.endswith(".toml") for n in names)


def test_the_scan_finds_a_citation(tmp_path: Path) -> None:
    (tmp_path / "a.py").write_text('"""Fine."""\nX = 1  # FACTS §2 says so\n')
    (tmp_path / "b.toml").write_text("# see Issue 12 and MISSION.md\nok = 1\n")
    (tmp_path / "c.py").write_text("# OpenSC issue #2267; STRUCTURE_FACTS = {}\n")
    assert outside_citations(tmp_path, ["a.py", "b.toml", "c.py"]) == [
        "a.py:2: X = 1  # FACTS §2 says so",
        "b.toml:1: # see Issue 12 and MISSION.md",
    ]


def test_sources_cite_nothing_a_fresh_clone_lacks() -> None:
    """Cite docs/ (cards.md, messaging.md, dmp-api.md...) or the public source instead."""
    this = Path(__file__).resolve().relative_to(ROOT).as_posix()  # its examples are citations
    found = outside_citations(ROOT, [n for n in _tracked() if n != this])
    assert not found, "\n".join(found)
