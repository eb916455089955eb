"""The patient's documents: what they see (D8), one document, adding one (D17), masking it to
professionals (D16) and asking for its deletion (D20). Each operation is traced once."""

from __future__ import annotations

from bifente.simulators.dmp.codes import Action, DocStatus, Outcome, Reason, Refused
from bifente.simulators.dmp.patient.base import PatientBase
from bifente.simulators.dmp.patient.upload import patient_document
from bifente.simulators.dmp.patient.views import Fields, PatientDocument, PatientDocuments, Pending
from bifente.simulators.dmp.rules import PatientVisibility
from bifente.simulators.dmp.storage import Document
from bifente.simulators.dmp.visibility import change_visibility

__all__ = ["DocumentOps"]


class DocumentOps(PatientBase):
    """The patient's operations on the documents of their record."""

    def documents(self, token: str | None) -> PatientDocuments:
        """The visible documents, and those waiting past two weeks (without their title)."""
        with self._acting(token, Action.FIND) as (ctx, session):
            record = self._record(session)
            now = self.clock()
            visible, pending = [], []
            for doc in self.storage.find_documents(record.ins):
                state, visible_from = self._visibility(doc, now)
                if state is PatientVisibility.VISIBLE:
                    visible.append(doc)
                elif state is PatientVisibility.PROMPT:
                    pending.append(Pending(doc.id, visible_from))
            self.tracer.trace(ctx, Outcome.OK)
            return PatientDocuments(tuple(visible), tuple(pending))

    def document(self, token: str | None, doc_id: str) -> PatientDocument:
        """One of the patient's visible documents, with its CDA."""
        with self._acting(token, Action.RETRIEVE, doc_id) as (ctx, session):
            self._record(session)
            doc = self._visible_document(session, doc_id)
            content = self.storage.content(doc.id)
            self.tracer.trace(ctx, Outcome.OK)
            return PatientDocument(doc, content)

    def add_document(self, token: str | None, fields: Fields) -> Document:
        """Add a document (D17): title, type_code, media_type and content (see upload.py)."""
        with self._acting(token, Action.FEED) as (ctx, session):
            record = self._record(session, writable=True)
            doc, data = patient_document(record, fields, self.policy, self.clock())
            if self.storage.document_by_cda_id(record.ins, doc.cda_id) is not None:
                raise Refused(Reason.DOCUMENT_EXISTS, "another document has this CDA id")
            ctx.document_id = doc.id
            with self.storage.transaction():
                self.storage.insert_document(doc, data)
                self.tracer.trace(ctx, Outcome.OK)
            return doc

    def set_visibility(self, token: str | None, doc_id: str, changes: Fields) -> Document:
        """Mask or unmask a document (D16): masked_ps, invisible_representatives."""
        with self._acting(token, Action.VISIBILITY, doc_id) as (ctx, session):
            self._record(session, writable=True)
            doc = self._visible_document(session, doc_id)
            return change_visibility(self.tracer, ctx, doc, changes, by_patient=True,
                                     policy=self.policy)

    def request_deletion(self, token: str | None, doc_id: str) -> Document:
        """Ask the author to delete a document (D20); the patient's own go at once."""
        with self._acting(token, Action.DELETION_REQUEST, doc_id) as (ctx, session):
            self._record(session, writable=True)
            doc = self._visible_document(session, doc_id)
            now = self.clock()
            with self.storage.transaction():
                if doc.author_kind == "patient":
                    self.storage.delete_document(doc.id, now)
                elif doc.status == DocStatus.AVAILABLE:
                    self.storage.request_deletion(doc.id, now)
                self.tracer.trace(ctx, Outcome.OK)
            updated = self.storage.get_document(doc.ins, doc.id)
            assert updated is not None
            return updated
