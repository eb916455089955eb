"""The host's JSON API: professionals, patients, admin; every access and refusal traced.

Each operation: authenticate, then the rules (`rules.py`) decide, then storage changes and the
trace commit in one transaction. A `Refused` raised anywhere is answered with its reason code
and traced against the patient's record by `_traced`.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import hmac
import re
import sqlite3
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from apdu.identity import InsAuthority, parse_nir
from simulators.dmp import cda
from simulators.dmp.auth import (
    CHALLENGE_TTL,
    Challenges,
    CodeSender,
    Grant,
    OutboxCodeSender,
    PatientLogins,
    PatientSession,
    ProfessionalSession,
    Sessions,
    authenticate_professional,
    generate_password,
    hash_password,
    verify_password,
)
from simulators.dmp.codes import AccessMode, Action, CdaProblem, DocStatus, Outcome, Reason, Refused
from simulators.dmp.consent import (
    CONSENT_HEADER,
    ConsentRecord,
    decode_header,
    load_device_key,
    verify_consent,
)
from simulators.dmp.directory import Directory
from simulators.dmp.rules import (
    DmpView,
    PatientVisibility,
    Policy,
    Professional,
    apply_visibility,
    check_dmp,
    check_emergency,
    check_occupational,
    check_visibility,
    check_visibility_change,
    document_refusal,
    gate,
    patient_visibility,
)
from simulators.dmp.server import Request, Response, Router, json_response
from simulators.dmp.storage import DmpRecord, Document, Storage, Trace

__all__ = ["DmpService"]

MAX_CDA = 32 * 1024 * 1024
MAX_PATIENT_UPLOAD = 16 * 1024 * 1024
MAX_REASON = 500
LOGIN_LOCK_AFTER = 5
LOGIN_LOCK_FOR = 15 * 60
CDA_TYPES = ("application/hl7-v3+xml", "application/xml", "text/xml")
_NATIONAL_ID = re.compile(r"^(8\d{11}|0\d{9})$")  # 8 + RPPS, or 0 + ADELI (FACTS §1)
_VISIBILITY_FLAGS = ("masked_ps", "invisible_patient", "invisible_representatives")


def _iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return dt.datetime.fromtimestamp(ts, dt.UTC).isoformat(timespec="seconds").replace(
        "+00:00", "Z")


def _bool(value: object, name: str) -> bool:
    if not isinstance(value, bool):
        raise Refused(Reason.BAD_REQUEST, f"{name} must be true or false")
    return value


def _ins(text: str) -> str:
    try:
        return parse_nir(text).value
    except ValueError as exc:
        raise Refused(Reason.INS_INVALID, f"the INS is not valid: {exc}") from None


@dataclass
class _Ctx:
    """What a trace needs to know about the request being served."""

    actor: Trace
    ins: str | None = field(default=None, repr=False)
    action: str = ""
    document_id: str = ""
    mode: AccessMode = AccessMode.NORMAL
    emergency_reason: str = ""


class DmpService:
    """The API over storage, rules, directory, sessions; `register` adds its routes."""

    def __init__(self, storage: Storage, policy: Policy, directory: Directory, *,
                 clock: Callable[[], float], admin_token: str, code_sender: CodeSender,
                 test_mode: bool = False) -> None:
        self.storage = storage
        self.policy = policy
        self.directory = directory
        self.clock = clock
        self.admin_token = admin_token
        self.code_sender = code_sender
        self.test_mode = test_mode
        self.challenges = Challenges()
        self.sessions = Sessions()
        self.logins = PatientLogins()

    # -- routing ---------------------------------------------------------------------------
    def register(self, router: Router) -> None:
        """Add the JSON API's routes."""
        pro, pat = self._professional, self._patient
        for method, pattern, handler in (
            ("GET", "/api/health", self.health),
            ("POST", "/api/auth/challenge", self.challenge),
            ("POST", "/api/auth/session", self.open_session),
            ("DELETE", "/api/auth/session", self.close_session),
            ("GET", "/api/dmp/{ins}", pro(Action.EXISTS, self.exists)),
            ("POST", "/api/dmp/{ins}", pro(Action.CREATE, self.create)),
            ("POST", "/api/dmp/{ins}/documents", pro(Action.FEED, self.feed)),
            ("GET", "/api/dmp/{ins}/documents", pro(Action.FIND, self.find)),
            ("GET", "/api/dmp/{ins}/documents/{doc}", pro(Action.RETRIEVE, self.retrieve)),
            ("POST", "/api/dmp/{ins}/documents/{doc}/visibility",
             pro(Action.VISIBILITY, self.visibility)),
            ("DELETE", "/api/dmp/{ins}/documents/{doc}", pro(Action.DELETE, self.delete)),
            ("POST", "/api/dmp/{ins}/emergency", pro(Action.EMERGENCY, self.emergency)),
            ("POST", "/api/dmp/{ins}/patient-code",
             pro(Action.PATIENT_CODE_ISSUED, self.issue_patient_code)),
            ("GET", "/api/dmp/{ins}/traces", self.dmp_traces),
            ("POST", "/api/patient/login", self.patient_login),
            ("POST", "/api/patient/login/code", self.patient_code),
            ("POST", "/api/patient/logout", self.logout),
            ("GET", "/api/patient/dmp", pat(Action.PATIENT_SETTINGS, self.patient_dmp)),
            ("POST", "/api/patient/settings", pat(Action.PATIENT_SETTINGS, self.patient_settings)),
            ("GET", "/api/patient/documents", pat(Action.FIND, self.patient_documents)),
            ("POST", "/api/patient/documents", pat(Action.FEED, self.patient_add)),
            ("GET", "/api/patient/documents/{doc}", pat(Action.RETRIEVE, self.patient_retrieve)),
            ("POST", "/api/patient/documents/{doc}/visibility",
             pat(Action.VISIBILITY, self.patient_visibility)),
            ("POST", "/api/patient/documents/{doc}/deletion-request",
             pat(Action.DELETION_REQUEST, self.patient_deletion)),
            ("POST", "/api/patient/blocked", pat(Action.PATIENT_BLOCK, self.patient_block)),
            ("DELETE", "/api/patient/blocked/{national_id}",
             pat(Action.PATIENT_UNBLOCK, self.patient_unblock)),
            ("GET", "/api/patient/traces", pat(Action.TRACES, self.patient_traces)),
            ("POST", "/api/patient/close", pat(Action.CLOSE, self.patient_close)),
            ("POST", "/api/admin/devices", self.enroll),
            ("DELETE", "/api/admin/devices/{device}", self.revoke),
        ):
            router.add(method, pattern, handler)
        if self.test_mode:  # never on a host started without --test-mode
            router.add("GET", "/api/test/last-code", self.test_last_code)

    # -- tracing -----------------------------------------------------------------------------
    def trace(self, ctx: _Ctx, outcome: Outcome, reason: str = "") -> None:
        """Append one trace for this request."""
        self.storage.add_trace(replace(
            ctx.actor, time=self.clock(), ins=ctx.ins, action=ctx.action, outcome=outcome,
            reason=reason, mode=ctx.mode, emergency_reason=ctx.emergency_reason,
            document_id=ctx.document_id))

    def _traced(self, ctx: _Ctx, run: Callable[[], Response]) -> Response:
        try:
            return run()
        except Refused as refusal:
            self.trace(ctx, Outcome.REFUSED, refusal.reason)
            raise

    @staticmethod
    def _actor(prof: Professional) -> Trace:
        return Trace(0.0, None, "professional", prof.national_id, "", "", actor_name=prof.name,
                     profession=prof.profession, specialty=prof.specialty,
                     structure_id=prof.structure_id, structure_name=prof.structure_name,
                     auth_mode=prof.auth_mode)

    def _professional(self, action: Action,
                      handler: Callable[[_Ctx, ProfessionalSession, Request], Response]
                      ) -> Callable[[Request], Response]:
        def run(req: Request) -> Response:
            session = self.sessions.get(req.bearer() or "", self.clock())
            if not isinstance(session, ProfessionalSession):
                raise Refused(Reason.UNAUTHENTICATED, "authenticate with POST /api/auth/session")
            ctx = _Ctx(self._actor(session.professional), action=action,
                       document_id=req.params.get("doc", ""))
            invalid = ""
            try:
                ctx.ins = parse_nir(req.params["ins"]).value
            except ValueError as exc:
                ctx.ins = None  # no such record: traced host-wide
                invalid = f"the INS is not valid: {exc}"

            def inner() -> Response:
                if ctx.ins is None:
                    raise Refused(Reason.INS_INVALID, invalid)
                return handler(ctx, session, req)

            return self._traced(ctx, inner)
        return run

    def _patient(self, action: Action,
                 handler: Callable[[_Ctx, PatientSession, Request], Response]
                 ) -> Callable[[Request], Response]:
        def run(req: Request) -> Response:
            session = self.sessions.get(req.bearer() or "", self.clock())
            if not isinstance(session, PatientSession):
                raise Refused(Reason.UNAUTHENTICATED, "log in with POST /api/patient/login")
            ctx = _Ctx(Trace(0.0, None, "patient", "patient", "", "", actor_name="the patient"),
                       ins=session.ins, action=action, document_id=req.params.get("doc", ""))
            return self._traced(ctx, lambda: handler(ctx, session, req))
        return run

    # -- authentication ------------------------------------------------------------------------
    def health(self, req: Request) -> Response:
        """Liveness and what the host runs with."""
        return json_response(200, {"status": "ok", "service": "bifente reference DMP host (TEST)",
                                   "policy": self.policy.source, "test_mode": self.test_mode})

    def challenge(self, req: Request) -> Response:
        """A fresh single-use challenge to sign with the CPS authentication key."""
        challenge = self.challenges.issue(self.clock())
        return json_response(200, {"challenge": base64.b64encode(challenge).decode(),
                                   "expires_in": CHALLENGE_TTL})

    def open_session(self, req: Request) -> Response:
        """Check the signed challenge and open a session (direct or indirect mode)."""
        body = req.json()
        seen: dict[str, str] = {}

        def note(cert: x509.Certificate) -> None:
            for oid, key in ((NameOID.SERIAL_NUMBER, "id"), (NameOID.COMMON_NAME, "name"),
                             (NameOID.ORGANIZATIONAL_UNIT_NAME, "structure")):
                attrs = cert.subject.get_attributes_for_oid(oid)
                if attrs:
                    seen[key] = str(attrs[0].value)[:100]

        now = self.clock()
        try:
            prof = authenticate_professional(body, challenges=self.challenges,
                                             directory=self.directory, now=now,
                                             on_certificate=note)
        except Refused as refusal:
            if seen:  # a certificate was shown: the attempt is traced host-wide
                user = body.get("user")
                self.storage.add_trace(Trace(
                    now, None, "structure" if isinstance(user, str) else "professional",
                    str(user) if isinstance(user, str) else seen.get("id", ""),
                    Action.AUTHENTICATE, Outcome.REFUSED, refusal.reason,
                    actor_name=seen.get("name", ""), structure_id=seen.get("structure", "")))
            raise
        session = self.sessions.open_professional(prof, now)
        self.storage.add_trace(replace(self._actor(prof), time=now, action=Action.AUTHENTICATE,
                                       outcome=Outcome.OK))
        return json_response(200, {"token": session.token,
                                   "expires_in": int(session.expires - now),
                                   "professional": prof.to_json()})

    def close_session(self, req: Request) -> Response:
        """End a session."""
        self.sessions.end(req.bearer() or "")
        return json_response(200, {"closed": True})

    # -- consent -------------------------------------------------------------------------------
    def _device_key(self, device: str) -> ec.EllipticCurvePublicKey | None:
        pem = self.storage.device_key(device)
        return load_device_key(pem) if pem else None

    def _consent(self, req: Request, session: ProfessionalSession, ins: str,
                 action: Action) -> ConsentRecord | None:
        header = req.header(CONSENT_HEADER)
        if header is None:
            return None
        return verify_consent(decode_header(header), device_key=self._device_key, ins=ins,
                              professional=session.professional.national_id, action=action,
                              now=self.clock(), max_lifetime=self.policy.consent_max_lifetime,
                              skew=self.policy.consent_clock_skew)

    def _spend(self, record: ConsentRecord | None) -> None:
        if record is not None and not self.storage.spend_nonce(
                record.nonce, record.device, record.expires, self.clock()):
            raise Refused(Reason.CONSENT_REPLAYED, "this consent record was already used")

    def _authorise(self, ctx: _Ctx, req: Request, session: ProfessionalSession, dmp: DmpView,
                   action: Action) -> ConsentRecord | None:
        """The patient's consent for this action (D4, D9, D10), or an emergency grant (reads)."""
        now = self.clock()
        record = self._consent(req, session, dmp.ins, action)
        express = bool(record and record.express)
        if record is None:
            grant = session.grant(dmp.ins, action, now)
            emergency = session.emergency.get(dmp.ins) if action is Action.READ else None
            if grant is not None:
                express = grant.express
            elif emergency is not None and now <= emergency.expires:
                ctx.mode, ctx.emergency_reason = emergency.mode, emergency.reason
            else:
                raise Refused(Reason.CONSENT_MISSING, "the patient's consent is required "
                              f"(send a consent record in {CONSENT_HEADER})")
        refusal = check_occupational(session.professional, dmp, express=express)
        if refusal:
            raise Refused(refusal, "an occupational doctor needs the patient's express consent")
        return record

    @staticmethod
    def _keep_grant(session: ProfessionalSession, record: ConsentRecord | None) -> None:
        if record is not None:
            session.grants[(record.ins, record.action)] = Grant(record.expires, record.express)

    def _open_record(self, session: ProfessionalSession, ins: str) -> DmpRecord:
        refusal = gate(session.professional, self.policy)
        if refusal:
            raise Refused(refusal)
        record = self.storage.get_dmp(ins)
        refusal = check_dmp(session.professional, record.view() if record else None)
        if refusal:
            raise Refused(refusal)
        assert record is not None
        return record

    # -- professional operations -----------------------------------------------------------------
    def exists(self, ctx: _Ctx, session: ProfessionalSession, req: Request) -> Response:
        """Test of existence."""
        refusal = gate(session.professional, self.policy)
        if refusal:
            raise Refused(refusal)
        assert ctx.ins is not None
        record = self.storage.get_dmp(ctx.ins)
        self.trace(ctx, Outcome.OK)
        return json_response(200, {"exists": record is not None,
                                   "status": record.status if record else None})

    def create(self, ctx: _Ctx, session: ProfessionalSession, req: Request) -> Response:
        """Create a record (D5, D6): any professional, a valid INS with its OID, consent."""
        assert ctx.ins is not None
        body = req.json()
        oid = body.get("ins_oid")
        if oid not in {a.value for a in InsAuthority}:
            raise Refused(Reason.INS_INVALID, "ins_oid must be an INS assigning authority OID")
        if parse_nir(ctx.ins).temporary != (oid == InsAuthority.NIA):
            raise Refused(Reason.INS_INVALID, "a NIA goes with the NIA OID, a NIR with a NIR OID")
        refusal = gate(session.professional, self.policy)
        if refusal:
            raise Refused(refusal)
        existing = self.storage.get_dmp(ctx.ins)
        if existing is not None:
            raise Refused(Reason.DMP_EXISTS if existing.status == "open" else Reason.DMP_CLOSED)
        record = self._authorise(ctx, req, session, DmpView(ctx.ins, "open"), Action.CREATE)
        password = generate_password()
        now = self.clock()
        with self.storage.transaction():
            self._spend(record)
            try:
                self.storage.create_dmp(ctx.ins, str(oid), session.professional.national_id,
                                        hash_password(password), now)
            except sqlite3.IntegrityError:
                raise Refused(Reason.DMP_EXISTS) from None
            self.trace(ctx, Outcome.OK)
        self._keep_grant(session, record)
        return json_response(201, {
            "ins": ctx.ins, "ins_oid": oid, "status": "open", "patient_password": password,
            "notice": "shown once: hand this password to the patient for the patient space"})

    def _doc_json(self, doc: Document) -> dict[str, object]:
        dtype = self.policy.types.get(doc.type_code)
        return {
            "id": doc.id, "cda_id": doc.cda_id, "type_code": doc.type_code,
            "type_name": dtype.name if dtype else "", "title": doc.title,
            "effective_time": doc.effective_time, "confidentiality": doc.confidentiality,
            "media_type": doc.media_type,
            "author": {"kind": doc.author_kind, "id": doc.author_id, "name": doc.author_name,
                       "profession": doc.author_profession},
            "fed_by": doc.fed_by, "submitted_at": _iso(doc.submitted_at), "size": doc.size,
            "sha256": doc.sha256, "status": doc.status,
            "deletion_requested_at": _iso(doc.deletion_requested_at),
            "visibility": {"masked_ps": doc.masked_ps, "invisible_patient": doc.invisible_patient,
                           "announced": doc.announced,
                           "invisible_representatives": doc.invisible_representatives}}

    def _flags(self, req: Request) -> dict[str, bool]:
        flags = {}
        for name in _VISIBILITY_FLAGS:
            value = req.arg(name)
            if value is not None:
                if value.lower() not in ("true", "false", "1", "0"):
                    raise Refused(Reason.BAD_REQUEST, f"{name} must be true or false")
                flags[name] = value.lower() in ("true", "1")
        return flags

    def feed(self, ctx: _Ctx, session: ProfessionalSession, req: Request) -> Response:
        """Register a CDA document (D7, D9): checked in full before anything is stored."""
        assert ctx.ins is not None
        prof = session.professional
        dmp = self._open_record(session, ctx.ins)
        flags = self._flags(req)
        content_type = (req.header("Content-Type") or "").split(";")[0].strip().lower()
        if content_type not in CDA_TYPES:
            raise Refused(Reason.BAD_REQUEST, f"send the CDA as {CDA_TYPES[0]}")
        data = req.body(MAX_CDA)  # whole or refused: nothing below runs on a cut transfer
        result = cda.check_cda(data, ctx.ins, self.policy.types)
        if not result.ok:
            problems = {p for p, _ in result.problems}
            details = [{"reason": p.value, "message": m} for p, m in result.problems]
            reason = (Reason.INS_MISMATCH if problems == {CdaProblem.INS_MISMATCH}
                      else Reason.CDA_INVALID)
            raise Refused(reason, f"the document does not conform ({len(details)} problems)",
                          details=details)
        info = result.info
        assert info is not None
        digest = hashlib.sha256(data).hexdigest()
        known = self.storage.document_by_cda_id(ctx.ins, info.cda_id)
        if known is not None:  # a retried feed: idempotent for its submitter
            if known.sha256 == digest and known.fed_by == prof.national_id:
                ctx.document_id = known.id
                self.trace(ctx, Outcome.OK)
                return json_response(200, {"document": self._doc_json(known),
                                           "already_registered": True})
            raise Refused(Reason.DOCUMENT_EXISTS, "another document has this CDA id")
        record = self._authorise(ctx, req, session, dmp.view(), Action.FEED)
        now = self.clock()
        author = self.directory.professional(info.author_id)
        doc = Document(
            id=str(uuid.uuid4()), ins=ctx.ins, cda_id=info.cda_id, type_code=info.type_code,
            title=info.title[:500], effective_time=info.effective_time,
            confidentiality=info.confidentiality, media_type=info.media_type,
            author_kind="professional", author_id=info.author_id,
            author_profession=author.profession if author else "",
            author_name=author.name if author else "", fed_by=prof.national_id,
            submitted_at=now, size=len(data), sha256=digest)
        view = apply_visibility(doc.view(), flags, now)
        refusal = check_visibility(view, self.policy, now)
        if refusal:
            raise Refused(refusal, "a document cannot be both masked and hidden from the patient")
        doc = replace(doc, masked_ps=view.masked_ps, invisible_patient=view.invisible_patient,
                      hidden_since=view.hidden_since,
                      invisible_representatives=view.invisible_representatives)
        ctx.document_id = doc.id
        with self.storage.transaction():
            self._spend(record)
            self.storage.insert_document(doc, data)
            self.trace(ctx, Outcome.OK)
        self._keep_grant(session, record)
        return json_response(201, {"document": self._doc_json(doc)})

    def _readable(self, ctx: _Ctx, req: Request, session: ProfessionalSession) -> DmpRecord:
        assert ctx.ins is not None
        dmp = self._open_record(session, ctx.ins)
        record = self._authorise(ctx, req, session, dmp.view(), Action.READ)
        if record is not None:
            with self.storage.transaction():
                self._spend(record)
            self._keep_grant(session, record)
        return dmp

    def find(self, ctx: _Ctx, session: ProfessionalSession, req: Request) -> Response:
        """The index (D12), filtered by the access matrix and visibility (D11, D16)."""
        dmp = self._readable(ctx, req, session)
        types = [t for v in req.query.get("type", []) for t in v.split(",") if t]
        statuses = [s for v in req.query.get("status", []) for s in v.split(",") if s] or [
            DocStatus.AVAILABLE, DocStatus.DELETION_REQUESTED]
        if not set(statuses) <= {DocStatus.AVAILABLE, DocStatus.DELETION_REQUESTED}:
            raise Refused(Reason.BAD_REQUEST, "status is available and/or deletion_requested")
        try:
            limit = min(int(req.arg("limit", "100") or 100), 1000)
            offset = max(int(req.arg("offset", "0") or 0), 0)
        except ValueError:
            raise Refused(Reason.BAD_REQUEST, "limit and offset are integers") from None
        visible = [d for d in self.storage.find_documents(dmp.ins, types=types,
                                                          statuses=statuses)
                   if document_refusal(session.professional, d.view(), dmp.view(), self.policy,
                                       ctx.mode) is None]
        self.trace(ctx, Outcome.OK)
        return json_response(200, {"documents": [self._doc_json(d)
                                                 for d in visible[offset:offset + limit]],
                                   "total": len(visible), "mode": ctx.mode})

    def _document(self, ctx: _Ctx, session: ProfessionalSession, dmp: DmpRecord) -> Document:
        doc = self.storage.get_document(dmp.ins, ctx.document_id)
        if doc is None:
            raise Refused(Reason.UNKNOWN_DOCUMENT)
        refusal = document_refusal(session.professional, doc.view(), dmp.view(), self.policy,
                                   ctx.mode)
        if refusal is Reason.MASKED_BY_PATIENT:  # traced as masked, answered as unknown
            raise Refused(refusal, told=Reason.UNKNOWN_DOCUMENT)
        if refusal:
            raise Refused(refusal)
        return doc

    def retrieve(self, ctx: _Ctx, session: ProfessionalSession, req: Request) -> Response:
        """One document: JSON with the CDA in base64, or the CDA itself (Accept: XML)."""
        dmp = self._readable(ctx, req, session)
        doc = self._document(ctx, session, dmp)
        content = self.storage.content(doc.id)
        self.trace(ctx, Outcome.OK)
        accept = req.header("Accept") or ""
        if any(t in accept for t in CDA_TYPES):
            return Response(200, content, "application/hl7-v3+xml",
                            {"X-DMP-Document-Id": doc.id, "X-DMP-SHA256": doc.sha256})
        return json_response(200, {"document": self._doc_json(doc),
                                   "cda": base64.b64encode(content).decode()})

    def _authored(self, ctx: _Ctx, session: ProfessionalSession) -> tuple[DmpRecord, Document]:
        assert ctx.ins is not None
        dmp = self._open_record(session, ctx.ins)
        doc = self.storage.get_document(dmp.ins, ctx.document_id)
        if doc is None or doc.status == DocStatus.DELETED:
            raise Refused(Reason.UNKNOWN_DOCUMENT)
        if session.professional.national_id not in (doc.author_id, doc.fed_by):
            if document_refusal(session.professional, doc.view(), dmp.view(), self.policy):
                raise Refused(Reason.NOT_AUTHOR, told=Reason.UNKNOWN_DOCUMENT)
            raise Refused(Reason.NOT_AUTHOR, "only the document's author may do this")
        return dmp, doc

    def visibility(self, ctx: _Ctx, session: ProfessionalSession, req: Request) -> Response:
        """The author changes a document's visibility (D8, D16)."""
        _dmp, doc = self._authored(ctx, session)
        return self._set_visibility(ctx, doc, req.json(), by_patient=False)

    def _set_visibility(self, ctx: _Ctx, doc: Document, body: dict[str, object], *,
                        by_patient: bool) -> Response:
        changes = {name: _bool(value, name) for name, value in body.items()}
        now = self.clock()
        refusal = check_visibility_change(doc.view(), changes, by_patient=by_patient,
                                          policy=self.policy, now=now)
        if refusal is Reason.NOT_PERMITTED:
            raise Refused(refusal, "allowed changes: " + ", ".join(sorted(
                {"masked_ps", "invisible_representatives"} if by_patient else
                {"masked_ps", "invisible_patient", "invisible_representatives", "announced"})))
        if refusal:
            raise Refused(refusal)
        view = apply_visibility(doc.view(), changes, now)
        with self.storage.transaction():
            self.storage.set_visibility(view)
            self.trace(ctx, Outcome.OK)
        updated = self.storage.get_document(doc.ins, doc.id)
        assert updated is not None
        return json_response(200, {"document": self._doc_json(updated)})

    def delete(self, ctx: _Ctx, session: ProfessionalSession, req: Request) -> Response:
        """The author deletes a document the patient asked to delete (D20)."""
        _dmp, doc = self._authored(ctx, session)
        if doc.status != DocStatus.DELETION_REQUESTED:
            raise Refused(Reason.DELETION_NOT_REQUESTED,
                          "a document is deleted after the patient asks for it")
        with self.storage.transaction():
            self.storage.delete_document(doc.id, self.clock())
            self.trace(ctx, Outcome.OK)
        deleted = self.storage.get_document(doc.ins, doc.id)
        assert deleted is not None
        return json_response(200, {"document": self._doc_json(deleted)})

    def emergency(self, ctx: _Ctx, session: ProfessionalSession, req: Request) -> Response:
        """Emergency access for this session (D13, D14): a reason, no opposition, traced."""
        assert ctx.ins is not None
        body = req.json()
        try:
            mode = AccessMode(body.get("mode"))
        except ValueError:
            mode = AccessMode.NORMAL
        if mode is AccessMode.NORMAL:
            raise Refused(Reason.BAD_REQUEST, "mode is bris_de_glace or centre_15")
        reason = body.get("reason", "")
        if not isinstance(reason, str):
            raise Refused(Reason.BAD_REQUEST, "reason must be text")
        ctx.mode, ctx.emergency_reason = mode, reason.strip()[:MAX_REASON]
        dmp = self._open_record(session, ctx.ins)
        refusal = (check_emergency(session.professional, dmp.view(), mode, reason, self.policy)
                   or check_occupational(session.professional, dmp.view(), express=False))
        if refusal:
            raise Refused(refusal)
        grant = Grant(session.expires, mode=mode, reason=ctx.emergency_reason)
        session.emergency[dmp.ins] = grant
        self.trace(ctx, Outcome.OK)
        return json_response(200, {"mode": mode, "reason": grant.reason,
                                   "expires_in": int(grant.expires - self.clock())})

    def issue_patient_code(self, ctx: _Ctx, session: ProfessionalSession,
                           req: Request) -> Response:
        """The patient's one-time login code, returned to show on the terminal (D21).

        The patient is at the desk: a consent record (action read) from the terminal is
        required, a session grant is not enough. The code is traced as issued, never recorded.
        """
        assert ctx.ins is not None
        dmp = self._open_record(session, ctx.ins)
        if req.header(CONSENT_HEADER) is None:
            raise Refused(Reason.CONSENT_MISSING, "the patient's consent on the terminal is "
                          f"required (send a consent record in {CONSENT_HEADER})")
        record = self._authorise(ctx, req, session, dmp.view(), Action.READ)
        now = self.clock()
        with self.storage.transaction():
            self._spend(record)
            code, expires = self.logins.issue(dmp.ins, now)
            self.trace(ctx, Outcome.OK)
        return json_response(200, {"code": code, "expires_in": int(expires - now)})

    def _trace_json(self, t: Trace) -> dict[str, object]:
        return {"id": t.id, "time": _iso(t.time), "action": t.action, "outcome": t.outcome,
                "reason": t.reason, "mode": t.mode, "emergency_reason": t.emergency_reason,
                "document_id": t.document_id,
                "actor": {"kind": t.actor_kind, "id": t.actor_id, "name": t.actor_name,
                          "profession": t.profession, "specialty": t.specialty,
                          "structure": {"id": t.structure_id, "name": t.structure_name},
                          "auth_mode": t.auth_mode}}

    def _traces(self, ins: str, req: Request) -> Response:
        try:
            limit = min(max(int(req.arg("limit", "1000") or 1000), 1), 10_000)
            before = req.arg("before")
            before_id = int(before) if before else None
        except ValueError:
            raise Refused(Reason.BAD_REQUEST, "limit and before are integers") from None
        traces = self.storage.traces(ins, limit=limit, before=before_id)
        return json_response(200, {"traces": [self._trace_json(t) for t in traces]})

    def dmp_traces(self, req: Request) -> Response:
        """A record's traces: for its patient, or a professional allowed to read it."""
        session = self.sessions.get(req.bearer() or "", self.clock())
        ins = _ins(req.params["ins"])
        if isinstance(session, PatientSession):
            if not hmac.compare_digest(session.ins, ins):
                raise Refused(Reason.NOT_PERMITTED, "a patient reads their own traces")
            ctx = _Ctx(Trace(0.0, None, "patient", "patient", "", "", actor_name="the patient"),
                       ins=ins, action=Action.TRACES)
            return self._traced(ctx, lambda: self._traces_logged(ctx, req))
        if isinstance(session, ProfessionalSession):
            pro_ctx = _Ctx(self._actor(session.professional), ins=ins, action=Action.TRACES)

            def run() -> Response:
                self._readable(pro_ctx, req, session)
                return self._traces_logged(pro_ctx, req)
            return self._traced(pro_ctx, run)
        raise Refused(Reason.UNAUTHENTICATED)

    def _traces_logged(self, ctx: _Ctx, req: Request) -> Response:
        assert ctx.ins is not None
        response = self._traces(ctx.ins, req)
        self.trace(ctx, Outcome.OK)
        return response

    # -- patients ---------------------------------------------------------------------------------
    def patient_login(self, req: Request) -> Response:
        """First step (D21): INS + password; a one-time code is then sent to the patient."""
        body = req.json()
        ins_text, password = body.get("ins"), body.get("password")
        if not isinstance(ins_text, str) or not isinstance(password, str):
            raise Refused(Reason.BAD_REQUEST, "ins and password are required")
        try:
            ins = parse_nir(ins_text).value
        except ValueError:
            ins = ""
        record = self.storage.get_dmp(ins) if ins else None
        now = self.clock()
        ok = verify_password(password, record.password_hash if record else None)
        if record is None:
            raise Refused(Reason.LOGIN_FAILED, "wrong INS or password")
        ctx = _Ctx(Trace(0.0, None, "patient", "patient", "", "", actor_name="the patient"),
                   ins=ins, action=Action.PATIENT_LOGIN)

        def run() -> Response:
            assert record is not None
            if record.locked_until and now < record.locked_until:
                raise Refused(Reason.LOGIN_LOCKED, "too many failures: try again later")
            if not ok:
                self.storage.login_failed(ins, now, lock_after=LOGIN_LOCK_AFTER,
                                          lock_for=LOGIN_LOCK_FOR)
                raise Refused(Reason.LOGIN_FAILED, "wrong INS or password")
            login, code, ahead = self.logins.start(ins, now)
            if not ahead:  # a code shown on a terminal is used instead of sending one
                self.code_sender.send(ins, code)
            return json_response(202, {"login": login,
                                       "code_sent_via": "terminal" if ahead
                                       else self.code_sender.name,
                                       "expires_in": 600})
        return self._traced(ctx, run)

    def patient_code(self, req: Request) -> Response:
        """Second step (D21): the one-time code; opens the patient's session."""
        body = req.json()
        login, code = body.get("login"), body.get("code")
        if not isinstance(login, str) or not isinstance(code, str):
            raise Refused(Reason.BAD_REQUEST, "login and code are required")
        now = self.clock()
        ins, why = self.logins.finish(login, code, now)
        if ins is None:
            raise Refused(Reason.CODE_INVALID, why or "")
        ctx = _Ctx(Trace(0.0, None, "patient", "patient", "", "", actor_name="the patient"),
                   ins=ins, action=Action.PATIENT_LOGIN)

        def run() -> Response:
            assert ins is not None
            if why is not None:
                self.storage.login_failed(ins, now, lock_after=LOGIN_LOCK_AFTER,
                                          lock_for=LOGIN_LOCK_FOR)
                raise Refused(Reason.CODE_INVALID, why)
            self.storage.login_succeeded(ins)
            session = self.sessions.open_patient(ins, now)
            self.trace(ctx, Outcome.OK)
            return json_response(200, {"token": session.token,
                                       "expires_in": int(session.expires - now)})
        return self._traced(ctx, run)

    def logout(self, req: Request) -> Response:
        """End the patient's session."""
        self.sessions.end(req.bearer() or "")
        return json_response(200, {"closed": True})

    def _record(self, session: PatientSession, *, writable: bool = False) -> DmpRecord:
        record = self.storage.get_dmp(session.ins)
        if record is None:
            raise Refused(Reason.DMP_NOT_FOUND)
        if writable and record.status != "open":
            raise Refused(Reason.DMP_CLOSED, "the record is closed: read only")
        return record

    def patient_dmp(self, ctx: _Ctx, session: PatientSession, req: Request) -> Response:
        """The patient's record: status, settings, blocked professionals, emergency accesses."""
        record = self._record(session)
        emergencies = [self._trace_json(t) for t in self.storage.traces(record.ins, limit=10_000)
                       if t.mode != AccessMode.NORMAL and t.outcome == Outcome.OK
                       and t.action != Action.EMERGENCY][:50]
        blocked = [{"national_id": nid, "name": e.name if (e := self.directory.professionals.get(
            nid)) else ""} for nid in sorted(record.blocked)]
        chosen = self.directory.professionals.get(record.chosen_doctor or "")
        return json_response(200, {
            "ins": record.ins, "status": record.status, "created_at": _iso(record.created_at),
            "closed_at": _iso(record.closed_at),
            "settings": {"oppose_bris_de_glace": record.oppose_bris_de_glace,
                         "oppose_centre_15": record.oppose_centre_15,
                         "occupational_express_consent": record.occupational_consent,
                         "chosen_doctor": {"national_id": record.chosen_doctor,
                                           "name": chosen.name if chosen else ""}
                         if record.chosen_doctor else None},
            "blocked": blocked, "emergency_accesses": emergencies})

    def patient_settings(self, ctx: _Ctx, session: PatientSession, req: Request) -> Response:
        """Oppositions (D13), occupational express consent (D1), chosen doctor (D16)."""
        self._record(session, writable=True)
        body = req.json()
        columns = {"oppose_bris_de_glace": "oppose_bris_de_glace",
                   "oppose_centre_15": "oppose_centre_15",
                   "occupational_express_consent": "occupational_consent"}
        changes: dict[str, object] = {}
        for name, value in body.items():
            if name in columns:
                changes[columns[name]] = _bool(value, name)
            elif name == "chosen_doctor":
                if value is not None:
                    entry = self.directory.professionals.get(str(value))
                    if entry is None or entry.profession != "10":
                        raise Refused(Reason.UNKNOWN_PROFESSIONAL,
                                      "the chosen doctor must be a doctor in the directory")
                changes["chosen_doctor"] = value
            else:
                raise Refused(Reason.BAD_REQUEST, f"unknown setting {name!r}")
        if not changes:
            raise Refused(Reason.BAD_REQUEST, "no setting given")
        with self.storage.transaction():
            self.storage.update_settings(session.ins, **changes)
            self.trace(ctx, Outcome.OK)
        return self.patient_dmp(ctx, session, req)

    def _patient_view(self, doc: Document, now: float) -> tuple[PatientVisibility, float | None]:
        return patient_visibility(doc.view(), now)

    def patient_documents(self, ctx: _Ctx, session: PatientSession, req: Request) -> Response:
        """What the patient sees (D8): visible documents, and those waiting past 2 weeks."""
        record = self._record(session)
        now = self.clock()
        visible, pending = [], []
        for doc in self.storage.find_documents(record.ins):
            state, visible_from = self._patient_view(doc, now)
            if state is PatientVisibility.VISIBLE:
                visible.append(self._doc_json(doc))
            elif state is PatientVisibility.PROMPT:
                pending.append({"id": doc.id, "visible_from": _iso(visible_from),
                                "message": "a document is waiting for you: ask your doctor for "
                                "an appointment, or it becomes visible on the date shown"})
        self.trace(ctx, Outcome.OK)
        return json_response(200, {"documents": visible, "pending": pending})

    def _patient_document(self, session: PatientSession, doc_id: str) -> Document:
        doc = self.storage.get_document(session.ins, doc_id)
        if doc is None or doc.status == DocStatus.DELETED:
            raise Refused(Reason.UNKNOWN_DOCUMENT)
        if self._patient_view(doc, self.clock())[0] is not PatientVisibility.VISIBLE:
            raise Refused(Reason.HIDDEN_FROM_PATIENT, told=Reason.UNKNOWN_DOCUMENT)
        return doc

    def patient_retrieve(self, ctx: _Ctx, session: PatientSession, req: Request) -> Response:
        """One of the patient's visible documents."""
        self._record(session)
        doc = self._patient_document(session, ctx.document_id)
        content = self.storage.content(doc.id)
        self.trace(ctx, Outcome.OK)
        return json_response(200, {"document": self._doc_json(doc),
                                   "cda": base64.b64encode(content).decode()})

    def patient_add(self, ctx: _Ctx, session: PatientSession, req: Request) -> Response:
        """The patient adds a document (D17): PDF or text, wrapped in a CDA by the host."""
        record = self._record(session, writable=True)
        body = req.json(MAX_PATIENT_UPLOAD)
        title, type_code = body.get("title"), body.get("type_code")
        media_type = body.get("media_type", "application/pdf")
        is_cda = media_type in CDA_TYPES  # a ready-made CDA: checked as a feed is (D7)
        if not is_cda:
            if not isinstance(title, str) or not title.strip() or len(title) > 200:
                raise Refused(Reason.BAD_REQUEST, "title: 1 to 200 characters")
            if type_code not in self.policy.types:
                raise Refused(Reason.BAD_REQUEST, "type_code must be a DMP document type")
            if media_type not in cda.BODY_MEDIA_TYPES:
                raise Refused(Reason.BAD_REQUEST, "media_type is application/pdf, text/plain "
                              "or a CDA (application/hl7-v3+xml)")
        try:
            content = base64.b64decode(str(body.get("content", "")), validate=True)
        except binascii.Error:
            raise Refused(Reason.BAD_REQUEST, "content must be base64") from None
        if not content:
            raise Refused(Reason.BAD_REQUEST, "content is empty")
        now = self.clock()
        if is_cda:
            data = content
        else:
            data = cda.build_document(
                record.ins, record.ins_oid, str(type_code), str(title).strip(),
                author_id=record.ins, author_name="",
                pdf=content if media_type == "application/pdf" else None,
                text=content.decode("utf-8", "replace") if media_type == "text/plain" else None,
                media_type=str(media_type), when=dt.datetime.fromtimestamp(now, dt.UTC))
        result = cda.check_cda(data, record.ins, self.policy.types)
        if not result.ok or result.info is None:
            problems = {p for p, _ in result.problems}
            raise Refused(Reason.INS_MISMATCH if problems == {CdaProblem.INS_MISMATCH}
                          else Reason.CDA_INVALID, "the document does not conform", details=[
                              {"reason": p.value, "message": m} for p, m in result.problems])
        info = result.info
        if self.storage.document_by_cda_id(record.ins, info.cda_id) is not None:
            raise Refused(Reason.DOCUMENT_EXISTS, "another document has this CDA id")
        doc = Document(id=str(uuid.uuid4()), ins=record.ins, cda_id=info.cda_id,
                       type_code=info.type_code, title=info.title[:500],
                       effective_time=info.effective_time, confidentiality=info.confidentiality,
                       media_type=info.media_type, author_kind="patient", author_id="patient",
                       author_profession="", author_name="the patient", fed_by="patient",
                       submitted_at=now, size=len(data),
                       sha256=hashlib.sha256(data).hexdigest())
        ctx.document_id = doc.id
        with self.storage.transaction():
            self.storage.insert_document(doc, data)
            self.trace(ctx, Outcome.OK)
        return json_response(201, {"document": self._doc_json(doc)})

    def patient_visibility(self, ctx: _Ctx, session: PatientSession, req: Request) -> Response:
        """The patient masks or unmasks a document (D16)."""
        self._record(session, writable=True)
        doc = self._patient_document(session, ctx.document_id)
        return self._set_visibility(ctx, doc, req.json(), by_patient=True)

    def patient_deletion(self, ctx: _Ctx, session: PatientSession, req: Request) -> Response:
        """Ask the author to delete (D20); the patient's own documents are deleted at once."""
        self._record(session, writable=True)
        doc = self._patient_document(session, ctx.document_id)
        now = self.clock()
        with self.storage.transaction():
            if doc.author_kind == "patient":
                self.storage.delete_document(doc.id, now)
            elif doc.status == DocStatus.AVAILABLE:
                self.storage.request_deletion(doc.id, now)
            self.trace(ctx, Outcome.OK)
        updated = self.storage.get_document(doc.ins, doc.id)
        assert updated is not None
        return json_response(200, {"document": self._doc_json(updated)})

    def patient_block(self, ctx: _Ctx, session: PatientSession, req: Request) -> Response:
        """Block a professional (D18)."""
        self._record(session, writable=True)
        national_id = req.json().get("national_id")
        if not isinstance(national_id, str) or not _NATIONAL_ID.match(national_id):
            raise Refused(Reason.BAD_REQUEST, "national_id: 8 + RPPS (12) or 0 + ADELI (10)")
        with self.storage.transaction():
            self.storage.block(session.ins, national_id, self.clock())
            self.trace(ctx, Outcome.OK)
        return self.patient_dmp(ctx, session, req)

    def patient_unblock(self, ctx: _Ctx, session: PatientSession, req: Request) -> Response:
        """Lift a block (D18)."""
        self._record(session, writable=True)
        with self.storage.transaction():
            if not self.storage.unblock(session.ins, req.params["national_id"]):
                raise Refused(Reason.NOT_FOUND, "this professional is not blocked")
            self.trace(ctx, Outcome.OK)
        return self.patient_dmp(ctx, session, req)

    def patient_traces(self, ctx: _Ctx, session: PatientSession, req: Request) -> Response:
        """Every access and refusal on the patient's record, newest first (D19)."""
        self._record(session)
        return self._traces_logged(ctx, req)

    def patient_close(self, ctx: _Ctx, session: PatientSession, req: Request) -> Response:
        """Close the record (kept, read-only for the patient, closed to professionals)."""
        self._record(session, writable=True)
        if req.json().get("confirm") is not True:
            raise Refused(Reason.BAD_REQUEST, 'send {"confirm": true} to close the record')
        with self.storage.transaction():
            self.storage.close_dmp(session.ins, self.clock())
            self.trace(ctx, Outcome.OK)
        return self.patient_dmp(ctx, session, req)

    # -- admin and test ---------------------------------------------------------------------
    def _admin(self, req: Request) -> None:
        token = req.bearer() or ""
        if not hmac.compare_digest(token.encode(), self.admin_token.encode()):
            raise Refused(Reason.ADMIN_REQUIRED, "the admin token is required")

    def enroll(self, req: Request) -> Response:
        """Enroll a terminal's device key (ECDSA P-256 PEM) that signs consent records."""
        self._admin(req)
        body = req.json()
        device, pem = body.get("device"), body.get("public_key")
        if not isinstance(device, str) or not re.match(r"^[A-Za-z0-9._:-]{1,64}$", device):
            raise Refused(Reason.BAD_REQUEST, "device: 1-64 of A-Z a-z 0-9 . _ : -")
        try:
            load_device_key(str(pem))
        except ValueError as exc:
            raise Refused(Reason.BAD_REQUEST, f"public_key: {exc}") from None
        self.storage.enroll_device(device, str(pem), self.clock())
        self.storage.add_trace(Trace(self.clock(), None, "admin", "admin", Action.ENROLL_DEVICE,
                                     Outcome.OK, document_id=device))
        return json_response(201, {"device": device, "enrolled": True})

    def revoke(self, req: Request) -> Response:
        """Revoke a device key: its consent records are refused from now on."""
        self._admin(req)
        if not self.storage.revoke_device(req.params["device"], self.clock()):
            raise Refused(Reason.NOT_FOUND, "no such device")
        return json_response(200, {"device": req.params["device"], "revoked": True})

    def test_last_code(self, req: Request) -> Response:
        """TEST MODE ONLY: the last one-time code sent to a patient through the outbox."""
        sender = self.code_sender
        ins = _ins(req.arg("ins") or "")
        code = sender.last_code(ins) if isinstance(sender, OutboxCodeSender) else None
        if code is None:
            raise Refused(Reason.NOT_FOUND, "no code sent to this patient")
        return json_response(200, {"code": code})

