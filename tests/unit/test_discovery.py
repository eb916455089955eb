"""mDNS discovery on real loopback sockets: announce, browse, conflicts, goodbyes, TXT checks."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import secrets
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator

import pytest
import pytest_asyncio
import zeroconf._core
from zeroconf import DNSQuestionType, IPVersion, ServiceStateChange, Zeroconf
from zeroconf.asyncio import AsyncServiceBrowser, AsyncServiceInfo, AsyncZeroconf

from bifente.client.identity import fingerprint_of
from bifente.edged.cli import discover as discover_cli
from bifente.edged.discovery import (
    PROTOCOL_VERSION,
    SERVICE_TYPE,
    TXT_KEYS,
    Advert,
    Announcer,
    AnnouncerState,
    browse,
    default_name,
    format_fingerprint,
    parse_static,
)

# Multicast on 127.0.0.1 only, as python-zeroconf's own tests do: no packet leaves the host.
LOOPBACK = {"interfaces": ["127.0.0.1"], "ip_version": IPVersion.V4Only}
# A responder waits 1 s before multicasting a record again (RFC 6762 §6), so a browse just
# after an announcement needs a little more than a second.
BROWSE = 2.0
FP1, FP2 = fingerprint_of(b"certificate one"), fingerprint_of(b"certificate two")
CAPS = ("vitale", "cps", "sign", "consent")


def unique() -> str:
    """An instance name no concurrent test run on this host will use."""
    return f"bifente-t{secrets.token_hex(4)}"


def advert(name: str, fingerprint: str = FP1, port: int = 8443) -> Advert:
    """An advert on 127.0.0.1."""
    return Advert(name=name, port=port, addresses=("127.0.0.1",), fingerprint=fingerprint,
                  capabilities=CAPS, model="bifente-pico-1")


@pytest.fixture
def fast_mdns(monkeypatch: pytest.MonkeyPatch) -> None:
    """Shrink python-zeroconf's probe and announce spacing (RFC timings cost ~1.2 s a start)."""
    for attr, value in (("_CHECK_TIME", 40), ("_PROBE_RANDOM_DELAY_INTERVAL", (5, 10)),
                        ("_REGISTER_TIME", 20), ("_UNREGISTER_TIME", 20)):
        if hasattr(zeroconf._core, attr):  # renamed upstream: tests stay right, only slower
            monkeypatch.setattr(zeroconf._core, attr, value)


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@pytest_asyncio.fixture
async def loop_guard() -> AsyncIterator[None]:
    """Fail if a callback blocks the loop for 100 ms, or a task or thread outlives the test."""
    loop = asyncio.get_running_loop()
    slow = _Collect()
    logging.getLogger("asyncio").addHandler(slow)
    loop.set_debug(True)
    loop.slow_callback_duration = 0.1
    threads = set(threading.enumerate())
    try:
        yield
    finally:
        loop.set_debug(False)
        logging.getLogger("asyncio").removeHandler(slow)
    await asyncio.sleep(0)
    leaked = [t for t in asyncio.all_tasks() if t is not asyncio.current_task() and not t.done()]
    assert not leaked, f"tasks left running: {leaked}"
    # python-zeroconf's one-time engine setup (opening and joining its multicast sockets)
    # is the library's synchronous code, not ours: under CI's disk and CPU load it once took
    # 151 ms. Every other callback, ours included, stays under the 100 ms bound.
    blocked = [m for m in slow.messages if m.startswith("Executing")
               and "AsyncEngine._async_setup()" not in m]
    assert not blocked, f"the event loop was blocked: {blocked}"
    extra = [t for t in set(threading.enumerate()) - threads
             if t.is_alive() and not t.name.startswith("asyncio_")]
    assert not extra, f"threads left running: {extra}"


@pytest.fixture
def caplog_discovery(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    """Warnings of bifente.edged.discovery."""
    with caplog.at_level(logging.WARNING, logger="bifente.edged.discovery"):
        yield caplog


async def ours(*names: str, timeout: float = BROWSE) -> dict[str, object]:
    """Browse on loopback and keep only the terminals with these names."""
    return {t.name: t for t in await browse(timeout, **LOOPBACK) if t.name in names}


# --- the advert and its TXT record -----------------------------------------------------------

def test_txt_has_only_the_allowed_keys_and_no_personal_data() -> None:
    txt = advert("bifente-cabinet").txt()
    assert tuple(txt) == TXT_KEYS == ("v", "fp", "caps", "model")
    assert txt == {"v": PROTOCOL_VERSION, "fp": f"sha256:{FP1}",
                   "caps": "vitale,cps,sign,consent", "model": "bifente-pico-1"}


def test_fingerprint_is_sha256_of_the_der_grouped_for_people() -> None:
    empty = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"  # SHA-256("")
    assert fingerprint_of(b"") == empty
    assert Advert.for_certificate(b"", name="b", port=1, model="pcsc").fingerprint == empty
    grouped = format_fingerprint("0123456789abcdef" * 4)
    assert grouped.split(" ") == ["0123", "4567", "89ab", "cdef"] * 4


def test_default_name_leaves_room_for_a_rename() -> None:
    name = default_name()
    assert name.startswith("bifente-") and len(name.encode()) <= 59


@pytest.mark.parametrize(("fields", "message"), [
    ({"fingerprint": FP1.upper()}, "64 lower-case hex"),
    ({"fingerprint": FP1[:62]}, "64 lower-case hex"),
    ({"model": "m" * 250}, "RFC 6763 §6.1"),
    ({"capabilities": ("sign,consent",)}, "capability"),
    ({"capabilities": ("c" * 40,) * 8}, "capability"),
    ({"name": "b" * 60}, "RFC 6763 §4.1.1"),
    ({"name": ""}, "instance name"),
    ({"port": 0}, "port"),
    ({"addresses": ("not-an-ip",)}, "does not appear to be an IPv4 or IPv6 address"),
    ({"model": "Dr Dupont\n"}, "printable"),
])
def test_advert_rejects_what_does_not_fit_a_txt_record(fields: dict[str, object],
                                                       message: str) -> None:
    base: dict[str, object] = {"name": "bifente-x", "port": 8443, "addresses": ("127.0.0.1",),
                               "fingerprint": FP1, "model": "pcsc"}
    with pytest.raises(ValueError, match=message):
        Advert(**{**base, **fields})  # type: ignore[arg-type]


def test_txt_entry_of_exactly_255_bytes_is_accepted() -> None:
    model = "m" * (255 - len("model="))
    assert Advert(**_fields() | {"model": model}).txt()["model"] == model  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="256 bytes"):
        Advert(**_fields() | {"model": model + "m"})  # type: ignore[arg-type]


def _fields() -> dict[str, object]:
    return {"name": "bifente-x", "port": 8443, "addresses": ("127.0.0.1",), "fingerprint": FP1,
            "model": "pcsc"}


# --- static addresses ------------------------------------------------------------------------

@pytest.mark.parametrize(("text", "host", "addresses", "name"), [
    (f"192.0.2.7:8443#sha256:{FP1}", "192.0.2.7", ("192.0.2.7",), "192.0.2.7:8443"),
    (f"[fd00::7]:8443#sha256:{FP1}", "fd00::7", ("fd00::7",), "[fd00::7]:8443"),
    (f"edged-3.clinic.example:9000#sha256:{FP1}", "edged-3.clinic.example", (),
     "edged-3.clinic.example:9000"),
    # as `openssl x509 -fingerprint -sha256` prints it, and as `bifente discover` groups it
    (f"192.0.2.7:8443#SHA256:{':'.join(FP1[i:i + 2] for i in range(0, 64, 2)).upper()}",
     "192.0.2.7", ("192.0.2.7",), "192.0.2.7:8443"),
    (f"192.0.2.7:8443#sha256:{format_fingerprint(FP1)}", "192.0.2.7", ("192.0.2.7",),
     "192.0.2.7:8443"),
])
def test_static_address_gives_a_terminal_to_pin(text: str, host: str,
                                                addresses: tuple[str, ...], name: str) -> None:
    t = parse_static(text)
    assert (t.host, t.addresses, t.name, t.fingerprint, t.source) == (
        host, addresses, name, FP1, "static")
    assert t.port in (8443, 9000)


@pytest.mark.parametrize(("text", "problem"), [
    ("192.0.2.7:8443", "no certificate fingerprint to pin"),
    (f"192.0.2.7#sha256:{FP1}", "no HOST:PORT before '#'"),
    (f":8443#sha256:{FP1}", "no HOST:PORT before '#'"),
    (f"192.0.2.7:0#sha256:{FP1}", "port '0' is not 1 to 65535"),
    (f"192.0.2.7:65536#sha256:{FP1}", "port '65536' is not 1 to 65535"),
    (f"192.0.2.7:https#sha256:{FP1}", "port 'https' is not 1 to 65535"),
    (f"fd00::7:8443#sha256:{FP1}", "put an IPv6 address in brackets"),
    (f"[fd00::zz]:8443#sha256:{FP1}", "is not an IPv6 address"),
    (f"bad_host:8443#sha256:{FP1}", "is not an IPv4 address or a host name"),
    ("192.0.2.7:8443#sha256:abcd", "not sha256: followed by 64 hex digits"),
    (f"192.0.2.7:8443#{FP1}", "not sha256: followed by 64 hex digits"),
    (f"192.0.2.7:8443#md5:{FP1}", "not sha256: followed by 64 hex digits"),
])
def test_static_address_errors_are_one_clear_line(text: str, problem: str) -> None:
    with pytest.raises(ValueError, match="expected HOST:PORT#sha256:FINGERPRINT") as err:
        parse_static(text)
    assert problem in str(err.value) and "\n" not in str(err.value)


# --- announcing and browsing on loopback ------------------------------------------------------

@pytest.mark.asyncio
@pytest.mark.usefixtures("loop_guard", "fast_mdns")
async def test_announce_then_browse_from_another_instance() -> None:
    name = f"{unique()}.accueil Médical"  # dots, spaces, UTF-8: all fine in an instance name
    async with Announcer(advert(name), **LOOPBACK) as announcer:
        assert announcer.state is AnnouncerState.ANNOUNCED and announcer.name == name
        found = await asyncio.wait_for(ours(name), BROWSE + 3)
        # the raw TXT record as a third party sees it: only the allowed keys
        async with AsyncZeroconf(**LOOPBACK) as other:
            info = AsyncServiceInfo(SERVICE_TYPE, announcer.service_name)
            assert await info.async_request(other.zeroconf, 2000,
                                            question_type=DNSQuestionType.QM)
    t = found[name]
    assert (t.addresses, t.port, t.fingerprint, t.version, t.capabilities, t.model) == (
        ("127.0.0.1",), 8443, FP1, "1", CAPS, "bifente-pico-1")
    assert t.host == f"bifente-{FP1[:12]}.local."
    assert set(info.properties) == {k.encode() for k in TXT_KEYS}
    assert info.properties[b"fp"] == f"sha256:{FP1}".encode()
    assert announcer.state is AnnouncerState.CLOSED


async def until(condition: Callable[[], bool], timeout: float) -> None:
    """Wait until the condition holds, or fail after `timeout` seconds."""
    # What is waited for (a name python-zeroconf changes while it probes, a record logged
    # from its listener) happens inside zeroconf, which notifies nobody: poll it.
    async def poll() -> None:
        while not condition():  # noqa: ASYNC110
            await asyncio.sleep(0.02)
    await asyncio.wait_for(poll(), timeout)


@pytest.mark.asyncio
@pytest.mark.usefixtures("loop_guard", "fast_mdns")
async def test_same_name_twice_the_second_is_renamed_and_both_are_found(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # Probes 250 ms apart as RFC 6762 §8.1 says (python-zeroconf uses 500): probing must last
    # long enough to hear the first announcer defend its name.
    monkeypatch.setattr(zeroconf._core, "_CHECK_TIME", 250, raising=False)
    monkeypatch.setattr(zeroconf._core, "_PROBE_RANDOM_DELAY_INTERVAL", (150, 250),
                        raising=False)
    name = unique()
    # If the defence comes too late for the probes (it does when the host is busy), the
    # RFC 6762 §8.2 tie-break decides after the announcement: make the newcomer lose it too.
    old, new = "f0" * 32, "0f" * 32
    first = Announcer(advert(name, old, 8443), **LOOPBACK)
    second = Announcer(advert(name, new, 8444), **LOOPBACK)
    try:
        await asyncio.wait_for(first.start(), 5)
        # Let the first one's announcements age past 1 s: the second hears of it only by
        # asking, as a daemon booting next to a long-running one does.
        await asyncio.sleep(1.1)
        await asyncio.wait_for(second.start(), 5)
        await until(lambda: second.name != first.name, 5)
        assert first.name == name and second.name == f"{name}-2"
        assert second.service_name == f"{name}-2.{SERVICE_TYPE}"
        # browse only now: a browse's own QM query during the probes would reveal the first
        found = await asyncio.wait_for(ours(name, f"{name}-2", timeout=1.5), 5)
    finally:
        await second.close()
        await first.close()
    assert found[name].fingerprint == old and found[f"{name}-2"].fingerprint == new
    assert [found[name].port, found[f"{name}-2"].port] == [8443, 8444]
    # start to discoverable, measured: probing is most of it
    for a in (first, second):
        assert a.time_to_discoverable is not None and 0.5 < a.time_to_discoverable < 3.0


@pytest.mark.asyncio
@pytest.mark.usefixtures("loop_guard", "fast_mdns")
@pytest.mark.parametrize(("rival_host", "keeps_name"), [("a-rival.local.", True),
                                                        ("z-rival.local.", False)])
async def test_a_rival_announced_later_is_settled_by_the_tie_break(
        rival_host: str, keeps_name: bool, caplog_discovery: pytest.LogCaptureFixture) -> None:
    # Two segments joined, or a defence lost: a rival announces our name without probing.
    name = unique()
    async with Announcer(advert(name), **LOOPBACK) as ours_, AsyncZeroconf(**LOOPBACK) as rival:
        info = AsyncServiceInfo(SERVICE_TYPE, f"{name}.{SERVICE_TYPE}", port=1,
                                properties={"v": "1", "fp": f"sha256:{FP2}", "model": "x"},
                                server=rival_host, parsed_addresses=["127.0.0.1"])
        await rival.async_register_service(info, cooperating_responders=True)
        await until(lambda: any("also announced by" in r.getMessage()
                                for r in caplog_discovery.records), 3)
        if keeps_name:  # our SRV target sorts later: keep the name, announce again
            await asyncio.sleep(0.3)
            assert ours_.name == name
            assert "keeping it" in caplog_discovery.text
        else:  # the rival's sorts later: give the name up, no goodbye, take the next one
            await until(lambda: ours_.name != name, 3)
            assert ours_.name == f"{name}-2" and ours_.state is AnnouncerState.ANNOUNCED
            found = await asyncio.wait_for(ours(name, f"{name}-2"), BROWSE + 3)
            assert found[f"{name}-2"].fingerprint == FP1  # ours, under the new name
            assert found[name].fingerprint == FP2  # the rival's PTR survived: no goodbye


@pytest.mark.asyncio
@pytest.mark.usefixtures("loop_guard", "fast_mdns")
async def test_close_sends_goodbyes_that_a_browser_sees_at_once() -> None:
    name = unique()
    added, removed = asyncio.Event(), asyncio.Event()

    def on_change(zeroconf: Zeroconf, service_type: str, name: str,
                  state_change: ServiceStateChange) -> None:
        if name == f"{wanted}.{SERVICE_TYPE}":
            (added if state_change is ServiceStateChange.Added else removed).set()

    wanted = name
    async with AsyncZeroconf(**LOOPBACK) as watcher:
        browser = AsyncServiceBrowser(watcher.zeroconf, SERVICE_TYPE, handlers=[on_change],
                                      question_type=DNSQuestionType.QM)
        try:
            announcer = Announcer(advert(name), **LOOPBACK)
            await announcer.start()
            await asyncio.wait_for(added.wait(), 2)
            assert not removed.is_set()
            began = time.monotonic()
            await announcer.close()
            await asyncio.wait_for(removed.wait(), 1)  # TTL 0 (RFC 6762 §10.1), not expiry
            assert time.monotonic() - began < 1
            await announcer.close()  # idempotent
            assert announcer.state is AnnouncerState.CLOSED
        finally:
            await browser.async_cancel()


@pytest.mark.asyncio
@pytest.mark.usefixtures("loop_guard", "fast_mdns")
async def test_update_changes_the_fingerprint_a_new_browse_sees() -> None:
    name = unique()
    async with Announcer(advert(name, FP1), **LOOPBACK) as announcer:
        await announcer.update(advert(name, FP2, port=9443))
        assert announcer.advert.fingerprint == FP2 and announcer.name == name
        found = await asyncio.wait_for(ours(name), BROWSE + 3)
        with pytest.raises(ValueError, match="instance name cannot change"):
            await announcer.update(advert(unique(), FP2))
    assert (found[name].fingerprint, found[name].port) == (FP2, 9443)
    with pytest.raises(RuntimeError, match="closed"):
        await announcer.update(advert(name, FP1))


@pytest.mark.asyncio
@pytest.mark.usefixtures("loop_guard", "fast_mdns")
async def test_malformed_txt_is_skipped_with_a_warning_never_a_crash(
        caplog_discovery: pytest.LogCaptureFixture) -> None:
    good = unique()
    fp = f"sha256:{FP1}".encode()
    bad = {
        "no-fp": {b"v": b"1", b"caps": b"cps", b"model": b"pcsc"},
        "short-fp": {b"v": b"1", b"fp": b"sha256:abcd", b"model": b"pcsc"},
        "no-prefix": {b"v": b"1", b"fp": FP1.encode(), b"model": b"pcsc"},
        "no-version": {b"fp": fp, b"model": b"pcsc"},
        "fp-flag": {b"v": b"1", b"fp": None},
        "not-utf8": {b"v": b"1", b"fp": fp, b"model": b"\xff\xfe"},
        "escape": {b"v": b"1", b"fp": fp, b"model": b"\x1b[2Jowned"},
    }
    names = {key: f"{good}-{key}" for key in bad}
    async with AsyncZeroconf(**LOOPBACK) as rogue, Announcer(advert(good), **LOOPBACK):
        for key, props in bad.items():
            info = AsyncServiceInfo(SERVICE_TYPE, f"{names[key]}.{SERVICE_TYPE}", port=1,
                                    properties=props, server="rogue.local.",
                                    parsed_addresses=["127.0.0.1"])
            await rogue.async_register_service(info, cooperating_responders=True)
        found = await asyncio.wait_for(ours(good, *names.values()), BROWSE + 3)
    assert list(found) == [good]
    for key, name in names.items():
        assert any(name in r.getMessage() and r.levelno == logging.WARNING
                   for r in caplog_discovery.records), key


@pytest.mark.asyncio
@pytest.mark.usefixtures("loop_guard", "fast_mdns")
async def test_states_are_explicit_and_close_is_idempotent() -> None:
    announcer = Announcer(advert(unique()), **LOOPBACK)
    with pytest.raises(RuntimeError, match="new"):
        await announcer.update(advert(announcer.name))
    await announcer.close()
    await announcer.close()
    assert announcer.state is AnnouncerState.CLOSED
    with pytest.raises(RuntimeError, match="closed; start"):
        await announcer.start()

    no_address = Advert(name=unique(), port=1, addresses=(), fingerprint=FP1, model="pcsc")
    with pytest.raises(ValueError, match="no address to announce"):
        await Announcer(no_address, **LOOPBACK).start()

    twice = Announcer(advert(unique()), **LOOPBACK)
    await twice.start()
    try:
        with pytest.raises(RuntimeError, match="announced; start"):
            await twice.start()
    finally:
        await twice.close()


@pytest.mark.asyncio
@pytest.mark.usefixtures("loop_guard", "fast_mdns")
async def test_close_during_start_waits_then_says_goodbye_and_cancel_leaks_nothing() -> None:
    announcer = Announcer(advert(unique()), **LOOPBACK)
    starting = asyncio.create_task(announcer.start())
    await asyncio.sleep(0.01)
    await asyncio.wait_for(announcer.close(), 3)  # shutdown during start-up
    await starting
    assert announcer.state is AnnouncerState.CLOSED and announcer.registered_at is not None

    cancelled = Announcer(advert(unique()), **LOOPBACK)
    task = asyncio.create_task(cancelled.start())
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert cancelled.state is AnnouncerState.CLOSED
    await cancelled.close()


# --- bifente discover --------------------------------------------------------------------------

def _cli(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="bifente")
    discover_cli.add_parsers(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["discover", *argv])
    return int(args.func(args))


@pytest.mark.asyncio
@pytest.mark.usefixtures("loop_guard", "fast_mdns")
async def test_cli_json_lists_the_terminal_with_its_fingerprint(
        capsys: pytest.CaptureFixture[str]) -> None:
    name = unique()
    async with Announcer(advert(name), **LOOPBACK):
        code = await asyncio.wait_for(asyncio.to_thread(
            _cli, "--json", "--timeout", str(BROWSE), "--interface", "127.0.0.1"), BROWSE + 5)
    assert code == 0
    listed = {t["name"]: t for t in json.loads(capsys.readouterr().out)}
    assert listed[name] == {
        "name": name, "host": f"bifente-{FP1[:12]}.local.", "addresses": ["127.0.0.1"],
        "port": 8443, "fingerprint": f"sha256:{FP1}", "version": "1",
        "capabilities": list(CAPS), "model": "bifente-pico-1", "source": "mdns"}


def test_cli_text_groups_the_fingerprint_for_people(capsys: pytest.CaptureFixture[str]) -> None:
    assert _cli("--timeout", "0", "--static", f"192.0.2.7:8443#sha256:{FP1}") == 0
    out = capsys.readouterr().out
    groups = format_fingerprint(FP1).split(" ")
    assert "192.0.2.7:8443  (static)" in out and "port 8443" in out
    assert f"sha256 {' '.join(groups[:8])}" in out and " ".join(groups[8:]) in out


def test_cli_nothing_found_exits_0_with_a_hint(capsys: pytest.CaptureFixture[str]) -> None:
    assert _cli("--timeout", "0") == 0
    assert _cli("--timeout", "0", "--json") == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out) == []
    assert captured.err.splitlines() == [discover_cli.NOT_FOUND] * 2
    assert "use --static HOST:PORT#sha256:FP" in discover_cli.NOT_FOUND


def test_cli_bad_static_is_a_value_error_for_the_one_line_edge() -> None:
    with pytest.raises(ValueError, match="expected HOST:PORT#sha256:FINGERPRINT"):
        _cli("--timeout", "0", "--static", "192.0.2.7:8443")


def test_probes_are_250_ms_apart_as_rfc_6762_says() -> None:
    # RFC 6762 §8.1; python-zeroconf 0.154 uses 500 ms unless edged sets its constant.
    import zeroconf._core

    from bifente.edged.discovery import announce as discovery

    discovery._probe_at_rfc_pace()
    assert zeroconf._core._CHECK_TIME == discovery.PROBE_INTERVAL_MS == 250
    assert zeroconf._core._PROBE_RANDOM_DELAY_INTERVAL == (0, 250)
