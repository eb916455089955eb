"""Review L1 without a terminal: `bifente admin open-pairing` on the daemon's machine opens the
pairing window a headless (PC/SC) setup has no F1 for."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from bifente.client import RemoteError, pair
from bifente.edged.cli.main import main
from bifente.edged.config import Config, ConfigError, load_config
from bifente.edged.daemon import Daemon
from bifente.edged.state.pairing_window import REQUEST_FILE
from tests.lan_attacker import LanAttacker

ATTACKERS = ("127.0.3.1", "127.0.3.2", "127.0.3.3")


@pytest_asyncio.fixture
async def headless(tmp_path: Path) -> AsyncIterator[Daemon]:
    """A daemon with no terminal and no display: codes go to the log, as on a PC/SC setup."""
    config = Config(host="127.0.0.1", port=0, state_dir=tmp_path / "state", mdns=False,
                    pcsc=False, state_key_file=str(tmp_path / "key" / "state.key"))
    daemon = Daemon(config)
    await daemon.start()
    try:
        yield daemon
    finally:
        await daemon.stop()


def window_events(daemon: Daemon) -> list[dict[str, object]]:
    """Audit records of pairing windows opened so far."""
    daemon.audit.flush()
    return [r.data() for r in daemon.audit.records() if r.event == "pair.window_opened"]


@pytest.mark.asyncio
async def test_open_pairing_lets_a_desk_through_the_lockout(
        headless: Daemon, caplog: pytest.LogCaptureFixture,
        capsys: pytest.CaptureFixture[str]) -> None:
    caplog.set_level(logging.WARNING, logger="bifente.edged.daemon")
    port, fingerprint = headless.server.port, headless.keystore.fingerprint
    attacker = LanAttacker(port, ATTACKERS)

    def read_code() -> str:  # the operator reads the console of the daemon's machine
        codes = re.findall(r"pairing code for 'Poste 1': (\d{6})", caplog.text)
        assert codes, caplog.text
        return codes[-1]

    try:
        assert await attacker.until_locked_out() == 20
        with pytest.raises(RemoteError) as refused:
            await pair("127.0.0.1", port, fingerprint, "Poste 1", [], read_code)
        assert refused.value.reason == "locked_out"

        state = str(headless.config.state_dir)
        assert await asyncio.to_thread(main, ["admin", "open-pairing", "--state-dir", state]) == 0
        assert "pairing window open" in capsys.readouterr().out
        assert window_events(headless) == [{"source": "cli", "seconds": 120.0}]
        assert "pairing window open for 120 s (no terminal display)" in caplog.text
        assert not (headless.config.state_dir / REQUEST_FILE).exists()

        flood = asyncio.create_task(attacker.flood(pause=0.05))
        try:
            credentials = await pair("127.0.0.1", port, fingerprint, "Poste 1", [], read_code)
            assert not flood.done()
        finally:
            flood.cancel()
            await asyncio.gather(flood, return_exceptions=True)
        assert credentials.scopes == ("identity:read",)
    finally:
        await attacker.close()


@pytest.mark.asyncio
async def test_a_stale_request_opens_nothing(headless: Daemon) -> None:
    # A request left while the daemon was down must not open a window at its next start.
    path = headless.config.state_dir / REQUEST_FILE
    path.write_text(json.dumps({"requested_at": time.time() - 3600}))
    for _ in range(30):
        if not path.exists():
            break
        await asyncio.sleep(0.1)
    assert not path.exists()
    assert headless.pairing.window_left() == 0.0
    assert window_events(headless) == []


def test_open_pairing_needs_the_daemons_state(tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    elsewhere = tmp_path / "elsewhere"
    assert main(["admin", "open-pairing", "--state-dir", str(elsewhere)]) != 0
    assert "is this the daemon's machine?" in capsys.readouterr().err
    assert not elsewhere.exists()  # nothing written where no daemon lives


def test_window_length_is_checked(tmp_path: Path) -> None:
    path = tmp_path / "edged.toml"
    path.write_text("[pairing]\npairing_window_seconds = 300\n")
    assert load_config(path).pairing_window_seconds == 300.0
    for bad in ("5", "601"):
        path.write_text(f"[pairing]\npairing_window_seconds = {bad}\n")
        with pytest.raises(ConfigError, match="pairing_window_seconds"):
            load_config(path)
