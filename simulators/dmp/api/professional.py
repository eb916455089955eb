"""The professionals' API: CPS authentication, consent records, and the DMP operations."""

from __future__ import annotations

import base64
import hashlib
import hmac
import sqlite3
import uuid
from dataclasses import replace

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from bifente.apdu.identity import InsAuthority, parse_nir
from bifente.simulators.dmp import cda
from bifente.simulators.dmp.api.base import (
    MAX_CDA,
    MAX_REASON,
    ServiceBase,
    _ins,
)
from bifente.simulators.dmp.auth import (
    CHALLENGE_TTL,
    Grant,
    PatientSession,
    ProfessionalSession,
    authenticate_professional,
    generate_password,
    hash_password,
)
from bifente.simulators.dmp.codes import (
    AccessMode,
    Action,
    CdaProblem,
    DocStatus,
    Outcome,
    Reason,
    Refused,
)
from bifente.simulators.dmp.consent import (
    CONSENT_HEADER,
    ConsentRecord,
    decode_header,
    load_device_key,
    verify_consent,
)
from bifente.simulators.dmp.rules import (
    DmpView,
    apply_visibility,
    check_dmp,
    check_emergency,
    check_occupational,
    check_visibility,
    document_refusal,
    gate,
)
from bifente.simulators.dmp.server import Request, Response, json_response
from bifente.simulators.dmp.storage import DmpRecord, Document, Trace
from bifente.simulators.dmp.tracing import TraceContext


class ProfessionalApi(ServiceBase):
    """Authentication with the CPS, consent checks, and every professional operation."""

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

    def _authorise(self, ctx: TraceContext, req: Request, session: ProfessionalSession,
                   dmp: DmpView, action: Action) -> ConsentRecord | None:
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

    def exists(self, ctx: TraceContext, session: ProfessionalSession, req: Request) -> Response:
        """Test of existence."""
        refusal = gate(session.professional, self.policy)
        if refusal:
            raise Refused(refusal)
        assert ctx.ins is not None
        record = self.storage.get_dmp(ctx.ins)
        self.trace(ctx, Outcome.OK)
        return json_response(200, {"exists": record is not None,
                                   "status": record.status if record else None})

    def create(self, ctx: TraceContext, session: ProfessionalSession, req: Request) -> Response:
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

    def feed(self, ctx: TraceContext, session: ProfessionalSession, req: Request) -> Response:
        """Register a CDA document (D7, D9): checked in full before anything is stored."""
        assert ctx.ins is not None
        prof = session.professional
        dmp = self._open_record(session, ctx.ins)
        flags = self._flags(req)
        content_type = (req.header("Content-Type") or "").split(";")[0].strip().lower()
        if content_type not in cda.CDA_TYPES:
            raise Refused(Reason.BAD_REQUEST, f"send the CDA as {cda.CDA_TYPES[0]}")
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

    def _readable(self, ctx: TraceContext, req: Request, session: ProfessionalSession) -> DmpRecord:
        assert ctx.ins is not None
        dmp = self._open_record(session, ctx.ins)
        record = self._authorise(ctx, req, session, dmp.view(), Action.READ)
        if record is not None:
            with self.storage.transaction():
                self._spend(record)
            self._keep_grant(session, record)
        return dmp

    def find(self, ctx: TraceContext, session: ProfessionalSession, req: Request) -> Response:
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

    def _document(self, ctx: TraceContext, session: ProfessionalSession,
                  dmp: DmpRecord) -> Document:
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

    def retrieve(self, ctx: TraceContext, session: ProfessionalSession, req: Request) -> Response:
        """One document: JSON with the CDA in base64, or the CDA itself (Accept: XML)."""
        dmp = self._readable(ctx, req, session)
        doc = self._document(ctx, session, dmp)
        content = self.storage.content(doc.id)
        self.trace(ctx, Outcome.OK)
        accept = req.header("Accept") or ""
        if any(t in accept for t in cda.CDA_TYPES):
            return Response(200, content, "application/hl7-v3+xml",
                            {"X-DMP-Document-Id": doc.id, "X-DMP-SHA256": doc.sha256})
        return json_response(200, {"document": self._doc_json(doc),
                                   "cda": base64.b64encode(content).decode()})

    def _authored(self, ctx: TraceContext,
                  session: ProfessionalSession) -> tuple[DmpRecord, Document]:
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

    def visibility(self, ctx: TraceContext, session: ProfessionalSession, req: Request) -> Response:
        """The author changes a document's visibility (D8, D16)."""
        _dmp, doc = self._authored(ctx, session)
        return self._set_visibility(ctx, doc, req.json(), by_patient=False)

    def delete(self, ctx: TraceContext, session: ProfessionalSession, req: Request) -> Response:
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

    def emergency(self, ctx: TraceContext, session: ProfessionalSession, req: Request) -> Response:
        """Emergency access for this session (D13, D14): a reason, no opposition, traced."""
        assert ctx.ins is not None
        body = req.json()
        asked = body.get("mode")
        try:
            mode = AccessMode(asked if isinstance(asked, str) else "")
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

    def issue_patient_code(self, ctx: TraceContext, session: ProfessionalSession,
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

    def dmp_traces(self, req: Request) -> Response:
        """A record's traces: for its patient, or a professional allowed to read it."""
        session = self.sessions.get(req.bearer() or "", self.clock())
        ins = _ins(req.params["ins"])
        if isinstance(session, PatientSession):
            if not hmac.compare_digest(session.ins, ins):
                raise Refused(Reason.NOT_PERMITTED, "a patient reads their own traces")
            traces = self.patients.traces(session.token, limit=req.arg("limit"),
                                          before=req.arg("before"))
            return json_response(200, {"traces": [self._trace_json(t) for t in traces]})
        if isinstance(session, ProfessionalSession):
            pro_ctx = TraceContext(self._actor(session.professional), ins=ins, action=Action.TRACES)

            def run() -> Response:
                self._readable(pro_ctx, req, session)
                return self._traces_logged(pro_ctx, req)
            return self._traced(pro_ctx, run)
        raise Refused(Reason.UNAUTHENTICATED)
