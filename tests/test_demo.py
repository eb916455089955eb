"""`make demo` runs end to end: edged --simulate, mDNS, pairing, the virtual terminal, audit."""

from __future__ import annotations

import subprocess
import sys

from tests.pins import shows_pin


def test_demo_runs_the_front_desk_scenario() -> None:
    result = subprocess.run([sys.executable, "-m", "bifente.edged.cli.main", "demo"],
                            capture_output=True, text=True, timeout=240, check=False)
    out = result.stdout
    assert result.returncode == 0, out[-3000:] + result.stderr[-3000:]
    for needle in ("[9/9]", "found bifente-demo-", "paired; scopes",
                   "Pierre LEFEBVRE (insured)", "Dr Claire MARTIN",
                   "{'result': 'ok', 'tries_left': 3}", "signature verified",
                   "patient's answer: ok", "event card.removed: vitale card left terminal:1",
                   "chain valid"):
        assert needle in out, needle
    assert not shows_pin(out, "1234")  # the PIN is typed on the keypad, shown masked
