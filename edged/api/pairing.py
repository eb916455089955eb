"""Pairing: a 6-digit code on the terminal display buys a client certificate with scopes."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import inspect
import ipaddress
import logging
import re
import secrets
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, NoReturn

from cryptography.hazmat.primitives import serialization

from bifente.client.identity import fingerprint_of, validate_client_name
from bifente.edged.state.clients import DEFAULT_SCOPES, ClientRegistry, normalise_scopes
from bifente.edged.state.keystore import Keystore, load_client_public_key

__all__ = [
    "CODE_DIGITS",
    "LOCAL_ONLY_SCOPES",
    "MAX_WINDOW_SECONDS",
    "EventHook",
    "PairingError",
    "PairingErrorCode",
    "PairingManager",
    "PairingResult",
    "PendingPairing",
    "ShowCode",
]

log = logging.getLogger(__name__)

CODE_DIGITS = 6
_CODE_RE = re.compile(r"[0-9]{6}")  # ASCII digits only: str.isdigit() would take "١٢٣٤٥٦"
_MAX_CODE_INPUT = 32
_MAX_PAIRING_ID = 64
_MAX_TRACKED_PEERS = 4096  # failure records kept for this many peers at most
MAX_WINDOW_SECONDS = 600.0  # the terminal counts a pairing window down from 600 s at most

# (code, client name, scopes requested): the terminal shows all three (M9).
ShowCode = Callable[[str, str, tuple[str, ...]], Awaitable[None] | None]
# Granted only from the daemon's own machine (`bifente admin grant`), never by a code read
# aloud on the LAN (docs/pairing.md, docs/security.md).
LOCAL_ONLY_SCOPES = frozenset({"admin"})
EventHook = Callable[[str, Mapping[str, Any]], Awaitable[None] | None]


class PairingErrorCode(StrEnum):
    """Machine codes of PairingError, stable for the JSON-RPC layer and clients."""

    INVALID_REQUEST = "invalid_request"
    UNKNOWN_PAIRING = "unknown_pairing"
    EXPIRED = "expired"
    WRONG_CODE = "wrong_code"
    LOCKED_OUT = "locked_out"
    BUSY = "busy"


class PairingError(Exception):
    """A refused pairing step: a machine `code`, a message for people, and when to retry."""

    def __init__(
        self,
        code: str,
        message: str,
        retry_after: float | None = None,
        *,
        attempts_left: int | None = None,
    ) -> None:
        super().__init__(message)
        self.code = PairingErrorCode(code)
        self.message = message
        self.retry_after = retry_after
        self.attempts_left = attempts_left

    def __str__(self) -> str:
        return self.message

    @property
    def data(self) -> dict[str, Any]:
        """The fields a client needs, for a JSON-RPC error's `data` member."""
        data: dict[str, Any] = {"code": str(self.code)}
        if self.retry_after is not None:
            data["retry_after"] = round(self.retry_after, 1)
        if self.attempts_left is not None:
            data["attempts_left"] = self.attempts_left
        return data


@dataclass(frozen=True)
class PendingPairing:
    """What pair.begin answers: an opaque id, seconds until the code expires, what was asked."""

    pairing_id: str
    expires_in: float
    client_name: str
    scopes: tuple[str, ...]


@dataclass(frozen=True)
class PairingResult:
    """What pair.complete answers: the client certificate, the device CA, the pin, the scopes."""

    client_name: str
    client_certificate_pem: str
    ca_certificate_pem: str
    server_fingerprint: str
    client_fingerprint: str
    scopes: tuple[str, ...]


@dataclass
class _Pending:
    """A pairing between begin and complete; dropped when completed, failed out or expired."""

    pairing_id: str
    peer: str
    client_name: str
    scopes: tuple[str, ...]
    expires_at: float
    attempts_left: int
    public_key_or_csr: bytes = field(repr=False)
    code_digest: bytes = field(repr=False)


def _peer_unit(peer: str) -> str:
    """One network peer: an IPv4 address, or an IPv6 /64 (one host's prefix)."""
    try:
        ip = ipaddress.ip_address(peer.strip("[]").split("%", 1)[0])
    except ValueError:
        return peer
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


def _lockout_key(peer: str, client_name: str) -> str:
    """What a lockout applies to: one client name from one peer (docs/pairing.md).

    Not the peer alone: behind NAT or a terminal server (RDS, Citrix) a whole site shares
    one address, and one user's mistyped codes must not lock the others out. Rotating names
    buys no guesses beyond the global limit, which bounds guesses from everyone together.
    """
    return f"{_peer_unit(peer)}/{client_name.casefold()}"


class PairingManager:
    """Runs pair.begin / pair.complete: codes, expiry, attempt limits, lockouts, issuing."""

    def __init__(
        self,
        keystore: Keystore,
        registry: ClientRegistry,
        *,
        show_code: ShowCode,
        code_ttl: float = 120.0,
        max_attempts: int = 3,
        lockout_after: int = 5,
        lockout_seconds: float = 300.0,
        global_lockout_after: int | None = 20,
        window_seconds: float = 120.0,
        max_pending: int = 16,
        certificate_days: int = 825,
        clock: Callable[[], float] = time.monotonic,
        on_event: EventHook | None = None,
    ) -> None:
        if code_ttl <= 0 or lockout_seconds <= 0:
            raise ValueError("code_ttl and lockout_seconds must be positive")
        if max_attempts < 1 or lockout_after < 1 or max_pending < 1:
            raise ValueError("max_attempts, lockout_after and max_pending must be at least 1")
        if global_lockout_after is not None and global_lockout_after < 1:
            raise ValueError("global_lockout_after must be at least 1, or None")
        if not 0 < window_seconds <= MAX_WINDOW_SECONDS:
            raise ValueError(f"window_seconds must be in (0, {MAX_WINDOW_SECONDS:.0f}]")
        self._keystore = keystore
        self._registry = registry
        self._show_code = show_code
        self._on_event = on_event
        self._code_ttl = float(code_ttl)
        self._max_attempts = max_attempts
        self._lockout_after = lockout_after
        self._lockout_seconds = float(lockout_seconds)
        self._global_lockout_after = global_lockout_after
        self._max_pending = max_pending
        self._certificate_days = certificate_days
        self._clock = clock
        # Codes are kept only as HMACs under a key that never leaves this object.
        self._code_key = secrets.token_bytes(32)
        self._pending: dict[str, _Pending] = {}  # by pairing_id
        self._pending_by_peer: dict[str, str] = {}  # lockout key (peer/name) -> pairing_id
        self._failures: dict[str, deque[float]] = {}  # lockout key -> wrong-code times
        self._locked_until: dict[str, float] = {}
        self._global_failures: deque[float] = deque()
        self._global_locked_until = 0.0
        # The pairing window (review L1): opened by a person at the terminal (or on the
        # daemon's machine), it lets pairings through the global lockout, which anyone on
        # the LAN can keep tripped. Inside it each address still gets `lockout_after` wrong
        # codes at most, whatever the names, so the window does not lift the bound on guesses.
        self._window_seconds = float(window_seconds)
        self._window_until = 0.0
        self._window_failures: dict[str, int] = {}  # peer unit -> wrong codes in this window

    # -- the two steps ---------------------------------------------------------------------

    async def begin(
        self,
        client_name: str,
        public_key_or_csr: bytes,
        scopes: Sequence[str],
        peer: str,
    ) -> PendingPairing:
        """Check the request, show a fresh code on the terminal, and hold the pairing open."""
        now = self._clock()
        self._prune(now)
        await self._refuse_if_locked(peer, now, None)
        try:
            name = validate_client_name(client_name)
            granted = normalise_scopes(scopes) if scopes else DEFAULT_SCOPES
            local = sorted(LOCAL_ONLY_SCOPES & set(granted))
            if local:
                raise ValueError(f"{', '.join(local)} is granted only on the daemon's machine "
                                 "(bifente admin grant NAME, after pairing without it)")
            load_client_public_key(public_key_or_csr)
        except ValueError as exc:
            await self._refuse(PairingErrorCode.INVALID_REQUEST, str(exc), peer, None)
        if await asyncio.to_thread(self._registry.find_active, name) is not None:
            await self._refuse(
                PairingErrorCode.INVALID_REQUEST,
                f"a client named {name!r} is already paired; revoke it first "
                f"(bifente clients revoke NAME) or choose another name",
                peer,
                name,
            )
        now = self._clock()  # the registry look-up awaited: state may have moved
        await self._refuse_if_locked(peer, now, name)
        self._drop_peer(peer, name)  # one pending pairing per peer and name: a new begin
        # replaces the old (two desks behind one NAT address can pair at the same time)
        live = [p for p in self._pending.values() if now < p.expires_at]
        if len(live) >= self._max_pending:
            retry = min(p.expires_at for p in live) - now
            await self._refuse(
                PairingErrorCode.BUSY,
                "too many pairings in progress; try again shortly",
                peer,
                name,
                retry_after=retry,
            )
        code = f"{secrets.randbelow(10**CODE_DIGITS):0{CODE_DIGITS}d}"
        pending = _Pending(
            pairing_id=secrets.token_urlsafe(18),
            peer=peer,
            client_name=name,
            scopes=granted,
            expires_at=now + self._code_ttl,
            attempts_left=self._max_attempts,
            public_key_or_csr=bytes(public_key_or_csr),
            code_digest=self._digest(code),
        )
        self._pending[pending.pairing_id] = pending
        self._pending_by_peer[_lockout_key(peer, name)] = pending.pairing_id
        try:
            shown = self._show_code(code, name, granted)
            if inspect.isawaitable(shown):
                await shown
        except BaseException:
            self._drop(pending)
            raise
        await self._emit(
            "pair.begin",
            {"peer": peer, "client_name": name, "scopes": list(granted), "ttl": self._code_ttl},
        )
        expires_in = max(0.0, pending.expires_at - self._clock())
        return PendingPairing(pending.pairing_id, expires_in, name, granted)

    async def complete(self, pairing_id: str, code: str, peer: str) -> PairingResult:
        """Check the code; if right, issue and register the client certificate (consumed once)."""
        now = self._clock()
        await self._refuse_if_locked(peer, now, None)
        pending = None
        if isinstance(pairing_id, str) and len(pairing_id) <= _MAX_PAIRING_ID:
            pending = self._pending.get(pairing_id)
        if pending is not None and pending.peer == peer:
            await self._refuse_if_locked(peer, now, pending.client_name)
        elif self._peer_has_lockout(peer, now):
            # A pairing dropped by its lockout: say so rather than "unknown".
            await self._refuse_if_locked(peer, now, "", any_name=True)
        if pending is None or pending.peer != peer:
            # Another peer's pairing id is as unknown as a made-up one.
            await self._refuse(
                PairingErrorCode.UNKNOWN_PAIRING,
                "no such pairing in progress: start again with pair.begin",
                peer,
                None,
            )
        if now >= pending.expires_at:
            self._drop(pending)
            await self._refuse(
                PairingErrorCode.EXPIRED,
                "the code has expired: start again with pair.begin",
                peer,
                pending.client_name,
            )
        candidate = code.strip() if isinstance(code, str) and len(code) <= _MAX_CODE_INPUT else ""
        if not _CODE_RE.fullmatch(candidate):
            # Not a guess at all, so it costs no attempt.
            await self._refuse(
                PairingErrorCode.INVALID_REQUEST,
                f"the code is {CODE_DIGITS} digits, as shown on the terminal",
                peer,
                pending.client_name,
            )
        if not hmac.compare_digest(self._digest(candidate), pending.code_digest):
            await self._wrong_code(pending, peer, now)
        self._drop(pending)  # consumed before anything awaits: a code works once
        try:
            cert = await asyncio.to_thread(
                self._keystore.issue_client_certificate,
                pending.client_name,
                pending.public_key_or_csr,
                pending.scopes,
                self._certificate_days,
            )
            client_fingerprint = fingerprint_of(cert.public_bytes(serialization.Encoding.DER))
            await asyncio.to_thread(
                self._registry.add, pending.client_name, client_fingerprint, pending.scopes
            )
        except ValueError as exc:  # DuplicateClient: the name was taken meanwhile
            await self._refuse(
                PairingErrorCode.INVALID_REQUEST, str(exc), peer, pending.client_name
            )
        result = PairingResult(
            client_name=pending.client_name,
            client_certificate_pem=cert.public_bytes(serialization.Encoding.PEM).decode("ascii"),
            ca_certificate_pem=self._keystore.ca_certificate_pem.decode("ascii"),
            server_fingerprint=self._keystore.fingerprint,
            client_fingerprint=client_fingerprint,
            scopes=pending.scopes,
        )
        await self._emit(
            "pair.complete",
            {
                "peer": peer,
                "client_name": pending.client_name,
                "fingerprint": client_fingerprint,
                "scopes": list(pending.scopes),
            },
        )
        # One workstation per key press: the next one needs the key again.
        await self.close_window("paired")
        return result

    # -- the pairing window ----------------------------------------------------------------

    @property
    def window_seconds(self) -> float:
        """How long a pairing window stays open."""
        return self._window_seconds

    def window_left(self) -> float:
        """Seconds left in the open pairing window (0 when none is open)."""
        return max(0.0, self._window_until - self._clock())

    async def open_window(self, source: str) -> float:
        """Open (or restart) the pairing window; `source` says who asked. Its length in s.

        Called only for a physical action: the terminal's key (EVENT PAIR_REQUESTED) or the
        CLI on the daemon's machine, never from the network (docs/pairing.md).
        """
        self._window_until = self._clock() + self._window_seconds
        self._window_failures.clear()
        await self._emit("pair.window_opened",
                         {"source": source, "seconds": self._window_seconds},
                         level=logging.WARNING)
        return self._window_seconds

    async def close_window(self, reason: str) -> bool:
        """Close the pairing window before its time (`reason`: paired, cancelled); False if
        none was open."""
        if self._clock() >= self._window_until:
            return False
        self._window_until = 0.0
        self._window_failures.clear()
        await self._emit("pair.window_closed", {"reason": reason})
        return True

    def _exempt(self, peer: str, now: float) -> bool:
        """True if the open window lets this peer through the global lockout."""
        return now < self._window_until and (
            self._window_failures.get(_peer_unit(peer), 0) < self._lockout_after)

    # -- attempts and lockouts -------------------------------------------------------------

    async def _wrong_code(self, pending: _Pending, peer: str, now: float) -> NoReturn:
        pending.attempts_left -= 1
        lockout = self._record_failure(peer, pending.client_name, now)
        if lockout is not None or pending.attempts_left <= 0:
            self._drop(pending)
        await self._emit(
            "pair.failed",
            {
                "peer": peer,
                "client_name": pending.client_name,
                "reason": str(PairingErrorCode.WRONG_CODE),
                "attempts_left": pending.attempts_left,
            },
            level=logging.WARNING,
        )
        if lockout is not None:
            seconds, all_peers = lockout
            await self._emit(
                "pair.locked_out",
                {"peer": peer, "retry_after": seconds, "all_peers": all_peers},
                level=logging.WARNING,
            )
            raise PairingError(
                PairingErrorCode.LOCKED_OUT,
                f"too many wrong codes: pairing is refused for {seconds:.0f} s",
                seconds,
            )
        if pending.attempts_left <= 0:
            message = "wrong code, and no attempts left: start again with pair.begin"
        else:
            message = f"wrong code: {pending.attempts_left} attempt(s) left"
        raise PairingError(
            PairingErrorCode.WRONG_CODE, message, attempts_left=pending.attempts_left
        )

    def _record_failure(self, peer: str, client_name: str,
                        now: float) -> tuple[float, bool] | None:
        """Count a wrong code; (seconds, for all peers?) if that starts a lockout."""
        key = _lockout_key(peer, client_name)
        window_start = now - self._lockout_seconds
        times = self._failures.pop(key, deque())
        while times and times[0] <= window_start:
            times.popleft()
        times.append(now)
        self._failures[key] = times  # re-inserted last: the dict stays oldest-first
        while len(self._failures) > _MAX_TRACKED_PEERS:
            del self._failures[next(iter(self._failures))]
        if now < self._window_until:
            unit = _peer_unit(peer)
            self._window_failures[unit] = self._window_failures.pop(unit, 0) + 1
            while len(self._window_failures) > _MAX_TRACKED_PEERS:
                del self._window_failures[next(iter(self._window_failures))]
        lockout: tuple[float, bool] | None = None
        if len(times) >= self._lockout_after:
            del self._failures[key]
            self._locked_until[key] = now + self._lockout_seconds
            lockout = (self._lockout_seconds, False)
        if self._global_lockout_after is not None:
            # Addresses are cheap on a LAN; this bounds guesses from all of them together.
            self._global_failures.append(now)
            while self._global_failures and self._global_failures[0] <= window_start:
                self._global_failures.popleft()
            if len(self._global_failures) >= self._global_lockout_after:
                self._global_failures.clear()
                self._global_locked_until = now + self._lockout_seconds
                log.warning("pairing locked for everyone: too many wrong codes from the network")
                if lockout is None and not self._exempt(peer, now):
                    lockout = (self._lockout_seconds, True)
        if lockout is not None:
            for pairing in list(self._pending.values()):
                if self._is_locked(pairing.peer, pairing.client_name, now):
                    self._drop(pairing)
        return lockout

    def _is_locked(self, peer: str, client_name: str, now: float) -> bool:
        globally = now < self._global_locked_until and not self._exempt(peer, now)
        return globally or now < self._locked_until.get(_lockout_key(peer, client_name), 0.0)

    def _peer_has_lockout(self, peer: str, now: float) -> bool:
        prefix = _peer_unit(peer) + "/"
        return any(k.startswith(prefix) and now < until for k, until in self._locked_until.items())

    async def _refuse_if_locked(self, peer: str, now: float, client_name: str | None,
                                *, any_name: bool = False) -> None:
        """Refuse while pairing is locked for everyone (unless the window lets this peer
        through), or for this name from this peer."""
        until = 0.0 if self._exempt(peer, now) else self._global_locked_until
        if any_name:
            prefix = _peer_unit(peer) + "/"
            until = max([until, *(u for k, u in self._locked_until.items()
                                  if k.startswith(prefix))])
        elif client_name is not None:
            until = max(until, self._locked_until.get(_lockout_key(peer, client_name), 0.0))
        if now < until:
            retry = until - now
            await self._emit(
                "pair.failed",
                {"peer": peer, "reason": str(PairingErrorCode.LOCKED_OUT), "retry_after": retry},
                level=logging.INFO,  # the lockout itself was the warning
            )
            raise PairingError(
                PairingErrorCode.LOCKED_OUT,
                f"too many wrong codes: pairing is refused for another {retry:.0f} s",
                retry,
            )

    async def _refuse(
        self,
        code: PairingErrorCode,
        message: str,
        peer: str,
        client_name: str | None,
        *,
        retry_after: float | None = None,
    ) -> NoReturn:
        fields: dict[str, Any] = {"peer": peer, "reason": str(code)}
        if client_name is not None:
            fields["client_name"] = client_name
        await self._emit("pair.failed", fields, level=logging.INFO)
        raise PairingError(code, message, retry_after=retry_after)

    # -- housekeeping ----------------------------------------------------------------------

    def _digest(self, code: str) -> bytes:
        return hmac.new(self._code_key, code.encode("ascii"), hashlib.sha256).digest()

    def _drop(self, pending: _Pending) -> None:
        self._pending.pop(pending.pairing_id, None)
        key = _lockout_key(pending.peer, pending.client_name)
        if self._pending_by_peer.get(key) == pending.pairing_id:
            del self._pending_by_peer[key]

    def _drop_peer(self, peer: str, client_name: str) -> None:
        pairing_id = self._pending_by_peer.get(_lockout_key(peer, client_name))
        if pairing_id is not None and pairing_id in self._pending:
            self._drop(self._pending[pairing_id])

    def _prune(self, now: float) -> None:
        # Expired pairings linger one more TTL so that a late complete hears "expired".
        for pending in list(self._pending.values()):
            if now >= pending.expires_at + self._code_ttl:
                self._drop(pending)
        for key, until in list(self._locked_until.items()):
            if now >= until:
                del self._locked_until[key]
        window_start = now - self._lockout_seconds
        for key, times in list(self._failures.items()):
            if not times or times[-1] <= window_start:
                del self._failures[key]

    def pending_count(self) -> int:
        """Pairings begun and not yet completed, failed out or expired."""
        now = self._clock()
        return sum(1 for p in self._pending.values() if now < p.expires_at)

    async def _emit(
        self, event: str, fields: Mapping[str, Any], *, level: int = logging.INFO
    ) -> None:
        # Fields never hold a code, a key or a certificate: they go to logs and the audit chain.
        log.log(level, "%s %s", event, dict(fields))
        if self._on_event is not None:
            result = self._on_event(event, dict(fields))
            if inspect.isawaitable(result):
                await result
