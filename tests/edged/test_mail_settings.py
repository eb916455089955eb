"""[mail] settings: the operator.json shortcut, explicit keys, and one clear error per bad key."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from edged.config import Config, ConfigError
from edged.daemon import Daemon
from edged.services.mail import SIMULATOR_TEST_PASSWORD, MailSettings, extension
from simulators.pki import DATA

CA = str(DATA / "ca" / "test-root.crt.pem")


def operator_json(tmp: Path) -> Path:
    path = tmp / "operator.json"
    path.write_text(json.dumps({
        "version": 1, "host": "127.0.0.1", "ca_file": CA,
        "directory_url": "https://127.0.0.1:41001",
        "domains": {"cabinet.test": {"submission": 41002, "relay": 41003, "pop3s": 41004,
                                     "server_name": "smtp.cabinet.test"}},
        "trusted": ["cabinet.test"], "max_message_bytes": 1000, "require_smime": True}))
    return path


def test_operator_json_fills_the_rest(tmp_path: Path) -> None:
    s = MailSettings.from_table({"operator_json": str(operator_json(tmp_path))})
    assert (s.host, s.directory_url, str(s.ca_file)) == ("127.0.0.1", "https://127.0.0.1:41001",
                                                          CA)
    assert s.password == SIMULATOR_TEST_PASSWORD and "test-password" not in repr(s)
    assert s.ports("claire.martin@cabinet.test") == (41002, 41004)
    assert s.max_attachment == 25 * 1024 * 1024 and s.mode == "gcm" and s.address is None


def test_operator_json_ca_file_must_exist(tmp_path: Path) -> None:
    path = operator_json(tmp_path)
    path.write_text(path.read_text().replace(CA, str(tmp_path / "gone.pem")))
    with pytest.raises(ConfigError, match="ca_file: no such file"):
        MailSettings.from_table({"operator_json": str(path)})


def test_explicit_settings(tmp_path: Path) -> None:
    password = tmp_path / "password"
    password.write_text("s3cret\n")
    s = MailSettings.from_table({
        "host": "smtp.example.test", "directory_url": "https://dir.example.test",
        "ca_file": CA, "password_file": str(password), "address": "a@example.test",
        "max_attachment_bytes": 1000, "mode": "cbc", "submission_port": 2587})
    assert s.password == "s3cret" and s.ports("a@example.test") == (2587, 995)
    assert (s.max_attachment, s.mode, s.address) == (1000, "cbc", "a@example.test")


OP = "<operator.json>"


@pytest.mark.parametrize(("table", "message"), [
    ({"operator_json": OP, "hots": "x"}, "unknown setting(s) hots"),
    ({"host": "h", "ca_file": CA, "password_file": CA}, "directory_url is required"),
    ({"host": "h", "ca_file": CA, "directory_url": "https://d"}, "password_file is required"),
    ({"operator_json": "/nonexistent/operator.json"}, "operator_json: no such file"),
    ({"operator_json": CA}, "operator_json: not an operator.json"),
    ({"operator_json": OP, "mode": "ecb"}, "mode must be"),
    ({"operator_json": OP, "max_attachment_bytes": "25MB"}, "max_attachment_bytes must be an"),
    ({"operator_json": OP, "max_attachment_bytes": 0}, "max_attachment_bytes must be an"),
    ({"operator_json": OP, "submission_port": 70000}, "submission_port must be an integer"),
    ({"operator_json": OP, "directory_url": "http://dir"}, "directory_url must be https://"),
    ({"operator_json": OP, "address": "nobody"}, "address must be an e-mail address"),
    ({"operator_json": OP, "ca_file": ""}, "ca_file must be a non-empty string"),
])
def test_bad_settings_are_one_clear_error(tmp_path: Path, table: dict, message: str) -> None:
    path = str(operator_json(tmp_path))
    table = {k: path if v == OP else v for k, v in table.items()}
    with pytest.raises(ConfigError, match=re.escape(message)):
        MailSettings.from_table(table)


def test_no_mail_section_no_service(tmp_path: Path) -> None:
    daemon = Daemon(Config(host="127.0.0.1", port=0, state_dir=tmp_path, mdns=False,
                           pcsc=False))
    assert extension(daemon) is None


@pytest.mark.asyncio
async def test_a_sender_domain_the_operator_does_not_serve_fails_for_good(
        edged, tmp_path: Path) -> None:
    import asyncio

    from edged.services.mail import service_of

    bench = await edged(mail={"operator_json": str(operator_json(tmp_path))})
    outbox = service_of(bench.daemon).outbox
    outbox.enqueue("<x@elsewhere.test>", "a@elsewhere.test", ("b@cabinet.test",), b"body")
    for _ in range(100):
        item = outbox.get("<x@elsewhere.test>")
        if item is not None and item.state == "failed":
            break
        await asyncio.sleep(0.02)
    assert item is not None and item.state == "failed" and item.attempts == 1
    assert "does not serve elsewhere.test" in (item.last_error or "")
