"""The patient's side of the reference DMP host (D8, D13-D21): what a patient may do with
their own record, as plain methods over the host's storage, rules and sessions.

Both doors use it: the JSON API (`api/patient.py` parses the request, calls one method and
renders its answer as JSON) and the web pages (`pages/`, which render it as HTML). The
patient's session is checked, the rules applied, refusals raised (`codes.Refused`) and every
operation traced here, once, whichever door it came through.
"""

from __future__ import annotations

from collections.abc import Mapping

from bifente.simulators.dmp.directory import DirectoryEntry
from bifente.simulators.dmp.patient.documents import DocumentOps
from bifente.simulators.dmp.patient.record import DOCTOR, RecordOps
from bifente.simulators.dmp.patient.signin import SignIn
from bifente.simulators.dmp.patient.upload import MAX_PATIENT_UPLOAD
from bifente.simulators.dmp.patient.views import (
    Fields,
    LoginStarted,
    Named,
    PatientDocument,
    PatientDocuments,
    PatientRecord,
    PatientToken,
    Pending,
)
from bifente.simulators.dmp.rules import DocumentType

__all__ = ["MAX_PATIENT_UPLOAD", "Fields", "LoginStarted", "Named", "PatientDocument",
           "PatientDocuments", "PatientRecord", "PatientSpace", "PatientToken", "Pending"]


class PatientSpace(SignIn, DocumentOps, RecordOps):
    """Everything a patient does with their record; each method takes the session's token."""

    def document_types(self) -> Mapping[str, DocumentType]:
        """The DMP document types, by LOINC code (for a document the patient adds)."""
        return self.policy.types

    def doctors(self) -> list[DirectoryEntry]:
        """The directory's doctors, by name (the patient may choose one, D16)."""
        return sorted((p for p in self.directory.professionals.values()
                       if p.profession == DOCTOR), key=lambda p: p.name)
