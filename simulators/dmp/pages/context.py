"""What every patient page works with: the patient domain, the web sessions; and the guard
that turns a refusal into an error page (or back to the login page)."""

from __future__ import annotations

from collections.abc import Callable

from bifente.simulators.dmp.codes import Reason, Refused
from bifente.simulators.dmp.pages.display import e
from bifente.simulators.dmp.pages.labels import message
from bifente.simulators.dmp.pages.layout import SECURITY_HEADERS, Page, redirect, render
from bifente.simulators.dmp.pages.session import WebSession, WebSessions, cookie
from bifente.simulators.dmp.patient import PatientRecord, PatientSpace
from bifente.simulators.dmp.server import Request, Response

__all__ = ["PageContext", "Route"]

Route = tuple[str, str, Callable[[Request], Response]]  # method, pattern, handler


def _error_status(reason: Reason) -> int:
    if reason is Reason.BAD_REQUEST:
        return 400
    if reason is Reason.NOT_PERMITTED:
        return 403
    if reason in (Reason.NOT_FOUND, Reason.UNKNOWN_DOCUMENT):
        return 404
    return 409


class PageContext:
    """The parts the page families share."""

    def __init__(self, patients: PatientSpace) -> None:
        self.patients = patients  # the operations the JSON API offers too
        self.sessions = WebSessions()

    def guard(self, handler: Callable[[Request], Response]) -> Callable[[Request], Response]:
        """The handler, with refusals shown as pages and the security headers on every answer."""
        def run(req: Request) -> Response:
            try:
                response = handler(req)
            except Refused as refusal:
                if refusal.told is Reason.UNAUTHENTICATED:
                    return self.to_login(req, message(refusal))
                response = render(req, Page("Erreur", f'<p role="alert" class="error">'
                                            f"{e(message(refusal))}</p>",
                                            _error_status(refusal.told)))
            for name, value in SECURITY_HEADERS.items():
                response.headers.setdefault(name, value)
            return response
        return run

    def to_login(self, req: Request, text: str) -> Response:
        """Back to the login page with this message (the API session is forgotten)."""
        sid, web, new = self.sessions.ensure(req)
        web.token, web.login = None, None
        web.say(text, error=True)
        return redirect("/patient/login", cookie(sid) if new else None)

    def patient(self, req: Request) -> tuple[str, WebSession]:
        """The logged-in patient's web session (Refused UNAUTHENTICATED otherwise)."""
        found = self.sessions.find(req)
        if found is None or found[1].token is None:
            raise Refused(Reason.UNAUTHENTICATED, "Connectez-vous.")
        return found

    def record(self, web: WebSession) -> PatientRecord:
        """The patient's record: status, settings, blocked professionals, emergency accesses."""
        return self.patients.record(web.token)
