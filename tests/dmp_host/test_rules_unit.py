"""The pure parts: rules, policy file, stand-in directory, consent format, CDA parser, storage."""

from __future__ import annotations

import datetime as dt
import sqlite3
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.verification import PolicyBuilder, Store

from bifente.simulators.dmp.cda import XmlRefused, build_document, check_cda, parse_xml
from bifente.simulators.dmp.codes import AccessMode, CdaProblem, Reason
from bifente.simulators.dmp.consent import canonical_json, verify_consent
from bifente.simulators.dmp.directory import DEFAULT_DIRECTORY, Directory
from bifente.simulators.dmp.generate import STRUCTURE_DIR, TEST_STRUCTURE, render_directory
from bifente.simulators.dmp.rules import (
    DmpView,
    DocView,
    PatientVisibility,
    Professional,
    add_one_month,
    check_emergency,
    check_visibility_change,
    document_refusal,
    gate,
    load_policy,
    patient_visibility,
)
from bifente.simulators.dmp.storage import Document, Storage
from bifente.simulators.dmp.testing import TEST_OID, ConsentSigner, test_nir
from bifente.simulators.pki import ca_certificate

POLICY = load_policy()
NOW = dt.datetime(2026, 1, 31, 12, tzinfo=dt.UTC).timestamp()


def prof(**kw: object) -> Professional:
    base = {"national_id": "810001000101", "name": "Test", "profession": "10",
            "specialty": "SM54", "card_type": 0, "sector": "31", "structure_id": "s",
            "structure_name": "S"}
    return Professional(**{**base, **kw})  # type: ignore[arg-type]


def doc(**kw: object) -> DocView:
    return DocView(**{"id": "d", "type_code": "11488-4", "author_id": "810009999999",
                      "fed_by": "810009999999", **kw})  # type: ignore[arg-type]


OPEN = DmpView("x", "open")


# -- policy file and gate ---------------------------------------------------------------------
def test_the_stand_in_matrix_loads_as_facts_says() -> None:
    assert POLICY.allowed["10"] == frozenset(POLICY.types)
    assert "11490-0" not in POLICY.allowed["40"] and "11488-4" in POLICY.allowed["50"]
    assert POLICY.allowed["21"] == {"57833-6", "29551-9", "29550-1", "60593-1", "87273-9",
                                    "60591-5", "11502-2"}
    assert POLICY.allowed["60"] == POLICY.allowed["98"] == {
        "11506-3", "52521-2", "18776-5", "47420-5", "11490-0", "87273-9", "60591-5"}
    assert "28" not in POLICY.allowed  # opticians: outside the matrix


def test_insurers_by_card_sector_or_structure_sector() -> None:
    assert gate(prof(sector="61"), POLICY) is Reason.INSURER_FORBIDDEN
    assert gate(prof(structure_sector="SA23"), POLICY) is Reason.INSURER_FORBIDDEN
    assert gate(prof(card_type=1), POLICY) is Reason.STUDENT_CARD_REFUSED
    assert gate(prof(card_type=2), POLICY) is Reason.CARD_TYPE_REFUSED
    assert gate(prof(), POLICY) is None


def test_document_rules() -> None:
    nurse = prof(profession="60", national_id="810001000102")
    assert document_refusal(nurse, doc(type_code="11502-2"), OPEN, POLICY) \
        is Reason.OUTSIDE_ACCESS_MATRIX
    assert document_refusal(nurse, doc(type_code="11502-2", fed_by=nurse.national_id), OPEN,
                            POLICY) is None
    masked = doc(masked_ps=True)
    assert document_refusal(prof(), masked, OPEN, POLICY) is Reason.MASKED_BY_PATIENT
    assert document_refusal(prof(), masked, OPEN, POLICY, AccessMode.BRIS_DE_GLACE) \
        is Reason.MASKED_BY_PATIENT  # STAND-IN: masked stays masked in emergencies
    chosen = DmpView("x", "open", chosen_doctor=prof().national_id)
    assert document_refusal(prof(), masked, chosen, POLICY) is None
    assert document_refusal(prof(), doc(status="deleted"), OPEN, POLICY) \
        is Reason.UNKNOWN_DOCUMENT


def test_emergency_rules() -> None:
    regulator = prof(specialty="SM59", samu=True)
    assert check_emergency(prof(), OPEN, AccessMode.BRIS_DE_GLACE, "", POLICY) \
        is Reason.REASON_REQUIRED
    assert check_emergency(prof(specialty="SM59"), OPEN, AccessMode.CENTRE_15, "r", POLICY) \
        is Reason.NOT_REGULATING_DOCTOR  # SM59 outside a SAMU
    assert check_emergency(regulator, OPEN, AccessMode.CENTRE_15, "r", POLICY) is None
    opposed = DmpView("x", "open", oppose_centre_15=True)
    assert check_emergency(regulator, opposed, AccessMode.CENTRE_15, "r", POLICY) \
        is Reason.EMERGENCY_OPPOSED
    assert check_emergency(prof(), opposed, AccessMode.BRIS_DE_GLACE, "r", POLICY) is None


# -- D8 timing ---------------------------------------------------------------------------------
def test_one_calendar_month_clamps_the_day() -> None:
    assert dt.datetime.fromtimestamp(add_one_month(NOW), dt.UTC).date() == dt.date(2026, 2, 28)
    dec = dt.datetime(2025, 12, 15, tzinfo=dt.UTC).timestamp()
    assert dt.datetime.fromtimestamp(add_one_month(dec), dt.UTC).date() == dt.date(2026, 1, 15)


def test_patient_visibility_states() -> None:
    hidden = doc(invisible_patient=True, hidden_since=NOW)
    day = 86400
    assert patient_visibility(hidden, NOW + 13 * day)[0] is PatientVisibility.HIDDEN
    assert patient_visibility(hidden, NOW + 14 * day)[0] is PatientVisibility.PROMPT
    state, when = patient_visibility(hidden, NOW + 27 * day)
    assert state is PatientVisibility.PROMPT and when == add_one_month(NOW)
    assert patient_visibility(hidden, NOW + 28 * day)[0] is PatientVisibility.VISIBLE
    assert patient_visibility(doc(invisible_patient=True, hidden_since=NOW, announced=True),
                              NOW)[0] is PatientVisibility.VISIBLE


def test_who_changes_visibility() -> None:
    assert check_visibility_change(doc(), {"invisible_patient": True}, by_patient=True,
                                   policy=POLICY, now=NOW) is Reason.NOT_PERMITTED
    assert check_visibility_change(doc(), {"masked_ps": True}, by_patient=True,
                                   policy=POLICY, now=NOW) is None
    hidden = doc(invisible_patient=True, hidden_since=NOW)
    assert check_visibility_change(hidden, {"masked_ps": True}, by_patient=False,
                                   policy=POLICY, now=NOW) is Reason.VISIBILITY_CONFLICT
    # a month later it is visible to the patient: masking is then allowed
    assert check_visibility_change(hidden, {"masked_ps": True}, by_patient=False,
                                   policy=POLICY, now=add_one_month(NOW)) is None


# -- stand-in directory and test structure -----------------------------------------------------
def test_the_stand_in_directory_is_in_sync_with_the_cps_profiles() -> None:
    assert DEFAULT_DIRECTORY.read_text(encoding="utf-8") == render_directory(), \
        "run `python -m bifente.simulators.dmp.generate`"
    directory = Directory.load()
    emergency = directory.professional("810001000105")
    assert emergency is not None and emergency.samu and emergency.specialty == "SM59"
    insurer = directory.professional("810001000106")
    assert insurer is not None and (insurer.sector, insurer.structure_sector) == ("61", "SA23")


def test_the_test_structure_certificate_chains_through_organisations() -> None:
    cert = x509.load_pem_x509_certificate((STRUCTURE_DIR / "structure.crt.pem").read_bytes())
    verifier = (PolicyBuilder().store(Store([ca_certificate("root")]))
                .time(dt.datetime.now(dt.UTC)).build_client_verifier())
    chain = verifier.verify(cert, [ca_certificate("organisations")]).chain
    assert chain[1] == ca_certificate("organisations")
    assert Directory.load().structures[TEST_STRUCTURE].indirect_auth


# -- consent format ----------------------------------------------------------------------------
def test_consent_canonical_form_vector() -> None:
    # The vector of docs/dmp-api.md: the terminal's signer must produce these exact bytes.
    record = {"v": 1, "ins": "285036912304579", "professional": "810001000101",
              "action": "read", "express": False, "issued": 1767225600,
              "expires": 1767226200, "nonce": "AAECAwQFBgcICQoLDA0ODw==",
              "device": "terminal-0001"}
    assert canonical_json(record) == (
        b'{"action":"read","device":"terminal-0001","expires":1767226200,"express":false,'
        b'"ins":"285036912304579","issued":1767225600,"nonce":"AAECAwQFBgcICQoLDA0ODw==",'
        b'"professional":"810001000101","v":1}')
    assert canonical_json({"a": "é"}) == '{"a":"é"}'.encode()


def test_a_signed_record_verifies() -> None:
    signer = ConsentSigner("t1")
    envelope = signer.sign(signer.record("285036912304579", "810001000101", "feed", now=NOW))
    record = verify_consent(envelope, device_key=lambda d: signer.key.public_key(),
                            ins="285036912304579", professional="810001000101",
                            action="feed", now=NOW + 5, max_lifetime=86400, skew=120)
    assert record.action == "feed" and not record.express


# -- CDA ---------------------------------------------------------------------------------------
def test_the_parser_refuses_dtds_before_expanding_anything() -> None:
    with pytest.raises(XmlRefused) as info:
        parse_xml(b'<!DOCTYPE a [<!ENTITY x "y">]><a>&x;</a>')
    assert info.value.problem is CdaProblem.DTD_FORBIDDEN
    with pytest.raises(XmlRefused) as info:
        parse_xml(b"<a>&undefined;</a>")
    assert info.value.problem is CdaProblem.XML_MALFORMED


@pytest.mark.parametrize("code", sorted(POLICY.types))
def test_built_documents_conform_for_every_type(code: str) -> None:
    ins = test_nir(7)
    data = build_document(ins, TEST_OID, code, "T", author_id="810001000101")
    result = check_cda(data, ins, POLICY.types)
    assert result.ok, result.problems


# -- storage -----------------------------------------------------------------------------------
def test_a_failed_transaction_leaves_no_document(tmp_path: Path) -> None:
    storage = Storage(tmp_path / "db.sqlite3")
    ins = test_nir(8)
    storage.create_dmp(ins, TEST_OID, "810001000101", "x", NOW)
    entry = Document("d1", ins, "c1", "11488-4", "t", "20260101", "N", "text/xml",
                     "professional", "a", "10", "A", "a", NOW, 3, "h")
    with pytest.raises(RuntimeError), storage.transaction():
        storage.insert_document(entry, b"abc")
        raise RuntimeError("cut")
    assert storage.find_documents(ins) == []
    storage.insert_document(entry, b"abc")
    with pytest.raises(sqlite3.IntegrityError):
        storage.insert_document(entry, b"abc")
    mode = storage._one("PRAGMA journal_mode")
    sync = storage._one("PRAGMA synchronous")
    assert mode == ("wal",) and sync == (2,)  # FULL
    storage.close()
