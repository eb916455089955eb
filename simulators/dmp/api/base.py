"""What every part of the host's JSON API shares: tracing, the guard that authenticates a
professional before a handler runs, a request's JSON fields, and documents and traces as JSON."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator, Mapping

from bifente.apdu.identity import parse_nir
from bifente.simulators.dmp.auth import (
    Challenges,
    CodeSender,
    PatientLogins,
    ProfessionalSession,
    Sessions,
)
from bifente.simulators.dmp.codes import Action, Outcome, Reason, Refused
from bifente.simulators.dmp.directory import Directory
from bifente.simulators.dmp.patient import MAX_PATIENT_UPLOAD, PatientSpace
from bifente.simulators.dmp.rules import Policy, Professional
from bifente.simulators.dmp.server import MAX_JSON_BODY, Request, Response, json_response
from bifente.simulators.dmp.storage import Document, Storage, Trace
from bifente.simulators.dmp.tracing import TraceContext, Tracer, trace_window
from bifente.simulators.dmp.visibility import change_visibility

__all__ = ["MAX_CDA", "MAX_PATIENT_UPLOAD", "MAX_REASON", "RequestFields", "ServiceBase"]

MAX_CDA = 32 * 1024 * 1024
MAX_REASON = 500
_VISIBILITY_FLAGS = ("masked_ps", "invisible_patient", "invisible_representatives")


def _iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return dt.datetime.fromtimestamp(ts, dt.UTC).isoformat(timespec="seconds").replace(
        "+00:00", "Z")


def _ins(text: str) -> str:
    try:
        return parse_nir(text).value
    except ValueError as exc:
        raise Refused(Reason.INS_INVALID, f"the INS is not valid: {exc}") from None


class RequestFields(Mapping[str, object]):
    """A request's JSON body as an operation's fields, read when the operation first looks at
    them: after its checks, as the API always read bodies, so a refused request leaves its
    body unread and a malformed body is refused (and traced) by the operation like any other
    input."""

    def __init__(self, req: Request, limit: int = MAX_JSON_BODY) -> None:
        self._req = req
        self._limit = limit
        self._fields: dict[str, object] | None = None

    def _read(self) -> dict[str, object]:
        if self._fields is None:
            self._fields = self._req.json(self._limit)
        return self._fields

    def __getitem__(self, name: str) -> object:
        return self._read()[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._read())

    def __len__(self) -> int:
        return len(self._read())


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
    tracer: Tracer
    patients: PatientSpace

    def trace(self, ctx: TraceContext, outcome: Outcome, reason: str = "") -> None:
        """Append one trace for this request."""
        self.tracer.trace(ctx, outcome, reason)

    def _traced(self, ctx: TraceContext, run: Callable[[], Response]) -> Response:
        with self.tracer.refusals(ctx):
            return run()

    @staticmethod
    def _actor(prof: Professional) -> Trace:
        return Trace(0.0, None, "professional", prof.national_id, "", "", actor_name=prof.name,
                     profession=prof.profession, specialty=prof.specialty,
                     structure_id=prof.structure_id, structure_name=prof.structure_name,
                     auth_mode=prof.auth_mode)

    def _professional(self, action: Action,
                      handler: Callable[[TraceContext, ProfessionalSession, Request], Response]
                      ) -> Callable[[Request], Response]:
        def run(req: Request) -> Response:
            session = self.sessions.get(req.bearer() or "", self.clock())
            if not isinstance(session, ProfessionalSession):
                raise Refused(Reason.UNAUTHENTICATED, "authenticate with POST /api/auth/session")
            ctx = TraceContext(self._actor(session.professional), action=action,
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

    def _set_visibility(self, ctx: TraceContext, doc: Document, fields: Mapping[str, object],
                        *, by_patient: bool) -> Response:
        updated = change_visibility(self.tracer, ctx, doc, fields, by_patient=by_patient,
                                    policy=self.policy)
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
        limit, before = trace_window(req.arg("limit"), req.arg("before"))
        traces = self.storage.traces(ins, limit=limit, before=before)
        return json_response(200, {"traces": [self._trace_json(t) for t in traces]})

    def _traces_logged(self, ctx: TraceContext, req: Request) -> Response:
        assert ctx.ins is not None
        response = self._traces(ctx.ins, req)
        self.trace(ctx, Outcome.OK)
        return response
