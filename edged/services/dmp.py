"""The shared medical record (DMP): edged's own client of the DMP host (docs/dmp-api.md).

Its parts: the host's settings, errors, paths and headers (edged/services/dmp_host.py), the
card's login (dmp_card.py), the durable offline feeds (edged/state/dmp_queue.py); this module is the
service that ties them to the sessions, the consent and the delivery loop.

- **Settings** come from the `[dmp]` table (`DmpSettings.from_table`); an empty table leaves the
  service off. Keys: `url` (https://...), `ca_file` (the only root trusted for the host),
  `admin_token` (the simulator: edged enrolls its consent key at start; without it the device
  is assumed pre-enrolled: the operator enrolls the id and public key edged logs at start),
  `consent_ttl` (seconds a read/create consent record lives, default 900), `feed_consent_ttl`
  (feeds, default 86400 = the host's maximum, so a queued feed can still be delivered later
  that day), `consent_timeout` (seconds the patient has to answer, 60), `http_timeout` (15),
  `retry_base` / `retry_max` (the offline queue's backoff, 2 s / 300 s).
- **Professionals** authenticate with the CPS card in the terminal: the host's challenge is
  signed by the card (INTERNAL AUTHENTICATE; the PIN is asked on the keypad when the card needs
  it, for the client that asks: docs/security.md); the session token is kept for that client
  and that card insertion, and renewed on a 401. An emergency access is the declaring
  client's only, and the patient's Cancel ends it.
- **Consent**: before create, feed and read edged asks the patient on the terminal ("Allow
  <professional> to <action> your DMP?"), with the Vitale card present and the INS one of its
  beneficiaries'; OK yields a record signed by the device key (`ConsentSigner` under
  `state_dir/keys`), sent in `X-DMP-Consent`. Cancel / no answer: `consent_refused` /
  `consent_timeout`. Every answer is audited (`consent.answer`, the INS masked).
- **Offline feeds** (the ambulance): a feed that cannot reach the host is stored in SQLite
  (`state_dir/dmp-queue.db`) with its signed consent, and delivered by one background loop
  once the host answers and the same professional's card is in the terminal. A retry of a feed
  the host already registered is answered `already_registered`: delivered exactly once.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import http.client
import json
import logging
import random
import ssl
import time
import uuid
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import urlsplit

from bifente.apdu.errors import SecurityStatusNotSatisfied
from bifente.apdu.identity import mask_nir
from bifente.contracts.consent import CONSENT_HEADER, encode_header
from bifente.edged.readers.pcsc import CardKind
from bifente.edged.readers.ui import CODE_SCREEN_S, Answer, fit_lines
from bifente.edged.services import cards
from bifente.edged.services.consent import ConsentSigner
from bifente.edged.services.context import ServiceContext, audit_actor
from bifente.edged.services.dmp_card import (
    AuditHook,
    Emergency,
    NotThisProfessional,
    ProSession,
    card_login,
)
from bifente.edged.services.dmp_host import (
    OUTAGE_STATUSES,
    DmpError,
    DmpSettings,
    HostUnreachable,
    HostUntrusted,
    consent_headers,
    feed_headers,
    host_path,
)
from bifente.edged.services.errors import Family, NoCard, ServiceError, TerminalUnavailable
from bifente.edged.services.outbox import LOOP_ERROR_PAUSE
from bifente.edged.services.prompts import charge_prompt, one_prompt
from bifente.edged.state.dmp_queue import FeedQueue, QueuedFeed

__all__ = ["QUEUE", "QUEUE_CLIENT", "Client", "DmpService", "create_service"]

log = logging.getLogger(__name__)

# 408 (RFC 9110 §15.5.9) and 429 (RFC 6585 §4) without an error object of the host's own come
# from a gateway or a proxy and mean "not now": an outage, retried. The host's own 429
# (login_locked, docs/dmp-api.md) carries its reason and stays its verdict.
_NOT_NOW = frozenset({408, 429})

QUEUE_CLIENT = "edged:dmp-queue"  # the arbiter's client id for background deliveries


class Client(Protocol):
    """Who a DMP call is for: the connection's client context and its paired name (the
    name picks the client's prompt limits and names it in the audit trail)."""

    @property
    def client_id(self) -> str:
        """The client context (its certificate's fingerprint, or the unpaired peer)."""
        ...

    @property
    def client_name(self) -> str | None:
        """The paired client's name (None: unpaired, or edged itself)."""
        ...


@dataclass(frozen=True)
class _Background:
    client_id: str
    client_name: str | None = None


QUEUE: Client = _Background(QUEUE_CLIENT)  # the offline queue's deliveries


def create_service(ctx: ServiceContext) -> DmpService | None:
    """The service, or None when [dmp] is empty."""
    settings = DmpSettings.from_table(ctx.config.dmp)
    return None if settings is None else DmpService(ctx, settings)


# -- the service --------------------------------------------------------------------------

class DmpService:
    """The DMP host client, the terminal consent, the sessions and the offline queue."""

    def __init__(self, ctx: ServiceContext, settings: DmpSettings) -> None:
        self.ctx = ctx
        self.settings = settings
        parts = urlsplit(settings.url)
        self._host, self._port = parts.hostname or "", parts.port or 443
        self._ssl = ssl.create_default_context(cafile=str(settings.ca_file))
        self.signer = ConsentSigner(ctx.config.state_dir / "keys", wrapper=ctx.key_wrapper)
        self.queue = FeedQueue(ctx.config.state_dir / "dmp-queue.db",
                               wrapper=ctx.key_wrapper)
        self._sessions: dict[str, ProSession] = {}  # client context -> its host session
        self._last: ProSession | None = None
        self._emergencies: dict[tuple[str, str], Emergency] = {}  # (client, INS) -> grant
        # One lock per client context, only while it opens a session (login()).
        self._login_locks: weakref.WeakValueDictionary[str, asyncio.Lock] = \
            weakref.WeakValueDictionary()
        self._enrolled = settings.admin_token is None  # pre-enrolled when no admin token
        self._wakeup = asyncio.Event()
        self._host_down = False
        self._task: asyncio.Task[None] | None = None
        # Test seam (TEST ONLY, never set in production code): a function given the signed
        # consent envelope before it is sent, returning what to send instead.
        self.test_tamper_consent: Callable[[dict[str, Any]], dict[str, Any]] | None = None

    # -- lifetime --------------------------------------------------------------------------
    async def start(self) -> None:
        """Enroll (simulator) in the background and run the delivery loop."""
        log.info("DMP host %s; consent device %s", self.settings.url, self.signer.device_id)
        self._task = asyncio.get_running_loop().create_task(self._run_queue())

    async def stop(self) -> None:
        """Stop delivering; close the queue."""
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            except Exception:  # said, not swallowed; the rest of Daemon.stop must still run
                log.exception("DMP queue: the delivery loop ended with an error")
            self._task = None
        self.queue.close()

    # -- HTTP ------------------------------------------------------------------------------
    def _http(self, method: str, path: str, body: bytes | None,
              headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
        conn = http.client.HTTPSConnection(self._host, self._port, context=self._ssl,
                                           timeout=self.settings.http_timeout)
        try:
            conn.request(method, path, body=body, headers=headers)
            response = conn.getresponse()
            data = response.read()
            return response.status, {k.lower(): v for k, v in response.getheaders()}, data
        except ssl.SSLCertVerificationError as exc:
            raise HostUntrusted(f"the DMP host's certificate is not trusted (TLS): "
                                f"{exc.verify_message}") from exc
        except (OSError, http.client.HTTPException) as exc:
            raise HostUnreachable(f"the DMP host is unreachable: {exc}") from exc
        finally:
            conn.close()

    async def request(self, method: str, path: str, *, json_body: Any = None,
                      body: bytes | None = None, headers: dict[str, str] | None = None,
                      token: str | None = None) -> tuple[int, Any]:
        """One call; (status, JSON answer); DmpError for a refusal, HostUnreachable."""
        hdrs = dict(headers or {})
        if json_body is not None:
            body = json.dumps(json_body).encode()
            hdrs["Content-Type"] = "application/json"
        if token:
            hdrs["Authorization"] = f"Bearer {token}"
        hdrs.setdefault("Content-Length", str(len(body or b"")))
        try:
            status, _, data = await asyncio.to_thread(self._http, method, path, body, hdrs)
        except HostUnreachable:
            self._host_down = True
            raise
        if status in OUTAGE_STATUSES:
            self._host_down = True
            raise HostUnreachable(f"the DMP host answered {status}")
        try:
            answer = json.loads(data) if data else {}
        except ValueError as exc:
            if status >= 500 or status in _NOT_NOW:  # a gateway's page: see _NOT_NOW
                self._host_down = True
                raise HostUnreachable(f"the DMP host answered {status}") from exc
            raise DmpError("bad_answer", f"the DMP host answered {status} without JSON",
                           status) from exc
        if status in _NOT_NOW and not (isinstance(answer, dict)
                                       and isinstance(answer.get("error"), dict)):
            self._host_down = True
            raise HostUnreachable(f"the DMP host answered {status}")
        if status >= 400:
            error = answer.get("error") if isinstance(answer, dict) else None
            error = error if isinstance(error, dict) else {}
            raise DmpError(str(error.get("reason") or "refused"),
                           str(error.get("message") or f"the DMP host answered {status}"),
                           status, error.get("details") or [])
        if self._host_down and self._task is not None:
            # The host answers again: queued feeds may go now. Only on that transition, or
            # the queue's own calls would keep making every feed due (a busy loop).
            self._host_down = False
            self._wakeup.set()
        return status, answer

    async def ensure_enrolled(self) -> None:
        """With an admin token (simulator): enroll the consent key once."""
        if self._enrolled:
            return
        await self.request("POST", "/api/admin/devices", token=self.settings.admin_token,
                           json_body={"device": self.signer.device_id,
                                      "public_key": self.signer.public_key_pem})
        self._enrolled = True
        log.info("DMP: consent device %s enrolled", self.signer.device_id)

    # -- professionals ---------------------------------------------------------------------
    # A host session belongs to the client context whose PIN opened it (docs/security.md):
    # another client logs in for itself, with its own PIN on the keypad.
    @property
    def session(self) -> ProSession | None:
        """The most recently opened session (None drops them all: the host forgot them)."""
        return self._last

    @session.setter
    def session(self, value: ProSession | None) -> None:
        if value is not None:
            raise ValueError("sessions are opened by login()")
        self._sessions.clear()
        self._last = None

    def session_of(self, client_id: str) -> ProSession | None:
        """This client's session for the CPS card now inserted, if it has one."""
        slot = self.ctx.slots.find(CardKind.CPS)
        current = self._sessions.get(client_id)
        if current is None or slot is None or current.arbiter is not slot.arbiter:
            return None
        return current

    async def login(self, client: Client, *, professional: str | None = None,
                    allow_pin: bool = True) -> ProSession:
        """This client's session for the CPS card in the terminal (authenticating when
        needed); with `professional`, only that professional's card will do. The background
        queue (QUEUE) reuses a session the professional opened, or the card as it is."""
        arbiter = cards.arbiter_for(self.ctx, CardKind.CPS)
        # A client with a session goes on without waiting: the lock is only for opening one,
        # and it is this client's: while one user types a PIN on the keypad (two host round
        # trips and up to pin_timeout), every other client is served.
        current = self._open_session(client.client_id, arbiter, professional)
        if current is None:
            lock = self._login_locks.setdefault(client.client_id, asyncio.Lock())
            async with lock:  # the same client twice at once: one login, one PIN
                current = self._open_session(client.client_id, arbiter, professional)
                if current is None:
                    current = await self._authenticate(client, arbiter, professional,
                                                       allow_pin)
                    self._sessions[client.client_id] = current
        self._last = current
        return current

    def _open_session(self, client_id: str, arbiter: Any,
                      professional: str | None) -> ProSession | None:
        """The session this client may use now with the card behind `arbiter`, if any."""
        current = self.session_of(client_id)
        if current is None and client_id == QUEUE_CLIENT:
            current = next((s for s in self._sessions.values()
                            if s.arbiter is arbiter
                            and s.national_id == (professional or s.national_id)), None)
        if professional is not None and current is not None \
                and current.national_id != professional:
            raise NotThisProfessional("the CPS card in the terminal is another "
                                      "professional's")
        return current

    async def _authenticate(self, client: Client, arbiter: Any, professional: str | None,
                            allow_pin: bool) -> ProSession:
        """A new host session: the host's challenge signed by the card (PIN when needed)."""
        client_id = client.client_id
        if allow_pin and client_id != QUEUE_CLIENT:  # may ask the PIN: a prompt (M2)
            charge_prompt(self.ctx, client_id, client.client_name)
        _, answer = await self.request("POST", "/api/auth/challenge")
        challenge = base64.b64decode(answer["challenge"])
        pin_timeout = self.ctx.config.pin_timeout
        audit = self._pin_audit(client)
        owner = None if client_id == QUEUE_CLIENT else client_id
        card = await arbiter.run(
            client_id, lambda s: card_login(s, challenge, pin_timeout, owner,
                                             allow_pin=allow_pin, expected=professional,
                                             audit=audit),
            label="dmp.login", timeout=pin_timeout + self.ctx.config.card_timeout)
        _, answer = await self.request("POST", "/api/auth/session", json_body={
            "challenge": answer["challenge"], "certificate": card["certificate"],
            "signature": card["signature"]})
        return ProSession(str(answer["token"]), card["national_id"], card["display_name"],
                          arbiter, dict(answer.get("professional") or {}))

    def _pin_audit(self, client: Client) -> AuditHook:
        """Audit from the card thread, waiting until each record is durable."""
        actor = audit_actor(client.client_name, client.client_id)
        log_ = self.ctx.audit

        def audit(event: str, **fields: Any) -> None:
            log_.append(event, actor=actor, **fields)  # at once, not grouped

        return audit

    async def identify(self, client: Client) -> dict[str, Any]:
        """Offline: who holds the CPS card (and the PIN verified on the keypad for later)."""
        arbiter = cards.arbiter_for(self.ctx, CardKind.CPS)
        pin_timeout = self.ctx.config.pin_timeout
        audit = self._pin_audit(client)
        client_id = client.client_id
        return await arbiter.run(
            client_id, lambda s: card_login(s, uuid.uuid4().bytes, pin_timeout, client_id,
                                             audit=audit, via="dmp.identify"),
            label="dmp.identify", timeout=pin_timeout + self.ctx.config.card_timeout)

    async def call(self, client: Client, method: str, path: str, *,
                   professional: str | None = None, allow_pin: bool = True,
                   **kw: Any) -> tuple[int, Any]:
        """A request in the client's session, authenticating again after a 401."""
        session = await self.login(client, professional=professional, allow_pin=allow_pin)
        try:
            return await self.request(method, path, token=session.token, **kw)
        except DmpError as exc:
            if exc.status != 401:
                raise
        self._forget(session)
        session = await self.login(client, professional=professional, allow_pin=allow_pin)
        return await self.request(method, path, token=session.token, **kw)

    def _forget(self, session: ProSession) -> None:
        """The host no longer knows this session."""
        for key in [k for k, v in self._sessions.items() if v is session]:
            del self._sessions[key]
        if self._last is session:
            self._last = None

    # -- verbs: the host's paths and headers live here (docs/dmp-api.md) -------------------
    async def exists(self, client: Client, ins: str) -> dict[str, Any]:
        """Whether the patient has a DMP (no consent needed)."""
        answer: dict[str, Any]  # the host answers a JSON object (docs/dmp-api.md)
        _, answer = await self.call(client, "GET", host_path(ins))
        return answer

    async def create(self, client: Client, ins: str, ins_oid: str,
                     consent: str) -> dict[str, Any]:
        """Create the record under a signed consent; the host's answer (with the password)."""
        answer: dict[str, Any]  # the host answers a JSON object (docs/dmp-api.md)
        _, answer = await self.call(client, "POST", host_path(ins),
                                    json_body={"ins_oid": ins_oid},
                                    headers={CONSENT_HEADER: consent})
        return answer

    async def feed(self, client: Client, ins: str, query: str, cda: bytes,
                   consent: str) -> dict[str, Any]:
        """Add a CDA under a signed consent; HostUnreachable when the host does not answer."""
        answer: dict[str, Any]  # the host answers a JSON object (docs/dmp-api.md)
        _, answer = await self.call(client, "POST", host_path(ins, "documents") + query,
                                    body=cda, headers=feed_headers(consent))
        return answer

    async def find(self, client: Client, ins: str, query: str,
                   consent: str | None) -> dict[str, Any]:
        """The index; `consent` None under the client's own emergency access."""
        answer: dict[str, Any]  # the host answers a JSON object (docs/dmp-api.md)
        _, answer = await self.call(client, "GET", host_path(ins, "documents") + query,
                                    headers=consent_headers(consent))
        return answer

    async def get(self, client: Client, ins: str, document_id: str,
                  consent: str | None) -> dict[str, Any]:
        """One document and its CDA; `consent` None under the client's emergency access."""
        answer: dict[str, Any]  # the host answers a JSON object (docs/dmp-api.md)
        _, answer = await self.call(client, "GET", host_path(ins, "documents", document_id),
                                    headers=consent_headers(consent))
        return answer

    async def emergency(self, client: Client, ins: str, mode: str,
                        reason: str) -> dict[str, Any]:
        """Open an emergency access on the host, then record it for this client only."""
        answer: dict[str, Any]  # the host answers a JSON object (docs/dmp-api.md)
        _, answer = await self.call(client, "POST", host_path(ins, "emergency"),
                                    json_body={"mode": mode, "reason": reason})
        expires_in = float(answer.get("expires_in") or 0)
        self.declare_emergency(client.client_id, ins, mode, reason, expires_in)
        return {**answer, "expires_in": expires_in}

    async def visibility(self, client: Client, ins: str, document_id: str,
                         flags: dict[str, bool]) -> dict[str, Any]:
        """The author changes a document's visibility flags."""
        answer: dict[str, Any]  # the host answers a JSON object (docs/dmp-api.md)
        _, answer = await self.call(client, "POST",
                                    host_path(ins, "documents", document_id, "visibility"),
                                    json_body=flags)
        return answer

    async def delete(self, client: Client, ins: str, document_id: str) -> dict[str, Any]:
        """The author deletes a document the patient asked to delete."""
        answer: dict[str, Any]  # the host answers a JSON object (docs/dmp-api.md)
        _, answer = await self.call(client, "DELETE", host_path(ins, "documents", document_id))
        return answer

    # -- emergency access ------------------------------------------------------------------
    def declare_emergency(self, client_id: str, ins: str, mode: str, reason: str,
                          expires_in: float) -> Emergency:
        """Record an emergency access the host granted to this client's session."""
        session = self.session_of(client_id)
        if session is None:
            raise NoCard("the CPS card that declared the emergency access is gone")
        grant = Emergency(client_id, session.national_id, ins, mode, reason,
                          time.monotonic() + expires_in, session.arbiter)
        self._emergencies[(client_id, ins)] = grant
        return grant

    def emergency_for(self, client_id: str, ins: str) -> Emergency | None:
        """The emergency access this client declared for this patient, still running with
        the same card and professional (M1: a grant is never shared between clients)."""
        grant = self._emergencies.get((client_id, ins))
        session = self.session_of(client_id)
        if grant is None:
            return None
        if grant.until <= time.monotonic() or session is None \
                or session.arbiter is not grant.arbiter \
                or session.national_id != grant.professional:
            del self._emergencies[(client_id, ins)]
            return None
        return grant

    def end_emergencies(self, ins: str | None = None) -> int:
        """The patient pressed Cancel: emergency accesses (for this patient, or all) end now."""
        ended = [k for k in self._emergencies if ins is None or k[1] == ins]
        for key in ended:
            del self._emergencies[key]
        if ended:
            self.ctx.audit_event("dmp.emergency.ended", None, grants=len(ended),
                                    by="patient_cancel")
        return len(ended)

    # -- consent ---------------------------------------------------------------------------
    async def ask_consent(self, conn: Any, *, ins: str, professional: str, name: str,
                          action: str, express: bool = False, question: str | None = None
                          ) -> str:
        """Ask the patient on the terminal; the signed record as the header value."""
        if self.ctx.slots.find(CardKind.VITALE) is None:
            raise ServiceError(Family.CONSENT, "vitale_required", "the patient's Vitale card "
                               "must be in the terminal to consent")
        card = await cards.on_card(self.ctx, conn.client_id, CardKind.VITALE,
                                   cards.vitale_read, "dmp.consent")
        if ins not in {b.ins.value for b in card.beneficiaries}:
            raise ServiceError(Family.CONSENT, "ins_not_on_card", "this INS is not one of the "
                               "Vitale card's beneficiaries")
        if self.ctx.ui is None:
            raise TerminalUnavailable("no terminal display and keys to ask the patient")
        verb = {"read": "consulter", "feed": "alimenter", "create": "créer"}[action]
        text = question or f"Autoriser {name} à {verb} votre DMP ?"
        if express:
            text += " (consentement exprès)"
        async with one_prompt(self.ctx, conn):
            answer = Answer(await self.ctx.ui.confirm("\n".join(fit_lines(text)),
                                                      timeout=self.settings.consent_timeout))
        self.ctx.audit_event("consent.answer", conn, answer=answer, action=action,
                                patient=mask_nir(ins), professional=professional,
                                express=express)
        if answer is Answer.CANCEL:
            self.end_emergencies(ins)  # the patient's Cancel wins over an emergency access
            raise ServiceError(Family.CONSENT, "consent_refused", "the patient refused")
        if answer is not Answer.OK:
            raise ServiceError(Family.CONSENT, "consent_timeout",
                               "the patient did not answer in time")
        with contextlib.suppress(HostUnreachable):  # offline: the queue enrolls first
            await self.ensure_enrolled()
        ttl = self.settings.feed_consent_ttl if action == "feed" else self.settings.consent_ttl
        signed = self.signer.sign(ins=ins, professional=professional, action=action,
                                  express=express, ttl=ttl)
        if self.test_tamper_consent is not None:
            signed = self.test_tamper_consent(signed)
        return encode_header(signed)

    async def show_patient_code(self, conn: Any, ins: str) -> int:
        """The patient's web-space login code, asked from the host and shown on the display.

        The patient consents on the terminal (a read consent record, spent by the host); the
        code goes only to the display: it is not returned, logged or audited. Returns the
        seconds it stays valid.
        """
        if self.ctx.ui is None:
            raise TerminalUnavailable("no terminal display to show the code on")
        session = await self.login(conn)
        header = await self.ask_consent(
            conn, ins=ins, professional=session.national_id, name=session.display_name,
            action="read", question="Afficher votre code de connexion DMP sur ce terminal ?")
        _, answer = await self.call(conn, "POST", host_path(ins, "patient-code"),
                                    headers={CONSENT_HEADER: header})
        code, expires_in = str(answer.get("code", "")), int(answer.get("expires_in") or 0)
        if not code:
            raise DmpError("bad_answer", "the DMP host sent no code")
        await self.ctx.ui.show(["Votre code DMP", code,
                                f"valable {max(expires_in // 60, 1)} min"],
                               secret_s=CODE_SCREEN_S)
        return expires_in

    # -- offline feeds ---------------------------------------------------------------------
    async def enqueue(self, ins: str, professional: str, query: str, cda: bytes,
                      consent: str) -> str:
        """Queue a feed for later delivery; wakes the loop. DiskFull (nothing written) when the
        disk is nearly full."""
        # In a thread: sealing up to 64 MiB and a synchronous=FULL commit would stall every
        # other client. The queue's connection is shared across threads under its own lock.
        queue_id = await asyncio.to_thread(self._store_feed, ins, professional, query, cda,
                                           consent)
        self._wakeup.set()  # on the loop: an asyncio.Event is not for other threads
        return queue_id

    def _store_feed(self, ins: str, professional: str, query: str, cda: bytes,
                    consent: str) -> str:
        self.ctx.space.check("a DMP feed to queue", 2 * (len(cda) + len(consent)))
        return self.queue.add(ins, professional, query, cda, consent)

    async def _run_queue(self) -> None:
        """Deliver forever; nothing ends the loop but cancellation: an unexpected error (the
        database, a bug) is logged and the loop goes on after a pause, as the mail outbox's."""
        while True:
            try:
                await self._queue_step()
            except Exception:
                log.exception("DMP queue: unexpected error in the delivery loop; going on")
                await asyncio.sleep(LOOP_ERROR_PAUSE)

    async def _queue_step(self) -> None:
        """Deliver the oldest due feed, or wait until one is due (or the host answers)."""
        try:
            await self.ensure_enrolled()
        except (HostUnreachable, DmpError) as exc:
            log.info("DMP: enrollment deferred: %s", exc)
        # Not enrolled yet, nothing is sent: the host would refuse the consent of a device it
        # does not know (consent_forged), a verdict that fails the feed for good.
        item = await asyncio.to_thread(self.queue.claim) if self._enrolled else None
        if item is None:
            self._wakeup.clear()
            due = await asyncio.to_thread(self.queue.next_due)
            wait = None if due is None else max(0.05, due - time.time())
            if not self._enrolled:
                wait = min(wait or self.settings.retry_max, self.settings.retry_base * 4)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wakeup.wait(), wait)
            if self._wakeup.is_set():
                await asyncio.to_thread(self.queue.hurry)
            return
        try:
            await self._deliver(item)
        except Exception as exc:  # a bug, not the host: said, and the feed tried again later
            log.exception("DMP queue: delivery of %s failed unexpectedly", item.queue_id)
            await asyncio.to_thread(self.queue.retry, item.queue_id,
                                    f"internal error: {type(exc).__name__}",
                                    self._delay(item.attempts + 1))

    def _delay(self, attempts: int) -> float:
        # The exponent is capped: attempts only grow, 2.0 ** 1024 would not be a float.
        delay = min(self.settings.retry_max,
                    self.settings.retry_base * 2.0 ** min(max(attempts - 1, 0), 30))
        return delay * (0.5 + random.random() / 2)

    async def _deliver(self, item: QueuedFeed) -> None:
        path = host_path(item.ins, "documents") + item.query
        headers = feed_headers(item.consent)
        try:
            _, answer = await self.call(QUEUE, "POST", path, body=item.cda,
                                        headers=headers, professional=item.professional,
                                        allow_pin=False)
        except (HostUnreachable, NoCard, NotThisProfessional, SecurityStatusNotSatisfied,
                TimeoutError) as exc:
            # Host down, or the professional's card is not here (the PIN is never prompted
            # from the background: the card must still hold it).
            await asyncio.to_thread(self.queue.retry, item.queue_id, str(exc),
                                    self._delay(item.attempts + 1))
            return
        except DmpError as exc:
            if exc.status == 401:
                self._sessions.clear()  # the host restarted: every session is gone
                self._last = None
                await asyncio.to_thread(self.queue.retry, item.queue_id, exc.reason,
                                        self._delay(item.attempts + 1))
                return
            await asyncio.to_thread(self.queue.failed, item.queue_id, exc.reason)
            self.ctx.audit_event("dmp.feed.failed", None, queue_id=item.queue_id,
                                    patient=mask_nir(item.ins), reason=exc.reason)
            return
        document = answer.get("document") or {}
        await asyncio.to_thread(self.queue.delivered, item.queue_id, document.get("id"))
        self.ctx.audit_event("dmp.feed.delivered", None, queue_id=item.queue_id,
                                patient=mask_nir(item.ins), document=document.get("id"),
                                already_registered=bool(answer.get("already_registered")))
        log.info("DMP queue: feed %s delivered", item.queue_id)
