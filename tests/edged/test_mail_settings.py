"""[mail] settings: explicit keys, per-domain ports, and one clear error per bad key."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from bifente.edged.config import Config, ConfigError
from bifente.edged.daemon import Daemon
from bifente.edged.services.mail import MailSettings, extension
from bifente.simulators.mail import TEST_PASSWORD, DomainPorts, OperatorInfo, mail_table
from bifente.simulators.pki import DATA

CA = str(DATA / "ca" / "test-root.crt.pem")


def password_file(tmp: Path) -> str:
    path = tmp / "password"
    path.write_text("s3cret\n")
    return str(path)


def operator_table(tmp: Path) -> dict:
    """A [mail] table for an operator serving cabinet.test on its own ports."""
    return {"host": "127.0.0.1", "directory_url": "https://127.0.0.1:41001", "ca_file": CA,
            "password_file": password_file(tmp),
            "domains": {"cabinet.test": {"submission_port": 41002, "pop3_port": 41004}}}


def test_per_domain_ports(tmp_path: Path) -> None:
    s = MailSettings.from_table(operator_table(tmp_path))
    assert (s.host, s.directory_url, str(s.ca_file)) == ("127.0.0.1", "https://127.0.0.1:41001",
                                                          CA)
    assert s.password == "s3cret" and "s3cret" not in repr(s)
    assert s.ports("claire.martin@Cabinet.test") == (41002, 41004)
    assert s.max_attachment == 25 * 1024 * 1024 and s.mode == "gcm" and s.address is None


def test_explicit_ports_win_over_the_domains_table(tmp_path: Path) -> None:
    s = MailSettings.from_table(operator_table(tmp_path) | {"submission_port": 2587})
    assert s.ports("claire.martin@cabinet.test") == (2587, 41004)


def test_the_product_has_no_simulator_shortcut(tmp_path: Path) -> None:
    # The simulator's operator.json is not a product setting: a config naming it is refused.
    with pytest.raises(ConfigError, match=re.escape("unknown setting(s) operator_json")):
        MailSettings.from_table(operator_table(tmp_path) | {"operator_json": CA})
    with pytest.raises(ConfigError, match="password_file is required"):
        MailSettings.from_table({k: v for k, v in operator_table(tmp_path).items()
                                 if k != "password_file"})


def test_the_simulator_writes_the_table_from_its_operator_json(tmp_path: Path) -> None:
    OperatorInfo("127.0.0.1", CA, "https://127.0.0.1:41001",
                 {"cabinet.test": DomainPorts(41002, 41003, 41004, "smtp.cabinet.test")},
                 ("cabinet.test",), 1000, True).write(tmp_path)
    table = mail_table(tmp_path, timeout=5)
    s = MailSettings.from_table(table)
    assert s.password == TEST_PASSWORD and s.timeout == 5
    assert s.ports("claire.martin@cabinet.test") == (41002, 41004)
    assert os.stat(table["password_file"]).st_mode & 0o777 == 0o600


def test_explicit_settings(tmp_path: Path) -> None:
    password = tmp_path / "password"
    password.write_text("s3cret\n")
    s = MailSettings.from_table({
        "host": "smtp.example.test", "directory_url": "https://dir.example.test",
        "ca_file": CA, "password_file": str(password), "address": "a@example.test",
        "max_attachment_bytes": 1000, "mode": "cbc", "submission_port": 2587})
    assert s.password == "s3cret" and s.ports("a@example.test") == (2587, 995)
    assert (s.max_attachment, s.mode, s.address) == (1000, "cbc", "a@example.test")


OP = {"host": "h", "directory_url": "https://d", "ca_file": CA}


@pytest.mark.parametrize(("table", "message"), [
    (OP | {"hots": "x"}, "unknown setting(s) hots"),
    ({"host": "h", "ca_file": CA, "password_file": CA}, "directory_url is required"),
    ({"host": "h", "ca_file": CA, "directory_url": "https://d"}, "password_file is required"),
    (OP | {"mode": "ecb"}, "mode must be"),
    (OP | {"max_attachment_bytes": "25MB"}, "max_attachment_bytes must be an"),
    (OP | {"max_attachment_bytes": 0}, "max_attachment_bytes must be an"),
    (OP | {"submission_port": 70000}, "submission_port must be an integer"),
    (OP | {"directory_url": "http://dir"}, "directory_url must be https://"),
    (OP | {"address": "nobody"}, "address must be an e-mail address"),
    (OP | {"ca_file": ""}, "ca_file must be a non-empty string"),
    (OP | {"ca_file": "/nonexistent/ca.pem"}, "ca_file: no such file"),
    (OP | {"domains": "cabinet.test"}, "domains must be a table"),
    (OP | {"domains": {"c.test": {"submission_port": 1}}}, "domains.c.test must give exactly"),
    (OP | {"domains": {"c.test": {"submission_port": 0, "pop3_port": 995}}},
     "domains.c.test: ports must be integers in 1..65535"),
])
def test_bad_settings_are_one_clear_error(tmp_path: Path, table: dict, message: str) -> None:
    if "password_file" not in table and "directory_url is required" not in message \
            and "password_file is required" not in message:
        table = table | {"password_file": password_file(tmp_path)}
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

    from bifente.edged.services.mail import service_of

    bench = await edged(mail=operator_table(tmp_path))
    outbox = service_of(bench.daemon.services.mail).outbox
    outbox.enqueue("<x@elsewhere.test>", "a@elsewhere.test", ("b@cabinet.test",), b"body")
    for _ in range(100):
        item = outbox.get("<x@elsewhere.test>")
        if item is not None and item.state == "failed":
            break
        await asyncio.sleep(0.02)
    assert item is not None and item.state == "failed" and item.attempts == 1
    assert "does not serve elsewhere.test" in (item.last_error or "")
