"""What the patient's operations share: the host's parts, the patient's session checked from
its token, the traced scope of an operation, and the record and documents it may touch."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from bifente.simulators.dmp.auth import CodeSender, PatientLogins, PatientSession, Sessions
from bifente.simulators.dmp.codes import AccessMode, Action, DocStatus, Outcome, Reason, Refused
from bifente.simulators.dmp.directory import Directory
from bifente.simulators.dmp.patient.views import Named, PatientRecord
from bifente.simulators.dmp.rules import PatientVisibility, Policy, patient_visibility
from bifente.simulators.dmp.storage import DmpRecord, Document, Storage
from bifente.simulators.dmp.tracing import MAX_TRACES, PATIENT_ACTOR, TraceContext, Tracer

__all__ = ["PatientBase"]

MAX_EMERGENCIES = 50


class PatientBase:
    """The host's parts the patient's operations work with."""

    def __init__(self, storage: Storage, policy: Policy, directory: Directory, *,
                 clock: Callable[[], float], tracer: Tracer, sessions: Sessions,
                 logins: PatientLogins, code_sender: CodeSender) -> None:
        self.storage = storage
        self.policy = policy
        self.directory = directory
        self.clock = clock
        self.tracer = tracer
        self.sessions = sessions
        self.logins = logins
        self.code_sender = code_sender

    def _session(self, token: str | None) -> PatientSession:
        """The live patient session of this token (Refused unauthenticated otherwise)."""
        session = self.sessions.get(token or "", self.clock())
        if not isinstance(session, PatientSession):
            raise Refused(Reason.UNAUTHENTICATED, "log in with POST /api/patient/login")
        return session

    @contextmanager
    def _acting(self, token: str | None, action: Action,
                document_id: str = "") -> Iterator[tuple[TraceContext, PatientSession]]:
        """The patient's session, then a scope whose refusals are traced on the record (a
        request without a session has no record to be traced on)."""
        session = self._session(token)
        ctx = TraceContext(PATIENT_ACTOR, ins=session.ins, action=action,
                           document_id=document_id)
        with self.tracer.refusals(ctx):
            yield ctx, session

    def _record(self, session: PatientSession, *, writable: bool = False) -> DmpRecord:
        record = self.storage.get_dmp(session.ins)
        if record is None:
            raise Refused(Reason.DMP_NOT_FOUND)
        if writable and record.status != "open":
            raise Refused(Reason.DMP_CLOSED, "the record is closed: read only")
        return record

    @staticmethod
    def _visibility(doc: Document, now: float) -> tuple[PatientVisibility, float | None]:
        return patient_visibility(doc.view(), now)

    def _visible_document(self, session: PatientSession, doc_id: str) -> Document:
        """A document the patient sees; a hidden one is answered as unknown (D8)."""
        doc = self.storage.get_document(session.ins, doc_id)
        if doc is None or doc.status == DocStatus.DELETED:
            raise Refused(Reason.UNKNOWN_DOCUMENT)
        if self._visibility(doc, self.clock())[0] is not PatientVisibility.VISIBLE:
            raise Refused(Reason.HIDDEN_FROM_PATIENT, told=Reason.UNKNOWN_DOCUMENT)
        return doc

    def _named(self, national_id: str) -> Named:
        entry = self.directory.professionals.get(national_id)
        return Named(national_id, entry.name if entry else "")

    def _patient_record(self, session: PatientSession) -> PatientRecord:
        """The record as the patient reads it, with its last emergency accesses."""
        record = self._record(session)
        emergencies = [t for t in self.storage.traces(record.ins, limit=MAX_TRACES)
                       if t.mode != AccessMode.NORMAL and t.outcome == Outcome.OK
                       and t.action != Action.EMERGENCY][:MAX_EMERGENCIES]
        return PatientRecord(
            ins=record.ins, status=record.status, created_at=record.created_at,
            closed_at=record.closed_at, oppose_bris_de_glace=record.oppose_bris_de_glace,
            oppose_centre_15=record.oppose_centre_15,
            occupational_consent=record.occupational_consent,
            chosen_doctor=self._named(record.chosen_doctor) if record.chosen_doctor else None,
            blocked=tuple(self._named(nid) for nid in sorted(record.blocked)),
            emergency_accesses=tuple(emergencies))
