"""A page action and the same call to the patient JSON API leave the same trace, one each: both
doors call the patient domain (`bifente.simulators.dmp.patient`), which traces every operation once.
Plain HTTP against a real host, no browser."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlencode

import pytest

from bifente.simulators.dmp.storage import Trace
from bifente.simulators.dmp.testing import DmpClient, DmpWorld, HttpResult


class PageSession:
    """A patient logged in to the pages over HTTP: their session cookie and CSRF token."""

    def __init__(self, world: DmpWorld, ins: str, password: str) -> None:
        self.client = DmpClient(world.host.url, world.host.cafile)
        r = self.client.get("/patient/login")
        self.cookie, self.csrf = self._cookie(r), self._csrf(r)
        r = self.post("/patient/login", {"ins": ins, "password": password})
        assert r.headers["location"] == "/patient/code", r.body
        code = world.client.get(f"/api/test/last-code?ins={ins}").json()["code"]
        r = self.post("/patient/code", {"code": str(code)})
        assert r.headers["location"] == "/patient/documents", r.body
        self.cookie = self._cookie(r)  # renewed at login
        self.csrf = self._csrf(self.get("/patient/documents"))

    @staticmethod
    def _cookie(r: HttpResult) -> str:
        return r.headers["set-cookie"].split(";", 1)[0]

    @staticmethod
    def _csrf(r: HttpResult) -> str:
        found = re.search(rb'name="csrf" value="([^"]+)"', r.body)
        assert found, r.body
        return found.group(1).decode()

    def get(self, path: str) -> HttpResult:
        """A page, with the session's cookie."""
        return self.client.get(path, headers={"Cookie": self.cookie})

    def post(self, path: str, fields: dict[str, str]) -> HttpResult:
        """A form, with the session's cookie and CSRF token."""
        return self.client.request(
            "POST", path, body=urlencode({**fields, "csrf": self.csrf}).encode(),
            headers={"Content-Type": "application/x-www-form-urlencoded", "Cookie": self.cookie})


@dataclass
class Patient:
    """A patient with two documents by the GP, logged in to the pages and to the API."""

    world: DmpWorld
    ins: str
    documents: tuple[str, str]
    pages: PageSession
    token: str

    def api(self, method: str, path: str, body: object = None) -> HttpResult:
        """A call to the patient API with the patient's token."""
        return self.world.client.request(method, path, json_body=body, token=self.token)

    def traced_by(self, act: Callable[[], HttpResult]) -> list[Trace]:
        """The traces `act` left on the record, read from the host's storage (reading them
        through the API would leave a trace of that read)."""
        storage = self.world.host.storage
        assert storage is not None
        last = storage.traces(self.ins, limit=1)[0].id or 0
        r = act()
        assert r.status < 500, r.body
        return [t for t in storage.traces(self.ins, limit=100) if (t.id or 0) > last]


@pytest.fixture
def patient(web_world: DmpWorld) -> Patient:
    ins, password = web_world.create()
    documents = (web_world.fed(ins), web_world.fed(ins))
    pages = PageSession(web_world, ins, password)
    return Patient(web_world, ins, documents, pages, web_world.patient(ins, password))


PageAct = Callable[[Patient, str], HttpResult]
# (page action, the same call to the API, the trace expected: action, outcome, reason); each
# is given a document of its own (the page the first, the API the second).
CASES: dict[str, tuple[PageAct, PageAct, tuple[str, str, str]]] = {
    "index": (lambda p, _doc: p.pages.get("/patient/documents"),
              lambda p, _doc: p.api("GET", "/api/patient/documents"), ("find", "ok", "")),
    "read": (lambda p, doc: p.pages.get(f"/patient/documents/{doc}"),
             lambda p, doc: p.api("GET", f"/api/patient/documents/{doc}"),
             ("retrieve", "ok", "")),
    "mask": (lambda p, doc: p.pages.post(f"/patient/documents/{doc}/visibility",
                                         {"masked_ps": "true"}),
             lambda p, doc: p.api("POST", f"/api/patient/documents/{doc}/visibility",
                                  {"masked_ps": True}), ("visibility", "ok", "")),
    "ask deletion": (
        lambda p, doc: p.pages.post(f"/patient/documents/{doc}/deletion-request", {}),
        lambda p, doc: p.api("POST", f"/api/patient/documents/{doc}/deletion-request"),
        ("deletion_request", "ok", "")),
    "block a malformed id": (
        lambda p, _doc: p.pages.post("/patient/professionals/block", {"national_id": "123"}),
        lambda p, _doc: p.api("POST", "/api/patient/blocked", {"national_id": "123"}),
        ("patient_block", "refused", "bad_request")),
    "traces": (lambda p, _doc: p.pages.get("/patient/traces"),
               lambda p, _doc: p.api("GET", "/api/patient/traces"), ("traces", "ok", "")),
}
DOCUMENT_ACTIONS = {"retrieve", "visibility", "deletion_request"}


@pytest.mark.parametrize("case", CASES)
def test_a_page_action_and_the_api_call_leave_the_same_one_trace(patient: Patient,
                                                                  case: str) -> None:
    by_page, by_api, (action, outcome, reason) = CASES[case]
    first, second = patient.documents
    page_traces = patient.traced_by(lambda: by_page(patient, first))
    api_traces = patient.traced_by(lambda: by_api(patient, second))
    for traces, doc in ((page_traces, first), (api_traces, second)):
        assert [(t.action, t.outcome, t.reason) for t in traces] == [(action, outcome, reason)]
        trace = traces[0]
        assert (trace.actor_kind, trace.actor_id, trace.actor_name) == (
            "patient", "patient", "the patient")
        assert trace.document_id == (doc if action in DOCUMENT_ACTIONS else "")
    page, api = page_traces[0], api_traces[0]
    assert (page.mode, page.emergency_reason, page.profession, page.structure_id) == (
        api.mode, api.emergency_reason, api.profession, api.structure_id)
