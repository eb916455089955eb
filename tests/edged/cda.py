"""Valid (and deliberately broken) HL7 CDA R2 documents for the DMP flows (TEST ONLY).

Built to the host's rules (docs/dmp-api.md, "Feed"): typeId POCD_HD000040, an id with a root,
a LOINC type code of the access matrix, a title, an HL7 TS effectiveTime, a confidentiality
code N/R/V, the patient's INS under an INS authority OID, an author with a time and an id, a
custodian, and a body (structured, or nonXMLBody text/plain or application/pdf in base64).
"""

from __future__ import annotations

import base64
import datetime as dt
import uuid
from xml.sax.saxutils import escape, quoteattr

__all__ = ["BIOLOGY", "CARE_FOLLOW_UP", "DISCHARGE", "TEST_INS_OID", "cda"]

TEST_INS_OID = "1.2.250.1.213.1.4.10"  # test NIR authority (the simulated Vitale cards)
LOINC = "2.16.840.1.113883.6.1"
BIOLOGY = "11502-2"  # laboratory report: not for nurses (D11)
DISCHARGE = "11490-0"  # discharge letter
CARE_FOLLOW_UP = "11488-4"  # consultation note (the host's default "compte rendu")


def cda(ins: str, *, type_code: str = CARE_FOLLOW_UP, title: str = "Compte rendu",
        author_id: str = "810001000101", author_name: str = "Claire MARTIN",
        text: str | None = None, pdf: bytes | None = None, ins_oid: str = TEST_INS_OID,
        document_id: str | None = None, confidentiality: str = "N",
        drop: tuple[str, ...] = ()) -> bytes:
    """A conforming CDA R2 for this patient; `drop` leaves parts out (to test refusals):
    "typeId", "code", "title", "author", "custodian", "recordTarget"."""
    now = dt.datetime.now(dt.UTC).strftime("%Y%m%d%H%M%S+0000")
    if pdf is not None:
        body = ('<nonXMLBody><text mediaType="application/pdf" representation="B64">'
                + base64.b64encode(pdf).decode() + "</text></nonXMLBody>")
    else:
        body = ("<structuredBody><component><section><title>" + escape(title)
                + "</title><text>" + escape(text or title)
                + "</text></section></component></structuredBody>")
    given, _, family = author_name.partition(" ")
    parts = {
        "typeId": '<typeId root="2.16.840.1.113883.1.3" extension="POCD_HD000040"/>',
        "code": f'<code code={quoteattr(type_code)} codeSystem="{LOINC}"/>',
        "title": f"<title>{escape(title)}</title>",
        "recordTarget": (f"<recordTarget><patientRole><id root={quoteattr(ins_oid)} "
                         f"extension={quoteattr(ins)}/></patientRole></recordTarget>"),
        "author": (f'<author><time value="{now}"/><assignedAuthor>'
                   f'<id root="1.2.250.1.71.4.2.1" extension={quoteattr(author_id)}/>'
                   f"<assignedPerson><name><given>{escape(given)}</given>"
                   f"<family>{escape(family)}</family></name></assignedPerson>"
                   "</assignedAuthor></author>"),
        "custodian": ("<custodian><assignedCustodian><representedCustodianOrganization>"
                      '<id root="1.2.250.1.71.4.2.2" extension="499700001001001"/>'
                      "</representedCustodianOrganization></assignedCustodian></custodian>"),
    }
    p = {k: ("" if k in drop else v) for k, v in parts.items()}
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<ClinicalDocument xmlns="urn:hl7-org:v3"><realmCode code="FR"/>'
        f'{p["typeId"]}<id root={quoteattr(document_id or str(uuid.uuid4()))}/>'
        f'{p["code"]}{p["title"]}<effectiveTime value="{now}"/>'
        f'<confidentialityCode code={quoteattr(confidentiality)} '
        'codeSystem="2.16.840.1.113883.5.25"/><languageCode code="fr-FR"/>'
        f'{p["recordTarget"]}{p["author"]}{p["custodian"]}'
        f"<component>{body}</component></ClinicalDocument>\n"
    ).encode()
