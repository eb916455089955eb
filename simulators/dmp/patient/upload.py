"""A document the patient adds (D17): a PDF or a text the host wraps in a CDA authored by the
patient, or a ready-made CDA; either is then checked like a professional's feed (D7)."""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import uuid

from bifente.simulators.dmp import cda
from bifente.simulators.dmp.codes import CdaProblem, Reason, Refused
from bifente.simulators.dmp.patient.views import Fields
from bifente.simulators.dmp.rules import Policy
from bifente.simulators.dmp.storage import DmpRecord, Document

__all__ = ["MAX_PATIENT_UPLOAD", "patient_document"]

# The largest upload, its content in base64 as the JSON API takes it (docs/dmp-api.md); the
# pages take files whose base64 fits it, so both doors take the same files.
MAX_PATIENT_UPLOAD = 16 * 1024 * 1024


def _content(value: object) -> bytes:
    """The file: bytes from a page, base64 text in the JSON API."""
    if isinstance(value, bytes):
        return value
    try:
        return base64.b64decode(str(value), validate=True)
    except binascii.Error:
        raise Refused(Reason.BAD_REQUEST, "content must be base64") from None


def _cda(record: DmpRecord, fields: Fields, policy: Policy, now: float) -> bytes:
    """The CDA to register: the one sent, or one built around the PDF or text."""
    title, type_code = fields.get("title"), fields.get("type_code")
    media_type = fields.get("media_type", "application/pdf")
    is_cda = media_type in cda.CDA_TYPES  # a ready-made CDA: checked as a feed is (D7)
    if not is_cda:
        if not isinstance(title, str) or not title.strip() or len(title) > 200:
            raise Refused(Reason.BAD_REQUEST, "title: 1 to 200 characters")
        if type_code not in policy.types:
            raise Refused(Reason.BAD_REQUEST, "type_code must be a DMP document type")
        if media_type not in cda.BODY_MEDIA_TYPES:
            raise Refused(Reason.BAD_REQUEST, "media_type is application/pdf, text/plain "
                          "or a CDA (application/hl7-v3+xml)")
    content = _content(fields.get("content", ""))
    if not content:
        raise Refused(Reason.BAD_REQUEST, "content is empty")
    if is_cda:
        return content
    return cda.build_document(
        record.ins, record.ins_oid, str(type_code), str(title).strip(),
        author_id=record.ins, author_name="",
        pdf=content if media_type == "application/pdf" else None,
        text=content.decode("utf-8", "replace") if media_type == "text/plain" else None,
        media_type=str(media_type), when=dt.datetime.fromtimestamp(now, dt.UTC))


def patient_document(record: DmpRecord, fields: Fields, policy: Policy,
                     now: float) -> tuple[Document, bytes]:
    """The registry entry and CDA of a document the patient adds (Refused if not conforming)."""
    data = _cda(record, fields, policy, now)
    result = cda.check_cda(data, record.ins, policy.types)
    if not result.ok or result.info is None:
        problems = {p for p, _ in result.problems}
        raise Refused(Reason.INS_MISMATCH if problems == {CdaProblem.INS_MISMATCH}
                      else Reason.CDA_INVALID, "the document does not conform", details=[
                          {"reason": p.value, "message": m} for p, m in result.problems])
    info = result.info
    doc = Document(id=str(uuid.uuid4()), ins=record.ins, cda_id=info.cda_id,
                   type_code=info.type_code, title=info.title[:500],
                   effective_time=info.effective_time, confidentiality=info.confidentiality,
                   media_type=info.media_type, author_kind="patient", author_id="patient",
                   author_profession="", author_name="the patient", fed_by="patient",
                   submitted_at=now, size=len(data), sha256=hashlib.sha256(data).hexdigest())
    return doc, data
