"""The host's JSON API: professionals, patients, admin; every access and refusal traced.

Each operation: authenticate, then the rules (`rules.py`) decide, then storage changes and the
trace commit in one transaction. A `Refused` raised anywhere is answered with its reason code
and traced against the patient's record (`tracing.Tracer.refusals`). One module per audience:
`professional.py`, `patient.py` (JSON over the patient domain, `dmp/patient.py`, which
the web pages call too), `admin.py`, and `testmode.py` for test-mode-only routes.
"""

from __future__ import annotations

from collections.abc import Callable

from bifente.simulators.dmp.api.admin import AdminApi
from bifente.simulators.dmp.api.base import MAX_CDA, MAX_PATIENT_UPLOAD
from bifente.simulators.dmp.api.patient import PatientApi
from bifente.simulators.dmp.api.professional import ProfessionalApi
from bifente.simulators.dmp.api.testmode import TestModeApi
from bifente.simulators.dmp.auth import Challenges, CodeSender, PatientLogins, Sessions
from bifente.simulators.dmp.codes import Action
from bifente.simulators.dmp.directory import Directory
from bifente.simulators.dmp.patient import PatientSpace
from bifente.simulators.dmp.rules import Policy
from bifente.simulators.dmp.server import Router
from bifente.simulators.dmp.storage import Storage
from bifente.simulators.dmp.tracing import Tracer

__all__ = ["MAX_CDA", "MAX_PATIENT_UPLOAD", "DmpService"]


class DmpService(ProfessionalApi, PatientApi, AdminApi, TestModeApi):
    """The API over storage, rules, directory, sessions; `register` adds its routes."""

    def __init__(self, storage: Storage, policy: Policy, directory: Directory, *,
                 clock: Callable[[], float], admin_token: str, code_sender: CodeSender,
                 test_mode: bool = False) -> None:
        self.storage = storage
        self.policy = policy
        self.directory = directory
        self.clock = clock
        self.admin_token = admin_token
        self.code_sender = code_sender
        self.test_mode = test_mode
        self.challenges = Challenges()
        self.sessions = Sessions()
        self.logins = PatientLogins()
        self.tracer = Tracer(storage, clock)
        self.patients = PatientSpace(storage, policy, directory, clock=clock, tracer=self.tracer,
                                     sessions=self.sessions, logins=self.logins,
                                     code_sender=code_sender)

    def register(self, router: Router) -> None:
        """Add the JSON API's routes."""
        pro = self._professional
        for method, pattern, handler in (
            ("GET", "/api/health", self.health),
            ("POST", "/api/auth/challenge", self.challenge),
            ("POST", "/api/auth/session", self.open_session),
            ("DELETE", "/api/auth/session", self.close_session),
            ("GET", "/api/dmp/{ins}", pro(Action.EXISTS, self.exists)),
            ("POST", "/api/dmp/{ins}", pro(Action.CREATE, self.create)),
            ("POST", "/api/dmp/{ins}/documents", pro(Action.FEED, self.feed)),
            ("GET", "/api/dmp/{ins}/documents", pro(Action.FIND, self.find)),
            ("GET", "/api/dmp/{ins}/documents/{doc}", pro(Action.RETRIEVE, self.retrieve)),
            ("POST", "/api/dmp/{ins}/documents/{doc}/visibility",
             pro(Action.VISIBILITY, self.visibility)),
            ("DELETE", "/api/dmp/{ins}/documents/{doc}", pro(Action.DELETE, self.delete)),
            ("POST", "/api/dmp/{ins}/emergency", pro(Action.EMERGENCY, self.emergency)),
            ("POST", "/api/dmp/{ins}/patient-code",
             pro(Action.PATIENT_CODE_ISSUED, self.issue_patient_code)),
            ("GET", "/api/dmp/{ins}/traces", self.dmp_traces),
            ("POST", "/api/patient/login", self.patient_login),
            ("POST", "/api/patient/login/code", self.patient_code),
            ("POST", "/api/patient/logout", self.logout),
            ("GET", "/api/patient/dmp", self.patient_dmp),
            ("POST", "/api/patient/settings", self.patient_settings),
            ("GET", "/api/patient/documents", self.patient_documents),
            ("POST", "/api/patient/documents", self.patient_add),
            ("GET", "/api/patient/documents/{doc}", self.patient_retrieve),
            ("POST", "/api/patient/documents/{doc}/visibility", self.patient_visibility),
            ("POST", "/api/patient/documents/{doc}/deletion-request", self.patient_deletion),
            ("POST", "/api/patient/blocked", self.patient_block),
            ("DELETE", "/api/patient/blocked/{national_id}", self.patient_unblock),
            ("GET", "/api/patient/traces", self.patient_traces),
            ("POST", "/api/patient/close", self.patient_close),
            ("POST", "/api/admin/devices", self.enroll),
            ("DELETE", "/api/admin/devices/{device}", self.revoke),
        ):
            router.add(method, pattern, handler)
        if self.test_mode:  # never on a host started without --test-mode
            router.add("GET", "/api/test/last-code", self.test_last_code)
