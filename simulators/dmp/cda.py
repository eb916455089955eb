"""HL7 CDA R2 documents: a safe parser, the host's conformance check (D7), and a builder.

The parser is expat with every DTD and entity declaration refused, so entity bombs and
external entities (XXE) never expand; the check lists every problem found, each with a code.
"""

from __future__ import annotations

import binascii
import datetime as dt
import re
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import NoReturn
from xml.parsers import expat
from xml.sax.saxutils import escape, quoteattr

from bifente.apdu.identity import InsAuthority, parse_nir
from bifente.simulators.dmp.codes import CdaProblem

__all__ = [
    "CDA_NS",
    "CDA_TYPES",
    "LOINC",
    "CdaInfo",
    "CdaResult",
    "XmlRefused",
    "build_document",
    "check_cda",
    "parse_xml",
]

CDA_NS = "urn:hl7-org:v3"
N = "{" + CDA_NS + "}"
LOINC = "2.16.840.1.113883.6.1"
CONFIDENTIALITY_SYSTEM = "2.16.840.1.113883.5.25"  # HL7 Confidentiality: N, R, V
CONFIDENTIALITY_CODES = frozenset({"N", "R", "V"})
TYPE_ID = ("2.16.840.1.113883.1.3", "POCD_HD000040")  # CDA R2 (HL7 CDA R2 §4.2.1.2)
BODY_MEDIA_TYPES = frozenset({"application/pdf", "text/plain"})
CDA_TYPES = ("application/hl7-v3+xml", "application/xml", "text/xml")  # a CDA as sent
INS_OIDS = frozenset(a.value for a in InsAuthority)
# HL7 TS: YYYYMMDD[HHMM[SS[.S+]]][+/-ZZZZ]
_TS = re.compile(r"^(\d{8})(\d{4}(\d{2}(\.\d{1,4})?)?)?([+-]\d{4})?$")


class XmlRefused(ValueError):
    """The bytes are not acceptable XML (malformed, or a DTD / entity declaration)."""

    def __init__(self, problem: CdaProblem, message: str) -> None:
        super().__init__(message)
        self.problem = problem


def _name(raw: str) -> str:
    # expat gives "uri}local"; ElementTree wants "{uri}local"
    return "{" + raw if "}" in raw else raw


def _refuse_dtd(*_args: object) -> NoReturn:
    raise XmlRefused(CdaProblem.DTD_FORBIDDEN, "DTDs and entity declarations are not accepted")


def parse_xml(data: bytes) -> ET.Element:
    """Parse XML with no DTD, no entity declaration, no external entity (XmlRefused)."""
    builder = ET.TreeBuilder()
    parser = expat.ParserCreate(namespace_separator="}")
    parser.buffer_text = True
    parser.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)
    parser.StartDoctypeDeclHandler = _refuse_dtd
    parser.EntityDeclHandler = _refuse_dtd
    parser.UnparsedEntityDeclHandler = _refuse_dtd
    parser.ExternalEntityRefHandler = _refuse_dtd
    parser.StartElementHandler = lambda tag, attrs: builder.start(
        _name(tag), {_name(k): v for k, v in attrs.items()})
    parser.EndElementHandler = lambda tag: builder.end(_name(tag))
    parser.CharacterDataHandler = builder.data
    try:
        parser.Parse(data, True)
    except expat.ExpatError as exc:
        raise XmlRefused(CdaProblem.XML_MALFORMED,
                         f"not well-formed XML: {expat.errors.messages[exc.code]} "
                         f"(line {exc.lineno}, column {exc.offset})") from None
    except XmlRefused:
        raise
    except (LookupError, ValueError) as exc:
        # expat raises these for an XML declaration naming an unknown (LookupError) or
        # unsupported multi-byte (ValueError, e.g. UTF-7) encoding: still malformed input (D7).
        raise XmlRefused(CdaProblem.XML_MALFORMED, f"not well-formed XML: {exc}") from None
    return builder.close()


@dataclass(frozen=True)
class CdaInfo:
    """What the host registers from a conforming CDA header."""

    cda_id: str
    type_code: str
    title: str
    effective_time: str
    confidentiality: str
    ins: str = field(repr=False)
    ins_oid: str
    author_id: str
    media_type: str  # "text/xml" for a structured body, else the nonXMLBody's media type


@dataclass(frozen=True)
class CdaResult:
    """The outcome of the check: the header (when readable) and every problem found."""

    info: CdaInfo | None
    problems: tuple[tuple[CdaProblem, str], ...]

    @property
    def ok(self) -> bool:
        """True when the document conforms."""
        return not self.problems and self.info is not None


def _text(el: ET.Element | None) -> str:
    return "".join(el.itertext()).strip() if el is not None else ""


def _check_body(root: ET.Element, problems: list[tuple[CdaProblem, str]]) -> str:
    component = root.find(N + "component")
    structured = component.find(N + "structuredBody") if component is not None else None
    non_xml = component.find(N + "nonXMLBody") if component is not None else None
    if structured is not None:
        return "text/xml"
    if non_xml is None:
        problems.append((CdaProblem.BODY_MISSING,
                         "component/structuredBody or component/nonXMLBody is required"))
        return ""
    text = non_xml.find(N + "text")
    media = text.get("mediaType", "") if text is not None else ""
    if text is None or media not in BODY_MEDIA_TYPES:
        problems.append((CdaProblem.BODY_INVALID, "nonXMLBody/text needs a mediaType among "
                         f"{', '.join(sorted(BODY_MEDIA_TYPES))}"))
        return media
    content = text.text or ""
    if text.get("representation") == "B64":
        try:
            raw = binascii.a2b_base64("".join(content.split()).encode("ascii"), strict_mode=True)
        except (binascii.Error, UnicodeEncodeError, ValueError):
            problems.append((CdaProblem.BODY_INVALID, "nonXMLBody/text is not valid base64"))
            return media
    elif media == "text/plain":
        raw = content.encode("utf-8")
    else:
        problems.append((CdaProblem.BODY_INVALID, f"{media} must be base64 (representation B64)"))
        return media
    if media == "application/pdf" and not raw.startswith(b"%PDF-"):
        problems.append((CdaProblem.BODY_INVALID, "the PDF body does not start with %PDF-"))
    elif not raw:
        problems.append((CdaProblem.BODY_INVALID, "the body is empty"))
    return media


def _check_time(value: str) -> bool:
    m = _TS.match(value)
    if m is None:
        return False
    try:
        dt.datetime.strptime(m.group(1), "%Y%m%d")
    except ValueError:
        return False
    return True


def check_cda(data: bytes, expected_ins: str, type_codes: Collection[str]) -> CdaResult:
    """Check a CDA R2 document for the DMP (D7); every problem found is listed."""
    try:
        root = parse_xml(data)
    except XmlRefused as exc:
        return CdaResult(None, ((exc.problem, str(exc)),))
    if root.tag != N + "ClinicalDocument":
        return CdaResult(None, ((CdaProblem.NOT_CLINICAL_DOCUMENT,
                                 f"the root element must be ClinicalDocument in {CDA_NS}"),))
    problems: list[tuple[CdaProblem, str]] = []
    type_id = root.find(N + "typeId")
    if type_id is None or (type_id.get("root"), type_id.get("extension")) != TYPE_ID:
        problems.append((CdaProblem.TYPE_ID_MISSING,
                         f"typeId root={TYPE_ID[0]} extension={TYPE_ID[1]} is required"))
    doc_id = root.find(N + "id")
    cda_id = ""
    if doc_id is None or not doc_id.get("root"):
        problems.append((CdaProblem.ID_MISSING, "id with a root is required"))
    else:
        cda_id = doc_id.get("root", "") + (f"^{doc_id.get('extension')}"
                                           if doc_id.get("extension") else "")
    code = root.find(N + "code")
    type_code = code.get("code", "") if code is not None else ""
    if not type_code:
        problems.append((CdaProblem.CODE_MISSING, "code (the LOINC document type) is required"))
    elif code is not None and code.get("codeSystem") != LOINC:
        problems.append((CdaProblem.CODE_SYSTEM_NOT_LOINC,
                         f"code/@codeSystem must be LOINC ({LOINC})"))
    elif type_code not in type_codes:
        problems.append((CdaProblem.CODE_NOT_ALLOWED,
                         f"document type {type_code} is not accepted in the DMP"))
    title = _text(root.find(N + "title"))
    if not title:
        problems.append((CdaProblem.TITLE_MISSING, "title is required"))
    effective = root.find(N + "effectiveTime")
    effective_time = effective.get("value", "") if effective is not None else ""
    if not _check_time(effective_time):
        problems.append((CdaProblem.EFFECTIVE_TIME_INVALID,
                         "effectiveTime/@value must be an HL7 TS (YYYYMMDD[HHMM[SS]][+ZZZZ])"))
    conf = root.find(N + "confidentialityCode")
    confidentiality = conf.get("code", "") if conf is not None else ""
    if (confidentiality not in CONFIDENTIALITY_CODES or conf is None
            or conf.get("codeSystem") != CONFIDENTIALITY_SYSTEM):
        problems.append((CdaProblem.CONFIDENTIALITY_INVALID,
                         f"confidentialityCode must be N, R or V ({CONFIDENTIALITY_SYSTEM})"))
    ins, ins_oid = _check_patient(root, expected_ins, problems)
    author_id = ""
    author = root.find(N + "author")
    author_ref = author.find(f"{N}assignedAuthor/{N}id") if author is not None else None
    if author is None or author.find(N + "time") is None or author_ref is None or not (
            author_ref.get("extension") or author_ref.get("root")):
        problems.append((CdaProblem.AUTHOR_MISSING,
                         "author with time and assignedAuthor/id is required"))
    else:
        author_id = author_ref.get("extension") or author_ref.get("root") or ""
    if root.find(f"{N}custodian/{N}assignedCustodian/{N}representedCustodianOrganization"
                 f"/{N}id") is None:
        problems.append((CdaProblem.CUSTODIAN_MISSING, "custodian/assignedCustodian/"
                         "representedCustodianOrganization/id is required"))
    media_type = _check_body(root, problems)
    info = CdaInfo(cda_id, type_code, title, effective_time, confidentiality, ins, ins_oid,
                   author_id, media_type)
    return CdaResult(info, tuple(problems))


def _check_patient(root: ET.Element, expected_ins: str,
                   problems: list[tuple[CdaProblem, str]]) -> tuple[str, str]:
    role = root.find(f"{N}recordTarget/{N}patientRole")
    if role is None:
        problems.append((CdaProblem.RECORD_TARGET_MISSING,
                         "recordTarget/patientRole is required"))
        return "", ""
    ids = [i for i in role.findall(N + "id") if i.get("root") in INS_OIDS]
    if not ids:
        problems.append((CdaProblem.INS_OID_INVALID, "recordTarget/patientRole/id needs the INS "
                         f"with an INS OID as root ({', '.join(sorted(INS_OIDS))})"))
        return "", ""
    oid, value = ids[0].get("root", ""), ids[0].get("extension", "")
    try:
        nir = parse_nir(value)
    except ValueError as exc:
        problems.append((CdaProblem.INS_INVALID, f"the patient's INS is not valid: {exc}"))
        return "", oid
    if nir.temporary != (oid == InsAuthority.NIA):
        problems.append((CdaProblem.INS_OID_INVALID,
                         "a temporary number (NIA) goes with the NIA OID, a NIR with a NIR OID"))
    if nir.value != expected_ins:
        problems.append((CdaProblem.INS_MISMATCH,
                         "the INS in the document is not the INS of this DMP"))
    return nir.value, oid


def _ts(when: dt.datetime) -> str:
    return when.astimezone(dt.UTC).strftime("%Y%m%d%H%M%S+0000")


def build_document(ins: str, ins_oid: str, type_code: str, title: str, *, author_id: str,
                   author_name: str = "", type_name: str = "", pdf: bytes | None = None,
                   text: str | None = None, media_type: str | None = None,
                   when: dt.datetime | None = None, document_id: str | None = None,
                   custodian_id: str = "499700001001001", confidentiality: str = "N") -> bytes:
    """A conforming CDA R2: structured text body, or a nonXMLBody with a PDF (or text)."""
    when = when or dt.datetime.now(dt.UTC)
    doc_root = document_id or str(uuid.uuid4())
    if pdf is not None or media_type is not None:
        payload = pdf if pdf is not None else (text or "").encode("utf-8")
        b64 = binascii.b2a_base64(payload, newline=False).decode("ascii")
        media = media_type or "application/pdf"
        body = (f'<nonXMLBody><text mediaType={quoteattr(media)} representation="B64">'
                f"{b64}</text></nonXMLBody>")
    else:
        body = ("<structuredBody><component><section><title>" + escape(title) + "</title><text>"
                + escape(text or title) + "</text></section></component></structuredBody>")
    given, _, family = author_name.partition(" ")
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f'<ClinicalDocument xmlns="{CDA_NS}">'
        f'<realmCode code="FR"/><typeId root="{TYPE_ID[0]}" extension="{TYPE_ID[1]}"/>'
        f'<id root={quoteattr(doc_root)}/>'
        f'<code code={quoteattr(type_code)} codeSystem="{LOINC}" '
        f'displayName={quoteattr(type_name or title)}/>'
        f"<title>{escape(title)}</title><effectiveTime value=\"{_ts(when)}\"/>"
        f'<confidentialityCode code={quoteattr(confidentiality)} '
        f'codeSystem="{CONFIDENTIALITY_SYSTEM}"/><languageCode code="fr-FR"/>'
        f'<recordTarget><patientRole><id root={quoteattr(ins_oid)} extension={quoteattr(ins)}/>'
        "</patientRole></recordTarget>"
        f'<author><time value="{_ts(when)}"/><assignedAuthor>'
        f'<id root="1.2.250.1.71.4.2.1" extension={quoteattr(author_id)}/>'
        f"<assignedPerson><name><given>{escape(given)}</given><family>{escape(family)}</family>"
        "</name></assignedPerson></assignedAuthor></author>"
        "<custodian><assignedCustodian><representedCustodianOrganization>"
        f'<id root="1.2.250.1.71.4.2.2" extension={quoteattr(custodian_id)}/>'
        "</representedCustodianOrganization></assignedCustodian></custodian>"
        f"<component>{body}</component></ClinicalDocument>\n"
    ).encode()
