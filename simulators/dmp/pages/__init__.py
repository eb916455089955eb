"""The patient's web space (D21): server-rendered HTML pages and static files.

The pages register on the same router and server as the JSON API and call the patient domain
(`bifente.simulators.dmp.patient`), as the API does: the same session checks, rules, refusals and
traces, applied there once; nothing is decided here. They work without JavaScript: plain
forms, POST then redirect (303), a little CSS in `static/`.

Security: a web session per browser in a `__Host-` cookie, renewed at login, the patient API
token kept on the server, a CSRF token in every POST form and cross-site POSTs refused
(`session`); every value escaped, and a strict Content-Security-Policy (no script at all),
`X-Frame-Options: DENY` and `Referrer-Policy: no-referrer` on every page (`layout`).

One module per family of pages (`auth`, `documents`, `upload`, `settings`, `professionals`,
`traces`, `closing`) over what they share (`context`).
"""

from __future__ import annotations

from bifente.simulators.dmp.pages.auth import AuthPages
from bifente.simulators.dmp.pages.closing import ClosingPages
from bifente.simulators.dmp.pages.context import PageContext
from bifente.simulators.dmp.pages.documents import DocumentPages
from bifente.simulators.dmp.pages.professionals import ProfessionalPages
from bifente.simulators.dmp.pages.settings import SettingsPages
from bifente.simulators.dmp.pages.static import STATIC, serve_static
from bifente.simulators.dmp.pages.traces import TracePages
from bifente.simulators.dmp.pages.upload import UploadPages
from bifente.simulators.dmp.patient import PatientSpace
from bifente.simulators.dmp.server import Router

__all__ = ["STATIC", "PatientPages", "register"]


class PatientPages:
    """The `/patient/...` pages over the patient domain."""

    def __init__(self, patients: PatientSpace) -> None:
        self.context = PageContext(patients)
        self.families = (AuthPages(self.context), DocumentPages(self.context),
                         UploadPages(self.context), SettingsPages(self.context),
                         ProfessionalPages(self.context), TracePages(self.context),
                         ClosingPages(self.context))

    def register(self, router: Router) -> None:
        """Add the pages, each behind the guard (refusals as pages, security headers)."""
        for family in self.families:
            for method, pattern, handler in family.routes():
                router.add(method, pattern, self.context.guard(handler))


def register(router: Router, patients: PatientSpace) -> None:
    """Add the patient pages (`/patient/...`) and static files (`/static/...`)."""
    router.add("GET", "/static/{path:path}", serve_static)
    PatientPages(patients).register(router)
