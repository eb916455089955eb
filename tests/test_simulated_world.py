"""The simulated world (simulators/world.py): its parts start together, edged's configuration
points at them, and they stop together, also when a later part fails to start."""

from __future__ import annotations

import socket
import ssl
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from bifente.edged.simulation import simulated_world
from bifente.simulators.world import CardsOn, DmpOptions, MailOptions, SimulatedWorld


def _answers(host: str, port: int) -> bool:
    """Whether something accepts a TCP connection on host:port."""
    try:
        with socket.create_connection((host, port), timeout=2):
            return True
    except OSError:
        return False


def test_mail_and_dmp_start_together_and_edged_is_pointed_at_them() -> None:
    world = simulated_world("this test", None, None, cards="none")
    with world:
        assert world.mail is not None and world.dmp is not None
        assert world.terminal is None and world.slots is None
        overrides = world.edged_overrides()
        assert set(overrides) == {"mail", "dmp"}
        mail = overrides["mail"]
        assert isinstance(mail, dict)
        cabinet = mail["domains"]["cabinet.test"]
        assert _answers(mail["host"], cabinet["submission_port"])
        assert Path(mail["password_file"]).read_text().strip() == world.mail_password
        assert Path(mail["intermediates_file"]).read_bytes().count(b"BEGIN CERTIFICATE") == 2
        dmp = overrides["dmp"]
        assert isinstance(dmp, dict)
        context = ssl.create_default_context(cafile=dmp["ca_file"])
        with urllib.request.urlopen(f"{dmp['url']}/api/health", context=context, timeout=5) as page:
            assert page.status == 200
        operator_dir = world.mail.data_dir
        dmp_port = world.dmp.port
    assert not _answers(mail["host"], cabinet["submission_port"])
    assert not _answers("127.0.0.1", dmp_port)
    assert not operator_dir.exists() and not Path(mail["intermediates_file"]).exists()
    assert world.mail is None and world.dmp is None and world.edged_overrides() == {}


def test_given_folders_are_kept_and_options_reach_the_parts(tmp_path: Path) -> None:
    with SimulatedWorld(None, None, cards=CardsOn.NONE,
                        mail=MailOptions(tmp_path / "op", domains=("chu.test",),
                                         max_message_bytes=1024),
                        dmp=DmpOptions(tmp_path / "dmp", admin_token="world")) as world:
        assert world.mail is not None and world.dmp is not None
        assert world.mail.domains == ("chu.test",) and world.mail.info.max_message_bytes == 1024
        assert world.dmp.admin_token == "world"
        assert world.edged_overrides()["dmp"] == {
            "url": world.dmp.url, "ca_file": str(world.dmp.cafile), "admin_token": "world"}
    assert (tmp_path / "op" / "operator.json").exists() and (tmp_path / "dmp").is_dir()


def test_a_part_that_fails_to_start_stops_the_ones_before_it() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        world = SimulatedWorld(None, None, cards=CardsOn.NONE,
                               dmp=DmpOptions(port=busy.getsockname()[1]))
        with pytest.raises(OSError):
            world.start()
    # The mail operator started first: stopped again (its thread too, or the leak guard fails).
    assert world.mail is None and world.edged_overrides() == {}


def test_vpcd_cards_are_named_by_profile() -> None:
    with pytest.raises(TypeError):
        SimulatedWorld(object(), None, cards=CardsOn.PCSC)  # type: ignore[arg-type]


def test_a_part_stopped_mid_run_comes_back_as_the_same_server(tmp_path: Path) -> None:
    with SimulatedWorld(None, None, cards=CardsOn.NONE, mail=MailOptions(tmp_path / "op"),
                        dmp=True) as world:
        assert world.mail is not None and world.dmp is not None
        before = world.edged_overrides()
        submission = before["mail"]["domains"]["cabinet.test"]["submission_port"]
        dmp_port = world.dmp.port
        world.stop_mail()
        world.stop_dmp()
        assert world.mail is None and world.dmp is None
        assert not _answers("127.0.0.1", submission) and not _answers("127.0.0.1", dmp_port)
        assert world.edged_overrides() == before  # edged still points at them while down
        world.start_mail()
        host = world.start_dmp()
        assert _answers("127.0.0.1", submission) and host.port == dmp_port
        assert host.admin_token == before["dmp"]["admin_token"]
        assert world.edged_overrides() == before
    assert not _answers("127.0.0.1", dmp_port) and world.edged_overrides() == {}


class _Front:
    """A stand-in for a proxy in front of the host: a listening socket it names."""

    def __init__(self) -> None:
        self.socket = socket.socket()
        self.socket.bind(("127.0.0.1", 0))
        self.socket.listen()
        self.closed = False

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.socket.getsockname()[1]}"

    def close(self) -> None:
        self.closed = True
        self.socket.close()


def test_edged_is_pointed_at_the_front_of_the_dmp_host() -> None:
    fronts: list[_Front] = []

    def front(host: object) -> _Front:
        fronts.append(_Front())
        return fronts[-1]

    with SimulatedWorld(None, None, cards=CardsOn.NONE, mail=False,
                        dmp=DmpOptions(front=front)) as world:
        assert world.dmp is not None and world.dmp_front is fronts[0]
        assert world.edged_overrides()["dmp"]["url"] == fronts[0].url != world.dmp.url
        world.stop_dmp()
        world.start_dmp()  # the host behind it restarts, the front stays
        assert fronts == [world.dmp_front] and not fronts[0].closed
    assert fronts[0].closed


def test_a_directory_apart_stays_up_while_the_operator_is_down(tmp_path: Path) -> None:
    with SimulatedWorld(None, None, cards=CardsOn.NONE, dmp=False,
                        mail=MailOptions(tmp_path / "op", directory_apart=True)) as world:
        assert world.mail is not None
        table = world.edged_overrides()["mail"]
        directory = urllib.parse.urlsplit(table["directory_url"])
        assert table["directory_url"] != world.mail.info.directory_url
        world.stop_mail()
        assert not _answers("127.0.0.1", table["domains"]["cabinet.test"]["submission_port"])
        assert _answers(directory.hostname or "", directory.port or 443)
    assert not _answers(directory.hostname or "", directory.port or 443)
    assert (tmp_path / "op-directory").is_dir()
