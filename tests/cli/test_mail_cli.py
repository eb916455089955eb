"""`bifente mail open` shows sender-controlled text without its control characters (review L4)."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from bifente.edged.cli import mail

ESCAPES = "\x1b]0;pwned\x07\x1b[2J"


def _message() -> dict[str, Any]:
    return {
        "from": f"eve{ESCAPES}@cabinet.test", "to": ["gp@cabinet.test"], "cc": [],
        "subject": f"Résultats {ESCAPES}\r\nBcc: x", "date": "Sat, 05 Dec 2026 10:00:00 +0000",
        "signer": {"name": f"Eve{ESCAPES}", "email": "eve@cabinet.test", "valid": False},
        "text": f"Bonjour,\r\n\tligne 2{ESCAPES}\x9b31m",
        "html": None,
        "attachments": [{"filename": f"{ESCAPES} report.pdf", "content_type": "application/pdf",
                         "size": 3, "data": base64.b64encode(b"PDF").decode()}],
    }


def test_no_control_character_reaches_the_terminal() -> None:
    lines = mail.message_lines(_message())
    for line in lines:
        assert not any((ord(c) < 0x20 and c not in "\t\n") or 0x7f <= ord(c) <= 0x9f
                       for c in line), repr(line)
    assert "Subject: Résultats ?]0;pwned??[2J??Bcc: x" in lines
    assert lines[-1] == "Bonjour,\n\tligne 2?]0;pwned??[2J?31m"  # the layout stays


@pytest.mark.parametrize(("name", "saved"), [
    (f"{ESCAPES} report.pdf", "?]0;pwned??[2J report.pdf"),
    ("../../etc/cron.d/evil", "evil"),
    ("..\\..\\windows\\evil.bat", "evil.bat"),
    ("..", "attachment"),
])
def test_saved_attachment_names_have_no_path_and_no_control(name: str, saved: str) -> None:
    assert mail.safe_filename(name) == saved

