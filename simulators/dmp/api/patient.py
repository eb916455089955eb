"""The patients' API: login with password and one-time code, then their own record."""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import uuid

from apdu.identity import parse_nir
from simulators.dmp import cda
from simulators.dmp.api.base import (
    _NATIONAL_ID,
    CDA_TYPES,
    LOGIN_LOCK_AFTER,
    LOGIN_LOCK_FOR,
    MAX_PATIENT_UPLOAD,
    ServiceBase,
    _bool,
    _Ctx,
    _iso,
)
from simulators.dmp.auth import (
    PatientSession,
    verify_password,
)
from simulators.dmp.codes import AccessMode, Action, CdaProblem, DocStatus, Outcome, Reason, Refused
from simulators.dmp.rules import (
    PatientVisibility,
    patient_visibility,
)
from simulators.dmp.server import Request, Response, json_response
from simulators.dmp.storage import DmpRecord, Document, Trace


class PatientApi(ServiceBase):
    """What patients do with their own record (documents, visibility, blocks, traces)."""

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
