"""The state key through the real systemd-creds (docs/security.md, "Data at rest"): the command
of hardware/pi/bifente-state-key.service seals it (TPM2 when present, else the host key), the
tools open it with `systemd-creds decrypt`, and both get the key edged gets from systemd."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from bifente.edged.state.keywrap import CREDENTIAL_NAME, CREDSTORE, StateKeyError, load_key_wrapper
from tests.needs import missing

UNIT = Path(__file__).resolve().parents[2] / "hardware" / "pi" / "bifente-state-key.service"


@pytest.fixture
def credential(tmp_path: Path) -> Path:
    """A state key sealed by the unit's own command, written under tmp_path."""
    if shutil.which("systemd-creds") is None:
        missing("systemd-creds is not installed")
    if os.geteuid() != 0:
        missing("systemd-creds needs root to use the host key")
    # The unit's command, with its target moved out of /etc.
    [command] = [line.split("=", 1)[1] for line in UNIT.read_text().splitlines()
                 if line.startswith("ExecStart=") and "systemd-creds" in line]
    shell = re.fullmatch(r"/usr/bin/sh -c '(.*)'", command)
    assert shell, command
    target = tmp_path / "credstore.encrypted" / CREDENTIAL_NAME
    target.parent.mkdir(mode=0o700)
    script = shell.group(1).replace(str(CREDSTORE), str(target))
    assert str(target) in script
    done = subprocess.run(["sh", "-c", script], capture_output=True, text=True, timeout=60,
                          check=False)
    if done.returncode != 0:
        pytest.fail(f"the unit's systemd-creds command failed: {done.stderr.strip()}")
    return target


def test_the_tools_and_the_service_get_one_key_from_the_credential(
        credential: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    monkeypatch.delenv("BIFENTE_STATE_KEY_FILE", raising=False)
    state = tmp_path / "state"
    tool = load_key_wrapper(state, credstore=credential)  # `bifente proxy ...` as root
    assert tool.hardware_bound and str(credential) in tool.source
    # What LoadCredentialEncrypted= in edged.service does before edged starts: decrypt into
    # the service's credentials directory.
    service_dir = tmp_path / "credentials"
    service_dir.mkdir(mode=0o700)
    subprocess.run(["systemd-creds", "decrypt", f"--name={CREDENTIAL_NAME}", str(credential),
                    str(service_dir / CREDENTIAL_NAME)], check=True, timeout=60,
                   capture_output=True)
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(service_dir))
    service = load_key_wrapper(state)
    assert service.hardware_bound
    sealed = tool.seal("proxy/totp", b"a TOTP secret", b"alice")
    assert service.open("proxy/totp", sealed, b"alice") == b"a TOTP secret"
    # The key is not in the credential file: it is sealed, not stored.
    key = (service_dir / CREDENTIAL_NAME).read_bytes()
    assert len(key) == 32 and key not in credential.read_bytes()


def test_a_credential_that_does_not_open_is_an_error_never_a_new_key(
        credential: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    monkeypatch.delenv("BIFENTE_STATE_KEY_FILE", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    altered = bytearray(credential.read_bytes())  # base64 text: change one character
    altered[len(altered) // 2] ^= 0x01
    credential.write_bytes(bytes(altered))
    with pytest.raises(StateKeyError, match="systemd-creds cannot decrypt"):
        load_key_wrapper(tmp_path / "state", credstore=credential)
    assert not (tmp_path / "config").exists()  # no fallback key made behind its back
