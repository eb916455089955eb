"""docs/integrators.md's Java client, generated, compiled and run as the page shows it.

The schemas come from the page's jq step, the data classes from quicktype (tools/codegen,
pinned), the program is the page's `EdgedExample.java` block, and the shell block runs
unchanged but for `npx quicktype@26`, which is the pinned local copy here. The program talks
to a real `edged --simulate`; the PIN is typed on the virtual keypad, as a doctor would.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from bifente.simulators.terminal.control import TerminalControl
from tests.docblocks import block_after, integrators_schemas
from tests.needs import missing
from tests.sdk_js.jsrun import Edged, pair_on_display

ROOT = Path(__file__).resolve().parents[2]
QUICKTYPE = ROOT / "tools" / "codegen" / "node_modules" / ".bin" / "quicktype"
JACKSON = [Path("/usr/share/java") / f"jackson-{n}.jar"
           for n in ("databind", "core", "annotations")]
SECTION = "### Java (Jackson, `java.net.http`)"


def _needs() -> None:
    for tool in ("javac", "java", "jq", "openssl"):
        if shutil.which(tool) is None:
            missing(f"{tool} is missing (make setup installs it)")
    if not QUICKTYPE.exists():
        missing("tools/codegen/node_modules (npm ci; make setup does it)")
    if not all(jar.exists() for jar in JACKSON):
        missing("Debian's Jackson jars are missing (make setup installs libjackson2-databind-java)")


def _keypad_while(process: subprocess.Popen[str], control: TerminalControl) -> list[str]:
    """Type the PIN when the terminal asks for it, and OK a signature confirmation."""
    done: list[str] = []
    deadline = time.monotonic() + 120
    while process.poll() is None and time.monotonic() < deadline:
        screen = "\n".join(control.screen())
        if "PIN" in screen and "pin" not in done:
            control.press("1234", "OK")  # the simulated CPS card's test PIN
            done.append("pin")
        elif "Signer" in screen and "pin" in done and "confirm" not in done:
            control.press("OK")
            done.append("confirm")
        time.sleep(0.1)
    return done


@pytest.mark.timeout(300)
def test_java_example_reads_vitale_and_gets_a_verified_signature(
        edged_sim: Edged, tmp_path: Path) -> None:
    _needs()
    env = dict(os.environ)
    integrators_schemas(tmp_path, env)
    credentials = asyncio.run(pair_on_display(edged_sim, "Java desk",
                                              ["identity:read", "cps:sign"]))
    saved = credentials.save(tmp_path / "clients")
    shutil.copy(saved, tmp_path / "terminal.json")  # "the credentials file bifente pair wrote"
    (tmp_path / "EdgedExample.java").write_text(block_after("integrators.md", SECTION, "java"))
    script = block_after("integrators.md", SECTION)
    assert script.count("npx quicktype@26 ") == 1, script
    script = script.replace("npx quicktype@26 ", f"{QUICKTYPE} ")
    process = subprocess.Popen(["bash", "-euo", "pipefail", "-c", script], cwd=tmp_path, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               start_new_session=True)
    try:
        typed = _keypad_while(process, TerminalControl(edged_sim.control))
        out, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, 9)
            process.wait(timeout=10)
    assert process.returncode == 0, out[-3000:] + err[-3000:]
    assert "pin" in typed, "the program never asked for the PIN on the terminal"
    people = re.findall(r"^\S.* INS (\d{15})$", out, re.M)
    assert len(people) == 4, out  # the `family` Vitale card's beneficiaries
    assert "PIN ok" in out.splitlines(), out
    assert re.search(r"^signed by .*MARTIN.*: signature verified$", out, re.M), out
    generated = tmp_path / "src" / "main" / "java" / "fr" / "bifente" / "edged"
    assert {"VitaleReadResult.java", "CPSSignParams.java", "Converter.java"} <= \
        {p.name for p in generated.iterdir()}
