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
                        line.startswith(("python -m bifente.edged", "python3 -m bifente.edged")):
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
        from bifente.edged.cli.main import build_parser

        parse = build_parser().parse_args
    else:
        from bifente.edged.__main__ import _parse as parse
    if "--help" in words or "--version" in words:
        return
    try:
        parse(words[1:])
    except SystemExit as exc:
        pytest.fail(f"{doc}: `{line}` is not a valid command (exit {exc.code})")


def _shell_lines(doc: Path) -> list[str]:
    lines = []
    for block in _BLOCK.findall(doc.read_text()):
        joined = block.replace("\\\n", " ")
        lines += [re.split(r"\s+#\s", " " + line, maxsplit=1)[0].strip()
                  for line in joined.splitlines()]
    return [line for line in lines if line]


def test_install_pi_copies_files_that_exist_to_the_paths_the_unit_uses() -> None:
    """docs/install-pi.md: each repository file it installs exists; the unit runs what it links."""
    lines = _shell_lines(ROOT / "docs" / "install-pi.md")
    sources = [w for line in lines if line.startswith("sudo install ") and " -d " not in line
               for w in shlex.split(line)[-2:-1]]
    assert sources, "install-pi.md installs no file"
    for source in sources:
        assert (ROOT / source).is_file(), f"install-pi.md installs {source}, which is not here"
    unit = (ROOT / "hardware" / "pi" / "edged.service").read_text()
    run = re.search(r"^ExecStart=(\S+)", unit, re.M)
    assert run is not None
    links = [shlex.split(line)[-1] for line in lines if line.startswith("sudo ln -s ")]
    assert run.group(1) in links, f"edged.service runs {run.group(1)}; install-pi.md links {links}"
    config = re.search(r"--config (\S+)", unit)
    assert config is not None and any(line.endswith(config.group(1)) for line in lines), \
        "install-pi.md does not install the configuration file edged.service reads"


def test_flashing_copies_every_firmware_module() -> None:
    """docs/flashing.md: `mpremote ... fs cp` names exactly the modules in firmware/."""
    lines = _shell_lines(ROOT / "docs" / "flashing.md")
    copies = [line for line in lines if line.startswith("mpremote ") and " fs cp " in line]
    assert len(copies) == 1, copies
    copied = set(shlex.split(copies[0].split(" fs cp ", 1)[1])[:-1])
    modules = {p.name for p in (ROOT / "firmware").glob("*.py")}
    assert copied == modules, \
        f"missing {sorted(modules - copied)}, extra {sorted(copied - modules)}"
    assert "cd firmware" in lines


_LINK = re.compile(r"\]\(([^)\s]+)\)")


@pytest.mark.parametrize("doc", [*DOCS, ROOT / "CHANGELOG.md"], ids=lambda p: p.name)
def test_links_stay_inside_the_repository(doc: Path) -> None:
    """A relative link names a file of this repository (a fresh clone has nothing beside it)."""
    for target in _LINK.findall(doc.read_text()):
        path = target.split("#", 1)[0]
        if not path or re.match(r"[a-z]+:", path):
            continue
        resolved = (doc.parent / path).resolve()
        assert resolved.is_relative_to(ROOT) and resolved.exists(), f"{doc.name}: {target}"


_OUTSIDE = re.compile(  # outside-citation-pattern
    r"\.\./shared|MISSION\.md|(?-i:\bFACTS\b)|\bissues? \d+", re.I)  # outside-citation-pattern


def test_readme_names_nothing_outside_the_repository() -> None:
    text = (ROOT / "README.md").read_text()
    assert "../" not in text and not _OUTSIDE.search(text)


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_docs_cite_nothing_a_fresh_clone_lacks(doc: Path) -> None:
    """An issue number or a planning file means nothing to someone with only the repository."""
    assert not [m.group(0) for m in _OUTSIDE.finditer(doc.read_text())]


_PROMISE = re.compile(r"(?<!could )\b(?:comes?|coming|arrives?) later\b|\(and later\b", re.I)


def test_docs_and_help_describe_what_exists_not_plans() -> None:
    """No "comes later" in README, docs/ or any --help: they describe the product as it is."""
    from bifente.edged.cli.main import build_parser

    texts = [(doc.name, doc.read_text()) for doc in DOCS]
    stack = [("bifente", build_parser())]
    while stack:
        name, parser = stack.pop()
        texts.append((name, parser.format_help()))
        for action in parser._actions:
            if action.choices and hasattr(action, "_name_parser_map"):
                stack += [(f"{name} {sub}", p) for sub, p in action.choices.items()]
    found = [(name, m.group(0)) for name, text in texts for m in _PROMISE.finditer(text)]
    assert not found
