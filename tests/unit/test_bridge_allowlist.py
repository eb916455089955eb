"""The bridge's allow-list: origins as browsers send them, tokens kept as digests, scopes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bifente.edged.bridge.allowlist import AllowList, normalize_origin

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(("given", "origin"), [
    ("https://Clinic.Example", "https://clinic.example"),
    ("https://clinic.example:443/", "https://clinic.example"),
    ("http://localhost:8080", "http://localhost:8080"),
    ("https://[::1]:8443", "https://[::1]:8443"),
])
def test_origins_are_normalized_as_browsers_send_them(given: str, origin: str) -> None:
    assert normalize_origin(given) == origin


@pytest.mark.parametrize("bad", ["null", "*", "https://*.example", "file:///x", "clinic.example",
                                 "https://clinic.example/app", "https://u@clinic.example",
                                 "https://clinic.example:99999", "ws://clinic.example"])
def test_what_is_not_an_origin_is_refused(bad: str) -> None:
    with pytest.raises(ValueError):
        normalize_origin(bad)


def test_allow_check_rekey_revoke(tmp_path: Path) -> None:
    path = tmp_path / "bridge.json"
    allowlist = AllowList(path)
    origin, token = allowlist.allow("https://Clinic.example", ["cps:sign", "identity:read"])
    assert origin == "https://clinic.example"
    assert os.stat(path).st_mode & 0o777 == 0o600
    assert token not in path.read_text()  # only the digest is stored
    entry = allowlist.check("https://clinic.example", token)
    assert entry is not None and entry.scopes == ("cps:sign", "identity:read")
    assert allowlist.check("https://clinic.example:443", token) == entry
    for origin_, token_ in [("https://evil.example", token), ("https://clinic.example", "x" * 43),
                            ("https://clinic.example", None), (None, token)]:
        assert allowlist.check(origin_, token_) is None
    _, new_token = AllowList(path).allow("https://clinic.example", ["identity:read"])  # re-key
    assert allowlist.check("https://clinic.example", token) is None  # seen without a restart
    assert allowlist.check("https://clinic.example", new_token) is not None
    assert allowlist.revoke("https://clinic.example") and not allowlist.revoke("https://x.test")
    assert allowlist.check("https://clinic.example", new_token) is None


def test_admin_and_unknown_scopes_cannot_be_granted(tmp_path: Path) -> None:
    allowlist = AllowList(tmp_path / "bridge.json")
    for scope in ("admin", "everything"):
        with pytest.raises(ValueError, match="cannot be granted"):
            allowlist.allow("https://clinic.example", [scope])


def test_a_damaged_allow_list_allows_nobody_and_says_why(tmp_path: Path) -> None:
    path = tmp_path / "bridge.json"
    path.write_text(json.dumps({"origins": {"https://a.test": {"scopes": []}}}))
    with pytest.raises(ValueError, match="not a bridge allow-list"):
        AllowList(path).check("https://a.test", "x" * 43)
    done = subprocess.run([sys.executable, "-m", "bifente.edged.cli.main", "bridge", "list",
                           "--allow-list", str(path)], capture_output=True, text=True,
                          timeout=60, check=False, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 2
    assert done.stderr.startswith(f"bifente: {path}: not a bridge allow-list")
