"""Pairing (codes, limits, lockouts, issuing) and the client registry, end to end over real TLS."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import threading
from collections import Counter
from collections.abc import AsyncIterator, Iterator, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from hypothesis import given
from hypothesis import strategies as st
from websockets.asyncio.client import connect
from websockets.asyncio.server import ServerConnection, serve

from bifente.client.identity import fingerprint_of, validate_client_name
from bifente.client.tls import (
    PinMismatch,
    generate_client_key_and_csr,
    paired_ssl_context,
    pinned_ssl_context,
)
from bifente.edged.api.pairing import (
    PairingError,
    PairingErrorCode,
    PairingManager,
    PairingResult,
    PendingPairing,
)
from bifente.edged.state.clients import (
    SCOPES,
    ClientRegistry,
    DuplicateClient,
    UnknownClient,
)
from bifente.edged.state.keystore import Keystore

PEER = "192.0.2.10"
OTHER_PEER = "192.0.2.11"


class Clock:
    """A monotonic clock the test moves."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class Display:
    """The terminal display at its seam: remembers what it was asked to show."""

    def __init__(self) -> None:
        self.shown: list[tuple[str, str]] = []

    def __call__(self, code: str, client_name: str, scopes: tuple[str, ...]) -> None:
        self.shown.append((code, client_name))

    @property
    def code(self) -> str:
        return self.shown[-1][0]


class Audit:
    """An on_event hook that keeps every event."""

    def __init__(self) -> None:
        self.events: list[tuple[str, dict[str, Any]]] = []

    async def __call__(self, event: str, fields: Mapping[str, Any]) -> None:
        self.events.append((event, dict(fields)))

    def names(self) -> list[str]:
        return [name for name, _ in self.events]


@pytest.fixture(scope="module")
def keystore(tmp_path_factory: pytest.TempPathFactory) -> Keystore:
    return Keystore(tmp_path_factory.mktemp("ks") / "keys", hostname="bifente-test")


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[ClientRegistry]:
    with ClientRegistry(tmp_path / "state" / "clients.sqlite") as reg:
        yield reg


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def display() -> Display:
    return Display()


@pytest.fixture
def audit() -> Audit:
    return Audit()


@pytest.fixture
def manager(
    keystore: Keystore, registry: ClientRegistry, clock: Clock, display: Display, audit: Audit
) -> PairingManager:
    return PairingManager(keystore, registry, show_code=display, clock=clock, on_event=audit)


@pytest.fixture(scope="module")
def csr() -> bytes:
    return generate_client_key_and_csr("Reception")[1]


def wrong(code: str) -> str:
    return f"{(int(code) + 1) % 1_000_000:06d}"


async def refused(coro: Any, code: PairingErrorCode) -> PairingError:
    with pytest.raises(PairingError) as caught:
        await coro
    assert caught.value.code == code, caught.value
    return caught.value


# -- the happy path ------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_right_code_issues_a_certificate_and_registers_the_client(
    manager: PairingManager,
    keystore: Keystore,
    registry: ClientRegistry,
    display: Display,
    audit: Audit,
) -> None:
    key_pem, csr_pem = generate_client_key_and_csr("Reception")
    pending = await manager.begin("Reception", csr_pem, ["cps:sign", "identity:read"], PEER)
    assert isinstance(pending, PendingPairing)
    assert pending.expires_in == 120.0 and pending.scopes == ("identity:read", "cps:sign")
    assert len(pending.pairing_id) >= 22
    assert display.shown == [(display.code, "Reception")]

    result = await manager.complete(pending.pairing_id, display.code, PEER)
    assert isinstance(result, PairingResult)
    cert = x509.load_pem_x509_certificate(result.client_certificate_pem.encode())
    cert.verify_directly_issued_by(keystore.ca_certificate)
    key = serialization.load_pem_private_key(key_pem, password=None)
    assert cert.public_key() == key.public_key()
    assert result.ca_certificate_pem.encode() == keystore.ca_certificate_pem
    assert result.server_fingerprint == keystore.fingerprint
    assert result.scopes == ("identity:read", "cps:sign")
    der = cert.public_bytes(serialization.Encoding.DER)
    assert result.client_fingerprint == fingerprint_of(der)
    client = registry.lookup(fingerprint_of(der))
    assert client is not None and client.active
    assert client.name == "Reception" and client.scopes == ("identity:read", "cps:sign")
    assert audit.names() == ["pair.begin", "pair.complete"]
    # Consumed: the same code does not work twice.
    await refused(
        manager.complete(pending.pairing_id, display.code, PEER),
        PairingErrorCode.UNKNOWN_PAIRING,
    )


@pytest.mark.asyncio
async def test_default_scope_is_identity_read(
    manager: PairingManager, display: Display, csr: bytes
) -> None:
    pending = await manager.begin("Tablet", csr, [], PEER)
    assert pending.scopes == ("identity:read",)
    result = await manager.complete(pending.pairing_id, display.code, PEER)
    assert result.scopes == ("identity:read",)


@pytest.mark.asyncio
async def test_every_scope_but_admin_may_be_granted_by_pairing(
    manager: PairingManager, display: Display, csr: bytes
) -> None:
    remote = tuple(s for s in SCOPES if s != "admin")
    pending = await manager.begin("Desk", csr, list(remote), PEER)
    result = await manager.complete(pending.pairing_id, f" {display.code} ", PEER)
    assert result.scopes == remote
    with pytest.raises(PairingError, match="daemon's machine") as exc:
        await manager.begin("Admin desk", csr, list(SCOPES), "192.0.2.11")
    assert exc.value.code == "invalid_request"


@pytest.mark.asyncio
async def test_show_code_may_be_async(
    keystore: Keystore, registry: ClientRegistry, csr: bytes
) -> None:
    shown: list[str] = []

    async def show(code: str, name: str, scopes: tuple[str, ...]) -> None:
        await asyncio.sleep(0)
        shown.append(code)

    manager = PairingManager(keystore, registry, show_code=show)
    pending = await manager.begin("Async", csr, ["dmp:read"], PEER)
    assert (await manager.complete(pending.pairing_id, shown[0], PEER)).scopes == ("dmp:read",)


@pytest.mark.asyncio
async def test_a_failing_display_leaves_no_pairing_open(
    keystore: Keystore, registry: ClientRegistry, csr: bytes
) -> None:
    def broken(code: str, name: str, scopes: tuple[str, ...]) -> None:
        raise OSError("display unplugged")

    manager = PairingManager(keystore, registry, show_code=broken)
    with pytest.raises(OSError, match="unplugged"):
        await manager.begin("Tablet", csr, [], PEER)
    assert manager.pending_count() == 0


@pytest.mark.asyncio
async def test_a_code_works_once_even_when_raced(
    manager: PairingManager, display: Display, registry: ClientRegistry, csr: bytes
) -> None:
    pending = await manager.begin("Race", csr, [], PEER)
    outcomes = await asyncio.gather(
        manager.complete(pending.pairing_id, display.code, PEER),
        manager.complete(pending.pairing_id, display.code, PEER),
        return_exceptions=True,
    )
    assert sum(isinstance(o, PairingResult) for o in outcomes) == 1
    (error,) = [o for o in outcomes if isinstance(o, PairingError)]
    assert error.code == PairingErrorCode.UNKNOWN_PAIRING
    assert [c.name for c in registry.list()] == ["Race"]


# -- refusals ------------------------------------------------------------------------------


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("name", "scopes", "message"),
    [
        ("", [], "client name"),
        ("x" * 65, [], "client name"),
        ("Reception\n", [], "client name"),
        ("Réception", [], "client name"),
        (" Reception", [], "client name"),
        ("Reception", ["root"], "unknown scope 'root'"),
        ("Reception", "admin", "list of scope names"),
        ("Reception", ["admin"] * 33, "at most 32"),
    ],
)
async def test_invalid_requests_show_no_code(
    manager: PairingManager,
    display: Display,
    csr: bytes,
    name: str,
    scopes: Any,
    message: str,
) -> None:
    error = await refused(manager.begin(name, csr, scopes, PEER), PairingErrorCode.INVALID_REQUEST)
    assert message in str(error)
    assert display.shown == []


@pytest.mark.asyncio
async def test_bad_csr_and_weak_keys_are_invalid_requests(
    manager: PairingManager, display: Display, csr: bytes
) -> None:
    weak = rsa.generate_private_key(65537, 1024).public_key()
    weak_pem = weak.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    error = await refused(
        manager.begin("Old PC", weak_pem, [], PEER), PairingErrorCode.INVALID_REQUEST
    )
    assert "1024 bits is too weak" in str(error)
    altered = bytearray(x509.load_pem_x509_csr(csr).public_bytes(serialization.Encoding.DER))
    altered[-5] ^= 0x01  # inside the signature
    error = await refused(
        manager.begin("Old PC", bytes(altered), [], PEER), PairingErrorCode.INVALID_REQUEST
    )
    assert "signature does not verify" in str(error)
    for bad in (b"not a csr", b"", "a string"):
        await refused(
            manager.begin("Old PC", bad, [], PEER),  # type: ignore[arg-type]
            PairingErrorCode.INVALID_REQUEST,
        )
    assert display.shown == []


@pytest.mark.asyncio
async def test_an_active_name_cannot_pair_again(
    manager: PairingManager, registry: ClientRegistry, display: Display, csr: bytes
) -> None:
    pending = await manager.begin("Reception", csr, [], PEER)
    await manager.complete(pending.pairing_id, display.code, PEER)
    error = await refused(
        manager.begin("reception", csr, [], PEER), PairingErrorCode.INVALID_REQUEST
    )
    assert "already paired" in str(error) and "revoke" in str(error)
    assert len(display.shown) == 1
    registry.revoke("Reception", by="test")
    pending = await manager.begin("Reception", csr, [], PEER)
    await manager.complete(pending.pairing_id, display.code, PEER)


@pytest.mark.asyncio
async def test_a_name_taken_between_begin_and_complete(
    manager: PairingManager, registry: ClientRegistry, display: Display, csr: bytes
) -> None:
    pending = await manager.begin("Desk", csr, [], PEER)
    registry.add("Desk", "00" * 32, ["admin"])
    error = await refused(
        manager.complete(pending.pairing_id, display.code, PEER), PairingErrorCode.INVALID_REQUEST
    )
    assert "already paired" in str(error)
    await refused(
        manager.complete(pending.pairing_id, display.code, PEER), PairingErrorCode.UNKNOWN_PAIRING
    )


@pytest.mark.asyncio
async def test_wrong_codes_count_down_then_the_pairing_is_gone(
    manager: PairingManager, display: Display, audit: Audit, csr: bytes
) -> None:
    pending = await manager.begin("Reception", csr, [], PEER)
    right = display.code
    for left in (2, 1, 0):
        error = await refused(
            manager.complete(pending.pairing_id, wrong(right), PEER), PairingErrorCode.WRONG_CODE
        )
        assert error.attempts_left == left
        assert error.data == {"code": "wrong_code", "attempts_left": left}
    error = await refused(
        manager.complete(pending.pairing_id, right, PEER), PairingErrorCode.UNKNOWN_PAIRING
    )
    failed = [fields for name, fields in audit.events if name == "pair.failed"]
    assert [f.get("attempts_left") for f in failed] == [2, 1, 0, None]
    assert failed[-1]["reason"] == "unknown_pairing"


@pytest.mark.asyncio
async def test_a_malformed_code_costs_no_attempt(
    manager: PairingManager, display: Display, csr: bytes
) -> None:
    pending = await manager.begin("Reception", csr, [], PEER)
    for junk in ("12345", "1234567", "abcdef", "١٢٣٤٥٦", "", "9" * 10_000, None):
        await refused(
            manager.complete(pending.pairing_id, junk, PEER),  # type: ignore[arg-type]
            PairingErrorCode.INVALID_REQUEST,
        )
    error = await refused(
        manager.complete(pending.pairing_id, wrong(display.code), PEER),
        PairingErrorCode.WRONG_CODE,
    )
    assert error.attempts_left == 2


@pytest.mark.asyncio
async def test_codes_expire(
    manager: PairingManager, display: Display, clock: Clock, csr: bytes
) -> None:
    pending = await manager.begin("Reception", csr, [], PEER)
    clock.advance(119.9)
    first = display.code
    await refused(
        manager.complete(pending.pairing_id, wrong(first), PEER), PairingErrorCode.WRONG_CODE
    )
    clock.advance(0.1)
    error = await refused(
        manager.complete(pending.pairing_id, first, PEER), PairingErrorCode.EXPIRED
    )
    assert "pair.begin" in str(error)
    await refused(
        manager.complete(pending.pairing_id, first, PEER), PairingErrorCode.UNKNOWN_PAIRING
    )
    assert manager.pending_count() == 0


@pytest.mark.asyncio
async def test_a_new_begin_replaces_the_peers_pending_pairing(
    manager: PairingManager, display: Display, csr: bytes
) -> None:
    old = await manager.begin("Reception", csr, [], PEER)
    old_code = display.code
    new = await manager.begin("Reception", csr, [], PEER)
    assert new.pairing_id != old.pairing_id
    await refused(
        manager.complete(old.pairing_id, old_code, PEER), PairingErrorCode.UNKNOWN_PAIRING
    )
    await manager.complete(new.pairing_id, display.code, PEER)
    assert manager.pending_count() == 0


@pytest.mark.asyncio
async def test_a_pairing_belongs_to_its_peer(
    manager: PairingManager, display: Display, csr: bytes
) -> None:
    pending = await manager.begin("Reception", csr, [], PEER)
    await refused(
        manager.complete(pending.pairing_id, display.code, OTHER_PEER),
        PairingErrorCode.UNKNOWN_PAIRING,
    )
    await manager.complete(pending.pairing_id, display.code, PEER)


@pytest.mark.asyncio
async def test_too_many_pairings_in_progress(
    keystore: Keystore, registry: ClientRegistry, display: Display, clock: Clock, csr: bytes
) -> None:
    manager = PairingManager(keystore, registry, show_code=display, clock=clock, max_pending=2)
    await manager.begin("A", csr, [], "192.0.2.1")
    clock.advance(30)
    await manager.begin("B", csr, [], "192.0.2.2")
    error = await refused(manager.begin("C", csr, [], "192.0.2.3"), PairingErrorCode.BUSY)
    assert error.retry_after == pytest.approx(90.0)
    clock.advance(90)
    await manager.begin("C", csr, [], "192.0.2.3")


# -- lockouts ------------------------------------------------------------------------------


async def fail(
    manager: PairingManager, display: Display, peer: str, times: int, csr: bytes
) -> None:
    """`times` wrong codes from `peer`, beginning new pairings as attempts run out."""
    pending = None
    for _ in range(times):
        if pending is None:
            pending = await manager.begin("Guesser", csr, [], peer)
            attempts = 3
        error = await refused(
            manager.complete(pending.pairing_id, wrong(display.code), peer),
            PairingErrorCode.WRONG_CODE,
        )
        attempts -= 1
        assert error.attempts_left == attempts
        if attempts == 0:
            pending = None


@pytest.mark.asyncio
async def test_lockout_per_peer_and_release(
    manager: PairingManager, display: Display, clock: Clock, audit: Audit, csr: bytes
) -> None:
    await fail(manager, display, PEER, 4, csr)  # 3 on a first pairing, 1 on a second
    pending = await manager.begin("Guesser", csr, [], PEER)
    error = await refused(
        manager.complete(pending.pairing_id, wrong(display.code), PEER),
        PairingErrorCode.LOCKED_OUT,
    )
    assert error.retry_after == pytest.approx(300.0)
    assert error.data == {"code": "locked_out", "retry_after": 300.0}
    locked = {"peer": PEER, "retry_after": 300.0, "all_peers": False}
    assert ("pair.locked_out", locked) in audit.events
    clock.advance(100)
    error = await refused(manager.begin("Guesser", csr, [], PEER), PairingErrorCode.LOCKED_OUT)
    assert error.retry_after == pytest.approx(200.0)
    # Even the right code is refused while locked: the pairing was dropped with the lockout.
    await refused(
        manager.complete(pending.pairing_id, display.code, PEER), PairingErrorCode.LOCKED_OUT
    )
    # Another peer is not affected.
    other = await manager.begin("Honest", csr, [], OTHER_PEER)
    await manager.complete(other.pairing_id, display.code, OTHER_PEER)
    clock.advance(200)
    again = await manager.begin("Guesser", csr, [], PEER)
    await manager.complete(again.pairing_id, display.code, PEER)


@pytest.mark.asyncio
async def test_failures_outside_the_window_are_forgotten(
    manager: PairingManager, display: Display, clock: Clock, csr: bytes
) -> None:
    await fail(manager, display, PEER, 4, csr)
    clock.advance(301)
    await fail(manager, display, PEER, 4, csr)  # 4 in this window: still not locked
    pending = await manager.begin("Guesser", csr, [], PEER)
    await manager.complete(pending.pairing_id, display.code, PEER)


@pytest.mark.asyncio
async def test_an_ipv6_prefix_is_one_peer(
    manager: PairingManager, display: Display, csr: bytes
) -> None:
    # Rotating through one's own /64 does not buy more guesses.
    for host in range(1, 5):
        await fail(manager, display, f"2001:db8:0:1::{host}", 1, csr)
    pending = await manager.begin("Guesser", csr, [], "2001:db8:0:1::99")
    await refused(
        manager.complete(pending.pairing_id, wrong(display.code), "2001:db8:0:1::99"),
        PairingErrorCode.LOCKED_OUT,
    )
    other = await manager.begin("Guesser", csr, [], "2001:db8:0:2::1")
    await manager.complete(other.pairing_id, display.code, "2001:db8:0:2::1")


@pytest.mark.asyncio
async def test_global_lockout_bounds_guesses_from_many_addresses(
    keystore: Keystore, registry: ClientRegistry, display: Display, clock: Clock, csr: bytes
) -> None:
    manager = PairingManager(
        keystore, registry, show_code=display, clock=clock, global_lockout_after=6
    )
    await fail(manager, display, "192.0.2.1", 3, csr)
    await fail(manager, display, "192.0.2.2", 2, csr)  # 5 failures, none locked yet
    pending = await manager.begin("Guesser", csr, [], "192.0.2.3")
    await refused(
        manager.complete(pending.pairing_id, wrong(display.code), "192.0.2.3"),
        PairingErrorCode.LOCKED_OUT,
    )
    error = await refused(
        manager.begin("Honest", csr, [], "192.0.2.200"), PairingErrorCode.LOCKED_OUT
    )
    assert error.retry_after == pytest.approx(300.0)
    clock.advance(300)
    pending = await manager.begin("Honest", csr, [], "192.0.2.200")
    await manager.complete(pending.pairing_id, display.code, "192.0.2.200")


# -- codes and privacy ---------------------------------------------------------------------


@pytest.mark.asyncio
async def test_codes_are_six_digits_and_widely_spread(
    manager: PairingManager, display: Display, csr: bytes
) -> None:
    for _ in range(1000):
        await manager.begin("Reception", csr, [], PEER)
    codes = [code for code, _ in display.shown]
    assert all(re.fullmatch(r"[0-9]{6}", code) for code in codes)
    assert len(set(codes)) > 990  # birthday bound: ~0.5 collisions expected in 10^6
    first_digits = Counter(code[0] for code in codes)
    assert set(first_digits) == set("0123456789")  # leading zeros are kept
    assert all(50 <= n <= 150 for n in first_digits.values())  # expected 100 each
    assert manager.pending_count() == 1  # each begin replaced the last


@pytest.mark.asyncio
async def test_codes_never_reach_events_logs_or_reprs(
    manager: PairingManager,
    display: Display,
    audit: Audit,
    clock: Clock,
    csr: bytes,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    pending = await manager.begin("Reception", csr, [], PEER)
    await refused(
        manager.complete(pending.pairing_id, wrong(display.code), PEER), PairingErrorCode.WRONG_CODE
    )
    result = await manager.complete(pending.pairing_id, display.code, PEER)
    await fail(manager, display, OTHER_PEER, 4, csr)
    guess = await manager.begin("Guesser", csr, [], OTHER_PEER)
    await refused(
        manager.complete(guess.pairing_id, wrong(display.code), OTHER_PEER),
        PairingErrorCode.LOCKED_OUT,
    )
    pending = await manager.begin("Late", csr, [], PEER)
    clock.advance(121)
    await refused(
        manager.complete(pending.pairing_id, display.code, PEER), PairingErrorCode.EXPIRED
    )

    codes = {code for code, _ in display.shown} | {wrong(code) for code, _ in display.shown}
    assert {"pair.begin", "pair.complete", "pair.failed", "pair.locked_out"} <= set(audit.names())
    texts = [json.dumps(fields, default=str) for _, fields in audit.events]
    texts += [record.getMessage() for record in caplog.records]
    texts += [repr(pending), repr(result), repr(manager.__dict__)]
    for text in texts:
        for code in codes:
            assert code not in text
    assert caplog.records  # the events were logged, just not the codes


# -- the registry --------------------------------------------------------------------------


def test_registry_add_lookup_revoke(registry: ClientRegistry) -> None:
    added = registry.add("Reception", "AB" * 32, ["cps:sign", "identity:read"])
    assert added.fingerprint == "ab" * 32 and added.active
    assert registry.lookup("ab" * 32) == added
    assert registry.lookup("cd" * 32) is None and registry.lookup("nonsense") is None
    revoked = registry.revoke("Reception", by="admin:Front desk")
    assert not revoked.active and revoked.revoked_by == "admin:Front desk"
    looked_up = registry.lookup("ab" * 32)
    assert looked_up is not None and not looked_up.active
    assert looked_up.revoked_at == revoked.revoked_at
    assert not looked_up.allows("cps:sign") and added.allows("cps:sign")
    assert registry.list() == [] and registry.list(include_revoked=True) == [looked_up]


def test_registry_refuses_duplicates_and_unknowns(registry: ClientRegistry) -> None:
    registry.add("Reception", "01" * 32, ["identity:read"])
    with pytest.raises(DuplicateClient, match="already paired"):
        registry.add("RECEPTION", "02" * 32, ["identity:read"])
    with pytest.raises(DuplicateClient, match="already registered"):
        registry.add("Other", "01" * 32, ["identity:read"])
    with pytest.raises(ValueError, match="unknown scope 'sudo'"):
        registry.add("Other", "03" * 32, ["sudo"])
    with pytest.raises(ValueError, match="64 hex"):
        registry.add("Other", "xyz", [])
    with pytest.raises(UnknownClient) as caught:
        registry.revoke("Nobody", by="admin")
    assert isinstance(caught.value, KeyError)
    assert str(caught.value) == "no active client named 'Nobody'"
    registry.revoke("reception", by="admin")
    with pytest.raises(KeyError, match="no active client"):
        registry.revoke("Reception", by="admin")
    # Once revoked, the name is free again; history keeps both.
    registry.add("Reception", "04" * 32, ["admin"])
    assert [c.active for c in registry.list(include_revoked=True)] == [False, True]


def test_registry_touch_and_persistence(tmp_path: Path) -> None:
    times = iter(datetime(2026, 1, 1, tzinfo=UTC) + timedelta(hours=h) for h in range(10))
    path = tmp_path / "clients.sqlite"
    with ClientRegistry(path, clock=lambda: next(times)) as registry:
        registry.add("Tablet", "05" * 32, ["dmp:read", "dmp:write"])
        registry.touch("05" * 32)
        registry.touch("06" * 32)  # unknown: nothing happens
    assert (path.stat().st_mode & 0o777) == 0o600
    with ClientRegistry(path) as registry:
        client = registry.lookup("05" * 32)
        assert client is not None
        assert client.paired_at == datetime(2026, 1, 1, tzinfo=UTC)
        assert client.last_seen == datetime(2026, 1, 1, 1, tzinfo=UTC)
        assert client.scopes == ("dmp:read", "dmp:write")
        journal = registry._conn().execute("PRAGMA journal_mode").fetchone()[0]
        assert journal == "wal"
    registry.close()  # idempotent
    with pytest.raises(RuntimeError, match="closed"):
        registry.list()


def test_registry_is_thread_safe(registry: ClientRegistry) -> None:
    errors: list[BaseException] = []

    def work(n: int) -> None:
        try:
            for i in range(20):
                fingerprint = f"{n:02x}{i:02x}" + "0" * 60
                registry.add(f"client {n}-{i}", fingerprint, ["identity:read"])
                registry.touch(fingerprint)
                assert registry.lookup(fingerprint) is not None
            registry.add("contended", f"{n:02x}" + "f" * 62, [])
        except DuplicateClient:
            pass
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    names = [c.name for c in registry.list()]
    assert len(names) == 8 * 20 + 1 and names.count("contended") == 1


@given(st.text(max_size=80))
def test_client_names(name: str) -> None:
    expected = bool(re.fullmatch(r"[A-Za-z0-9._-]([A-Za-z0-9 ._-]{0,62}[A-Za-z0-9._-])?", name))
    try:
        validate_client_name(name)
        accepted = True
    except ValueError:
        accepted = False
    assert accepted == expected


# -- end to end: pairing over WebSocket + TLS 1.3, then mutual TLS -------------------------


@pytest_asyncio.fixture
async def daemon(
    manager: PairingManager, keystore: Keystore, registry: ClientRegistry
) -> AsyncIterator[int]:
    """A stand-in for the JSON-RPC server: pair.begin, pair.complete and whoami."""

    async def handler(ws: ServerConnection) -> None:
        ssl_object = ws.transport.get_extra_info("ssl_object")
        peer_der = ssl_object.getpeercert(binary_form=True)
        client = registry.lookup(fingerprint_of(peer_der)) if peer_der else None
        peer = ws.remote_address[0]
        async for message in ws:
            request = json.loads(message)
            params = request.get("params", {})
            reply: dict[str, Any] = {"jsonrpc": "2.0", "id": request["id"]}
            try:
                if request["method"] == "pair.begin":
                    pending = await manager.begin(
                        params["name"], params["csr"].encode(), params["scopes"], peer
                    )
                    reply["result"] = {
                        "pairing_id": pending.pairing_id,
                        "expires_in": pending.expires_in,
                    }
                elif request["method"] == "pair.complete":
                    result = await manager.complete(params["pairing_id"], params["code"], peer)
                    reply["result"] = {
                        "certificate": result.client_certificate_pem,
                        "ca": result.ca_certificate_pem,
                        "fingerprint": result.server_fingerprint,
                        "scopes": list(result.scopes),
                    }
                else:  # whoami: what the connection's certificate says, per the registry
                    current = registry.lookup(client.fingerprint) if client else None
                    reply["result"] = {
                        "name": current.name if current else None,
                        "active": current.active if current else False,
                        "scopes": list(current.scopes) if current else [],
                    }
            except PairingError as exc:
                reply["error"] = {"code": -32001, "message": str(exc), "data": exc.data}
            await ws.send(json.dumps(reply))

    async with serve(handler, "127.0.0.1", 0, ssl=keystore.server_ssl_context()) as server:
        yield next(iter(server.sockets)).getsockname()[1]


async def call(ws: Any, method: str, **params: Any) -> dict[str, Any]:
    await ws.send(json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}))
    reply: dict[str, Any] = json.loads(await ws.recv())
    return reply


@pytest.mark.asyncio
async def test_pairing_end_to_end_over_websocket_and_tls(
    daemon: int,
    keystore: Keystore,
    registry: ClientRegistry,
    display: Display,
    tmp_path: Path,
) -> None:
    url = f"wss://127.0.0.1:{daemon}"
    pin = keystore.fingerprint  # from mDNS TXT or the terminal display
    key_pem, csr_pem = generate_client_key_and_csr("Front desk")

    # A spoofed fingerprint never gets as far as the upgrade request.
    with pytest.raises(PinMismatch):
        async with connect(url, ssl=pinned_ssl_context("00" * 32)):
            pass

    async with connect(url, ssl=pinned_ssl_context(pin)) as ws:
        assert (await call(ws, "whoami"))["result"]["name"] is None
        begun = await call(
            ws,
            "pair.begin",
            name="Front desk",
            csr=csr_pem.decode(),
            scopes=["identity:read", "cps:sign"],
        )
        pairing_id = begun["result"]["pairing_id"]
        bad = await call(ws, "pair.complete", pairing_id=pairing_id, code=wrong(display.code))
        assert bad["error"]["data"] == {"code": "wrong_code", "attempts_left": 2}
        done = await call(ws, "pair.complete", pairing_id=pairing_id, code=display.code)
    paired = done["result"]
    assert paired["fingerprint"] == pin and paired["scopes"] == ["identity:read", "cps:sign"]

    (tmp_path / "me.pem").write_text(paired["certificate"])
    (tmp_path / "me.key").write_bytes(key_pem)
    mutual = pinned_ssl_context(
        pin, client_cert=tmp_path / "me.pem", client_key=tmp_path / "me.key"
    )
    async with connect(url, ssl=mutual) as ws:
        me = (await call(ws, "whoami"))["result"]
        assert me == {"name": "Front desk", "active": True, "scopes": ["identity:read", "cps:sign"]}
        registry.revoke("Front desk", by="test")
        assert (await call(ws, "whoami"))["result"]["active"] is False

    # With the device CA from pairing, a re-issued server certificate is still trusted.
    by_ca = paired_ssl_context(
        paired["ca"].encode(), client_cert=tmp_path / "me.pem", client_key=tmp_path / "me.key"
    )
    async with connect(url, ssl=by_ca) as ws:
        assert (await call(ws, "whoami"))["result"]["name"] == "Front desk"


@pytest.mark.asyncio
async def test_one_user_behind_nat_does_not_lock_the_site_out(
    manager: PairingManager, display: Display, csr: bytes
) -> None:
    # One address for a whole practice (NAT, RDS/Citrix): "Guesser" mistypes until locked.
    await fail(manager, display, PEER, 4, csr)
    locked = await manager.begin("Guesser", csr, [], PEER)
    await refused(
        manager.complete(locked.pairing_id, wrong(display.code), PEER),
        PairingErrorCode.LOCKED_OUT,
    )
    await refused(manager.begin("guesser", csr, [], PEER), PairingErrorCode.LOCKED_OUT)
    # Two other desks at the same address pair at the same time.
    first = await manager.begin("Desk 1", csr, [], PEER)
    first_code = display.code
    second = await manager.begin("Desk 2", csr, [], PEER)
    await manager.complete(second.pairing_id, display.code, PEER)
    await manager.complete(first.pairing_id, first_code, PEER)


# -- the pairing window (review L1) --------------------------------------------------------

ATTACKERS = ("198.51.100.7", "198.51.100.8", "198.51.100.9", "198.51.100.10")


class Attacker:
    """A LAN host guessing codes from several addresses: a fresh name for every pairing it
    begins, three wrong codes for each (all its pairing allows)."""

    def __init__(self, manager: PairingManager, display: Display, csr: bytes) -> None:
        self.manager = manager
        self.display = display
        self.csr = csr
        self.guesses = 0
        self.outcomes: Counter[str] = Counter()
        self._pending: dict[str, tuple[str, str]] = {}  # peer -> (pairing id, its code)

    async def guess(self, peer: str | None = None) -> PairingErrorCode:
        """One wrong code (or the refusal that stopped it); what the daemon answered."""
        peer = peer or ATTACKERS[self.guesses % len(ATTACKERS)]
        self.guesses += 1
        for _ in range(2):  # a pairing dropped by a lockout is unknown: begin another
            try:
                if peer not in self._pending:
                    pending = await self.manager.begin(f"Bot {self.guesses}", self.csr, [],
                                                       peer)
                    self._pending[peer] = (pending.pairing_id, self.display.code)
                pairing_id, code = self._pending[peer]
                await self.manager.complete(pairing_id, wrong(code), peer)
            except PairingError as exc:
                if exc.code != PairingErrorCode.WRONG_CODE or exc.attempts_left == 0:
                    self._pending.pop(peer, None)
                if exc.code == PairingErrorCode.UNKNOWN_PAIRING:
                    continue
                self.outcomes[str(exc.code)] += 1
                return exc.code
            raise AssertionError("a wrong code was accepted")
        raise AssertionError("begun twice, unknown twice")

    async def trip_global_lockout(self) -> None:
        """Wrong codes until pairing is locked for everyone (20 by default)."""
        for _ in range(20):
            await self.guess()
        assert self.outcomes == {"wrong_code": 19, "locked_out": 1}, self.outcomes


@pytest.mark.asyncio
async def test_window_opened_at_the_terminal_lets_a_desk_pair_during_a_flood(
    manager: PairingManager, display: Display, audit: Audit, clock: Clock, csr: bytes
) -> None:
    attacker = Attacker(manager, display, csr)
    await attacker.trip_global_lockout()
    refusal = await refused(manager.begin("Desk 3", csr, [], PEER), PairingErrorCode.LOCKED_OUT)
    assert refusal.retry_after == pytest.approx(300.0)
    assert manager.window_left() == 0.0
    assert await manager.open_window("terminal") == 120.0
    assert ("pair.window_opened", {"source": "terminal", "seconds": 120.0}) in audit.events
    clock.advance(10)
    await attacker.guess()  # the flood goes on inside the window
    pending = await manager.begin("Desk 3", csr, ["dmp:read"], PEER)
    code = display.code
    await attacker.guess()  # (its begin puts another code on the screen)
    clock.advance(20)
    result = await manager.complete(pending.pairing_id, code, PEER)
    assert result.client_name == "Desk 3" and result.scopes == ("dmp:read",)
    # One workstation per key press: the window closed with this pairing.
    assert ("pair.window_closed", {"reason": "paired"}) in audit.events
    assert manager.window_left() == 0.0
    await refused(manager.begin("Desk 4", csr, [], OTHER_PEER), PairingErrorCode.LOCKED_OUT)


@pytest.mark.asyncio
async def test_an_expired_window_refuses_again(
    manager: PairingManager, display: Display, clock: Clock, csr: bytes
) -> None:
    await Attacker(manager, display, csr).trip_global_lockout()
    await manager.open_window("cli")
    late = await manager.begin("Desk 3", csr, [], PEER)
    clock.advance(119)
    assert manager.window_left() == pytest.approx(1.0)
    clock.advance(1)
    # Begun inside the window, completed after it: the global lockout holds again.
    error = await refused(manager.complete(late.pairing_id, display.code, PEER),
                          PairingErrorCode.LOCKED_OUT)
    assert error.retry_after == pytest.approx(180.0)
    await refused(manager.begin("Desk 3", csr, [], PEER), PairingErrorCode.LOCKED_OUT)
    clock.advance(180)  # the lockout itself ends as before
    pending = await manager.begin("Desk 3", csr, [], PEER)
    await manager.complete(pending.pairing_id, display.code, PEER)


@pytest.mark.asyncio
async def test_a_window_closed_early_refuses_again(
    manager: PairingManager, display: Display, audit: Audit, csr: bytes
) -> None:
    await Attacker(manager, display, csr).trip_global_lockout()
    await manager.open_window("terminal")
    assert await manager.close_window("cancelled")
    assert ("pair.window_closed", {"reason": "cancelled"}) in audit.events
    assert not await manager.close_window("cancelled")  # nothing left to close
    await refused(manager.begin("Desk 3", csr, [], PEER), PairingErrorCode.LOCKED_OUT)


@pytest.mark.asyncio
async def test_the_per_peer_and_name_limit_holds_inside_the_window(
    manager: PairingManager, display: Display, csr: bytes
) -> None:
    await Attacker(manager, display, csr).trip_global_lockout()
    await manager.open_window("terminal")
    await fail(manager, display, PEER, 4, csr)  # "Guesser" from PEER: 4 wrong codes
    pending = await manager.begin("Guesser", csr, [], PEER)
    await refused(manager.complete(pending.pairing_id, wrong(display.code), PEER),
                  PairingErrorCode.LOCKED_OUT)
    await refused(manager.begin("Guesser", csr, [], PEER), PairingErrorCode.LOCKED_OUT)
    # The window itself stays open for everyone else.
    other = await manager.begin("Desk 3", csr, [], OTHER_PEER)
    await manager.complete(other.pairing_id, display.code, OTHER_PEER)


@pytest.mark.asyncio
async def test_the_window_bounds_guesses_per_address_whatever_the_names(
    manager: PairingManager, display: Display, csr: bytes
) -> None:
    attacker = Attacker(manager, display, csr)
    await attacker.trip_global_lockout()
    await manager.open_window("terminal")
    answers = [await attacker.guess(ATTACKERS[0]) for _ in range(8)]
    # lockout_after (5) wrong codes per address in a window, then the global lockout again.
    assert answers == [PairingErrorCode.WRONG_CODE] * 5 + [PairingErrorCode.LOCKED_OUT] * 3
    assert await attacker.guess(ATTACKERS[1]) == PairingErrorCode.WRONG_CODE
    pending = await manager.begin("Desk 3", csr, [], PEER)
    await manager.complete(pending.pairing_id, display.code, PEER)


@pytest.mark.asyncio
async def test_a_window_reopened_gives_each_address_its_allowance_again(
    manager: PairingManager, display: Display, csr: bytes
) -> None:
    attacker = Attacker(manager, display, csr)
    await attacker.trip_global_lockout()
    await manager.open_window("terminal")
    for _ in range(5):
        assert await attacker.guess(ATTACKERS[0]) == PairingErrorCode.WRONG_CODE
    await manager.close_window("cancelled")
    await manager.open_window("terminal")
    assert await attacker.guess(ATTACKERS[0]) == PairingErrorCode.WRONG_CODE


def test_window_length_is_bounded(keystore: Keystore, registry: ClientRegistry) -> None:
    for seconds in (0.0, -1.0, 601.0):
        with pytest.raises(ValueError, match="window_seconds"):
            PairingManager(keystore, registry, show_code=Display(), window_seconds=seconds)
    manager = PairingManager(keystore, registry, show_code=Display(), window_seconds=600)
    assert manager.window_seconds == 600.0
