"""Every `bifente`, `edged` and `make` command shown in README.md and docs/ exists as written.

A doc-checker: each shell block is read line by line; `bifente ...` and `edged ...` lines
are parsed by the real argument parsers (each command, subcommand and flag must exist and
take the values shown), `make X` must be a Makefile target, `python -m MODULE` must import.
"""

from __future__ import annotations

import importlib.util
import re
import shlex
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
_BLOCK = re.compile(r"^```(?:sh|bash|shell|console)\n(.*?)^```", re.S | re.M)
_PREFIXES = ("sudo ", ".venv/bin/", "/opt/bifente/.venv/bin/", "$ ")


def _commands() -> list[tuple[str, str]]:
    found = []
    for doc in DOCS:
        for block in _BLOCK.findall(doc.read_text()):
            for line in block.splitlines():
                line = re.split(r"\s+#\s", " " + line, maxsplit=1)[0].strip()
                changed = True
                while changed:
                    changed = False
                    for prefix in _PREFIXES:
                        if line.startswith(prefix):
                            line, changed = line[len(prefix):], True
                if line.split(" ", 1)[0] in ("bifente", "edged", "make") or \
                        line.startswith(("python -m edged", "python3 -m edged")):
                    found.append((doc.name, line))
    return found


COMMANDS = _commands()


def test_the_docs_show_commands() -> None:
    assert len(COMMANDS) > 20


@pytest.mark.parametrize(("doc", "line"), COMMANDS, ids=[f"{d}: {c}" for d, c in COMMANDS])
def test_command_exists_as_written(doc: str, line: str) -> None:
    words = shlex.split(line)
    if words[0] == "make":
        targets = re.findall(r"^([a-z][\w-]*):", (ROOT / "Makefile").read_text(), re.M)
        assert all(w in targets for w in words[1:]), f"{doc}: no make target in {line!r}"
        return
    if words[0].startswith("python"):
        module = words[2]
        assert importlib.util.find_spec(module) is not None, f"{doc}: no module {module}"
        return
    if words[0] == "bifente":
        from edged.cli.main import build_parser

        parse = build_parser().parse_args
    else:
        from edged.__main__ import _parse as parse
    if "--help" in words or "--version" in words:
        return
    try:
        parse(words[1:])
    except SystemExit as exc:
        pytest.fail(f"{doc}: `{line}` is not a valid command (exit {exc.code})")
