"""The patients' API: each handler reads the request, calls one operation of the patient
domain (`dmp/patient.py`, where sessions, rules and traces are) and answers in JSON."""

from __future__ import annotations

import base64

from bifente.simulators.dmp.api.base import MAX_PATIENT_UPLOAD, RequestFields, ServiceBase, _iso
from bifente.simulators.dmp.patient import PatientDocuments, PatientRecord
from bifente.simulators.dmp.server import Request, Response, json_response
from bifente.simulators.dmp.storage import Document

__all__ = ["PatientApi"]

PENDING_MESSAGE = ("a document is waiting for you: ask your doctor for an appointment, or it "
                   "becomes visible on the date shown")


class PatientApi(ServiceBase):
    """`/api/patient/...`: what patients do with their own record, as JSON."""

    def patient_login(self, req: Request) -> Response:
        """First step (D21): INS + password; a one-time code is then sent to the patient."""
        body = req.json()
        started = self.patients.start_login(body.get("ins"), body.get("password"))
        return json_response(202, {"login": started.login,
                                   "code_sent_via": started.code_sent_via,
                                   "expires_in": started.expires_in})

    def patient_code(self, req: Request) -> Response:
        """Second step (D21): the one-time code; opens the patient's session."""
        body = req.json()
        opened = self.patients.finish_login(body.get("login"), body.get("code"))
        return json_response(200, {"token": opened.token, "expires_in": opened.expires_in})

    def logout(self, req: Request) -> Response:
        """End the patient's session."""
        self.patients.logout(req.bearer())
        return json_response(200, {"closed": True})

    def patient_dmp(self, req: Request) -> Response:
        """The patient's record: status, settings, blocked professionals, emergency accesses."""
        return self._record_json(self.patients.record(req.bearer()))

    def patient_settings(self, req: Request) -> Response:
        """Oppositions (D13), occupational express consent (D1), chosen doctor (D16)."""
        return self._record_json(self.patients.change_settings(req.bearer(),
                                                               RequestFields(req)))

    def patient_documents(self, req: Request) -> Response:
        """What the patient sees (D8): visible documents, and those waiting past 2 weeks."""
        return self._documents_json(self.patients.documents(req.bearer()))

    def patient_retrieve(self, req: Request) -> Response:
        """One of the patient's visible documents."""
        found = self.patients.document(req.bearer(), req.params["doc"])
        return json_response(200, {"document": self._doc_json(found.document),
                                   "cda": base64.b64encode(found.cda).decode()})

    def patient_add(self, req: Request) -> Response:
        """The patient adds a document (D17): PDF or text, wrapped in a CDA by the host."""
        doc = self.patients.add_document(req.bearer(), RequestFields(req, MAX_PATIENT_UPLOAD))
        return self._document_json(doc, status=201)

    def patient_visibility(self, req: Request) -> Response:
        """The patient masks or unmasks a document (D16)."""
        return self._document_json(self.patients.set_visibility(
            req.bearer(), req.params["doc"], RequestFields(req)))

    def patient_deletion(self, req: Request) -> Response:
        """Ask the author to delete (D20); the patient's own documents are deleted at once."""
        return self._document_json(self.patients.request_deletion(req.bearer(),
                                                                  req.params["doc"]))

    def patient_block(self, req: Request) -> Response:
        """Block a professional (D18)."""
        return self._record_json(self.patients.block(req.bearer(), RequestFields(req)))

    def patient_unblock(self, req: Request) -> Response:
        """Lift a block (D18)."""
        return self._record_json(self.patients.unblock(req.bearer(),
                                                       req.params["national_id"]))

    def patient_traces(self, req: Request) -> Response:
        """Every access and refusal on the patient's record, newest first (D19)."""
        traces = self.patients.traces(req.bearer(), limit=req.arg("limit"),
                                      before=req.arg("before"))
        return json_response(200, {"traces": [self._trace_json(t) for t in traces]})

    def patient_close(self, req: Request) -> Response:
        """Close the record (kept, read-only for the patient, closed to professionals)."""
        return self._record_json(self.patients.close(req.bearer(), RequestFields(req)))

    # -- JSON (docs/dmp-api.md) ------------------------------------------------------------------
    def _document_json(self, doc: Document, *, status: int = 200) -> Response:
        return json_response(status, {"document": self._doc_json(doc)})

    def _documents_json(self, found: PatientDocuments) -> Response:
        return json_response(200, {
            "documents": [self._doc_json(d) for d in found.documents],
            "pending": [{"id": p.id, "visible_from": _iso(p.visible_from),
                         "message": PENDING_MESSAGE} for p in found.pending]})

    def _record_json(self, record: PatientRecord) -> Response:
        chosen = record.chosen_doctor
        return json_response(200, {
            "ins": record.ins, "status": record.status, "created_at": _iso(record.created_at),
            "closed_at": _iso(record.closed_at),
            "settings": {"oppose_bris_de_glace": record.oppose_bris_de_glace,
                         "oppose_centre_15": record.oppose_centre_15,
                         "occupational_express_consent": record.occupational_consent,
                         "chosen_doctor": {"national_id": chosen.national_id,
                                           "name": chosen.name} if chosen else None},
            "blocked": [{"national_id": b.national_id, "name": b.name} for b in record.blocked],
            "emergency_accesses": [self._trace_json(t) for t in record.emergency_accesses]})
