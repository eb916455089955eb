"""The patient domain on its own (`simulators/dmp/patient.py`), as the JSON API and the pages call
it: plain methods over a real SQLite storage, no HTTP; each operation leaves one trace, and a
call without a session leaves none. The code sender is the one seam faked."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path

import pytest

from bifente.simulators.dmp.auth import PatientLogins, Sessions, hash_password
from bifente.simulators.dmp.codes import Reason, Refused
from bifente.simulators.dmp.directory import DEFAULT_DIRECTORY, Directory
from bifente.simulators.dmp.patient import PatientSpace
from bifente.simulators.dmp.rules import DEFAULT_POLICY, load_policy
from bifente.simulators.dmp.storage import Storage, Trace
from bifente.simulators.dmp.testing import TEST_OID, FakeClock, test_nir
from bifente.simulators.dmp.tracing import Tracer

PASSWORD = "a-patient-password"


class KeptCodes:
    """A code sender that keeps the last code per patient (instead of an outbox file)."""

    name = "kept"

    def __init__(self) -> None:
        self.codes: dict[str, str] = {}

    def send(self, ins: str, code: str) -> None:
        """Keep the code."""
        self.codes[ins] = code


@pytest.fixture
def storage(tmp_path: Path) -> Iterator[Storage]:
    store = Storage(tmp_path / "dmp.sqlite3")
    yield store
    store.close()


@pytest.fixture
def codes() -> KeptCodes:
    return KeptCodes()


@pytest.fixture
def patients(storage: Storage, codes: KeptCodes) -> PatientSpace:
    clock = FakeClock()
    return PatientSpace(storage, load_policy(DEFAULT_POLICY), Directory.load(DEFAULT_DIRECTORY),
                        clock=clock, tracer=Tracer(storage, clock), sessions=Sessions(),
                        logins=PatientLogins(), code_sender=codes)


def logged_in(patients: PatientSpace, storage: Storage, codes: KeptCodes) -> tuple[str, str]:
    """A new record and its patient's session token: (INS, token)."""
    ins = test_nir(7)
    storage.create_dmp(ins, TEST_OID, "810001000101", hash_password(PASSWORD), 0.0)
    started = patients.start_login(ins, PASSWORD)
    assert started.code_sent_via == "kept"
    return ins, patients.finish_login(started.login, codes.codes[ins]).token


def outcomes(traces: list[Trace]) -> list[tuple[str, str, str]]:
    """Oldest first: (action, outcome, reason)."""
    return [(t.action, t.outcome, t.reason) for t in reversed(traces)]


def test_each_operation_is_traced_once_and_answers_plain_values(
        patients: PatientSpace, storage: Storage, codes: KeptCodes) -> None:
    ins, token = logged_in(patients, storage, codes)
    doc = patients.add_document(token, {"title": "Mon bilan", "type_code": "11502-2",
                                        "media_type": "text/plain", "content": b"tout va bien"})
    assert (doc.author_kind, doc.title) == ("patient", "Mon bilan")
    listing = patients.documents(token)
    assert [d.id for d in listing.documents] == [doc.id] and listing.pending == ()
    assert base64.b64encode(b"tout va bien") in patients.document(token, doc.id).cda  # B64 body
    assert patients.set_visibility(token, doc.id, {"masked_ps": True}).masked_ps
    record = patients.record(token)  # reading the record itself leaves no trace
    assert (record.open, record.blocked) == (True, ())
    with pytest.raises(Refused) as refused:
        patients.block(token, {"national_id": "123"})
    assert refused.value.reason is Reason.BAD_REQUEST
    assert outcomes(storage.traces(ins)) == [
        ("patient_login", "ok", ""), ("feed", "ok", ""), ("find", "ok", ""),
        ("retrieve", "ok", ""), ("visibility", "ok", ""),
        ("patient_block", "refused", "bad_request")]


def test_without_a_session_nothing_is_done_or_traced(
        patients: PatientSpace, storage: Storage, codes: KeptCodes) -> None:
    ins, token = logged_in(patients, storage, codes)
    patients.logout(token)
    for call in (lambda: patients.record(token), lambda: patients.documents(None),
                 lambda: patients.close("not-a-token", {"confirm": True})):
        with pytest.raises(Refused) as refused:
            call()
        assert refused.value.reason is Reason.UNAUTHENTICATED
    assert outcomes(storage.traces(ins)) == [("patient_login", "ok", "")]
    assert storage.get_dmp(ins).status == "open"  # type: ignore[union-attr]
