"""The patient's login (D21): INS and password, then a one-time code sent to the patient (or
shown on a terminal) opens a session; failures count towards a lock. And logout."""

from __future__ import annotations

from bifente.apdu.identity import parse_nir
from bifente.simulators.dmp.auth import verify_password
from bifente.simulators.dmp.codes import Action, Outcome, Reason, Refused
from bifente.simulators.dmp.patient.base import PatientBase
from bifente.simulators.dmp.patient.views import LoginStarted, PatientToken
from bifente.simulators.dmp.tracing import PATIENT_ACTOR, TraceContext

__all__ = ["LOGIN_LOCK_AFTER", "LOGIN_LOCK_FOR", "SignIn"]

LOGIN_LOCK_AFTER = 5
LOGIN_LOCK_FOR = 15 * 60
CODE_EXPIRES_IN = 600


class SignIn(PatientBase):
    """Login in two steps, and logout."""

    def start_login(self, ins: object, password: object) -> LoginStarted:
        """First step: INS + password; a one-time code is then sent to the patient."""
        if not isinstance(ins, str) or not isinstance(password, str):
            raise Refused(Reason.BAD_REQUEST, "ins and password are required")
        try:
            nir = parse_nir(ins).value
        except ValueError:
            nir = ""
        record = self.storage.get_dmp(nir) if nir else None
        now = self.clock()
        # the password is checked even without a record, so that both take the same time
        ok = verify_password(password, record.password_hash if record else None)
        if record is None:
            raise Refused(Reason.LOGIN_FAILED, "wrong INS or password")
        ctx = TraceContext(PATIENT_ACTOR, ins=nir, action=Action.PATIENT_LOGIN)
        with self.tracer.refusals(ctx):
            if record.locked_until and now < record.locked_until:
                raise Refused(Reason.LOGIN_LOCKED, "too many failures: try again later")
            if not ok:
                self.storage.login_failed(nir, now, lock_after=LOGIN_LOCK_AFTER,
                                          lock_for=LOGIN_LOCK_FOR)
                raise Refused(Reason.LOGIN_FAILED, "wrong INS or password")
            login, code, ahead = self.logins.start(nir, now)
            if not ahead:  # a code shown on a terminal is used instead of sending one
                self.code_sender.send(nir, code)
            return LoginStarted(login, "terminal" if ahead else self.code_sender.name,
                                CODE_EXPIRES_IN)

    def finish_login(self, login: object, code: object) -> PatientToken:
        """Second step: the one-time code opens the patient's session."""
        if not isinstance(login, str) or not isinstance(code, str):
            raise Refused(Reason.BAD_REQUEST, "login and code are required")
        now = self.clock()
        ins, why = self.logins.finish(login, code, now)
        if ins is None:
            raise Refused(Reason.CODE_INVALID, why or "")
        ctx = TraceContext(PATIENT_ACTOR, ins=ins, action=Action.PATIENT_LOGIN)
        with self.tracer.refusals(ctx):
            if why is not None:
                self.storage.login_failed(ins, now, lock_after=LOGIN_LOCK_AFTER,
                                          lock_for=LOGIN_LOCK_FOR)
                raise Refused(Reason.CODE_INVALID, why)
            self.storage.login_succeeded(ins)
            session = self.sessions.open_patient(ins, now)
            self.tracer.trace(ctx, Outcome.OK)
            return PatientToken(session.token, int(session.expires - now))

    def logout(self, token: str | None) -> None:
        """End the session of this token."""
        self.sessions.end(token or "")
