"""The request `bifente admin open-pairing` leaves for the daemon (state/pairing_window.py)."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from bifente.edged.state.pairing_window import REQUEST_FILE, request_window, take_request


def test_a_fresh_request_is_taken_once(tmp_path: Path) -> None:
    path = request_window(tmp_path)
    assert path == tmp_path / REQUEST_FILE
    assert path.stat().st_mode & 0o777 == 0o600
    assert take_request(tmp_path) is True
    assert not path.exists()
    assert take_request(tmp_path) is False


def test_stale_future_and_malformed_requests_are_dropped(tmp_path: Path) -> None:
    path = tmp_path / REQUEST_FILE
    for body in (json.dumps({"requested_at": time.time() - 60}),
                 json.dumps({"requested_at": time.time() + 3600}),
                 "not json", json.dumps({"other": 1}), json.dumps({"requested_at": "x"})):
        path.write_text(body)
        assert take_request(tmp_path) is False, body
        assert not path.exists()


def test_a_symbolic_link_is_not_followed(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere"
    target.write_text(json.dumps({"requested_at": time.time()}))
    os.symlink(target, tmp_path / REQUEST_FILE)
    assert take_request(tmp_path) is False
    assert not (tmp_path / REQUEST_FILE).is_symlink() and target.exists()
