"""What every part of the host's JSON API shares: the request context, tracing, and the
guards that authenticate a professional or a patient before a handler runs."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from apdu.identity import parse_nir
from simulators.dmp.auth import (
    Challenges,
    CodeSender,
    PatientLogins,
    PatientSession,
    ProfessionalSession,
    Sessions,
)
from simulators.dmp.codes import AccessMode, Action, Outcome, Reason, Refused
from simulators.dmp.directory import Directory
from simulators.dmp.rules import (
    Policy,
    Professional,
    apply_visibility,
    check_visibility_change,
)
from simulators.dmp.server import Request, Response, json_response
from simulators.dmp.storage import Document, Storage, Trace

MAX_CDA = 32 * 1024 * 1024
MAX_PATIENT_UPLOAD = 16 * 1024 * 1024
MAX_REASON = 500
LOGIN_LOCK_AFTER = 5
LOGIN_LOCK_FOR = 15 * 60
CDA_TYPES = ("application/hl7-v3+xml", "application/xml", "text/xml")
_NATIONAL_ID = re.compile(r"^(8\d{11}|0\d{9})$")  # 8 + RPPS, or 0 + ADELI (docs/cards.md)
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


class ServiceBase:
    """State and helpers shared by the professional, patient and admin parts of the API."""

    storage: Storage
    policy: Policy
    directory: Directory
    clock: Callable[[], float]
    admin_token: str
    code_sender: CodeSender
    test_mode: bool
    challenges: Challenges
    sessions: Sessions
    logins: PatientLogins

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

    def _traces_logged(self, ctx: _Ctx, req: Request) -> Response:
        assert ctx.ins is not None
        response = self._traces(ctx.ins, req)
        self.trace(ctx, Outcome.OK)
        return response
