"""The patient pages' web sessions: one per browser, kept on the server behind a `__Host-`
cookie (HttpOnly, Secure, SameSite=Strict, Path=/), renewed at login so that no session can
be fixed; a POSTed form is read only from the same site and with the session's CSRF token
(compared in constant time). The patient API token never leaves the server."""

from __future__ import annotations

import hmac
import secrets
import threading
import time
from dataclasses import dataclass
from http.cookies import CookieError, SimpleCookie

from bifente.simulators.dmp.codes import Reason, Refused
from bifente.simulators.dmp.pages.forms import Form, parse_form
from bifente.simulators.dmp.server import Request

__all__ = ["COOKIE", "MAX_FORM", "WebSession", "WebSessions", "cookie"]

COOKIE = "__Host-dmp_patient"
WEB_SESSION_IDLE = 30 * 60
MAX_WEB_SESSIONS = 10_000
MAX_FORM = 64 * 1024


@dataclass
class WebSession:
    """One browser's web session (kept on the server; the cookie holds only its id)."""

    csrf: str
    seen: float
    token: str | None = None  # the patient API session token
    login: str | None = None  # a login waiting for its one-time code
    flash: str = ""
    flash_error: bool = False

    def say(self, message: str, *, error: bool = False) -> None:
        """A message for the next page shown (a status, or an alert when `error`)."""
        self.flash, self.flash_error = message, error


def cookie(sid: str) -> str:
    """The Set-Cookie value for this session id."""
    return f"{COOKIE}={sid}; Path=/; Secure; HttpOnly; SameSite=Strict"


class WebSessions:
    """Every browser's session, by id; idle ones expire, the oldest go first when full."""

    def __init__(self) -> None:
        self._web: dict[str, WebSession] = {}
        self._lock = threading.Lock()

    def find(self, req: Request) -> tuple[str, WebSession] | None:
        """The live session the request's cookie names, or None."""
        raw = req.header("Cookie")
        if not raw:
            return None
        try:
            morsel = SimpleCookie(raw).get(COOKIE)
        except CookieError:
            return None
        if morsel is None:
            return None
        now = time.monotonic()
        with self._lock:
            web = self._web.get(morsel.value)
            if web is None or now - web.seen > WEB_SESSION_IDLE:
                self._web.pop(morsel.value, None)
                return None
            web.seen = now
            return morsel.value, web

    def new(self) -> tuple[str, WebSession]:
        """A fresh session under a new random id."""
        sid = secrets.token_urlsafe(32)
        web = WebSession(csrf=secrets.token_urlsafe(32), seen=time.monotonic())
        with self._lock:
            now = time.monotonic()
            for key in [k for k, w in self._web.items() if now - w.seen > WEB_SESSION_IDLE]:
                del self._web[key]
            while len(self._web) >= MAX_WEB_SESSIONS:  # the oldest pre-login sessions go first
                del self._web[min(self._web, key=lambda k: self._web[k].seen)]
            self._web[sid] = web
        return sid, web

    def drop(self, sid: str) -> None:
        """Forget a session (logout, or renewal at login)."""
        with self._lock:
            self._web.pop(sid, None)

    def ensure(self, req: Request) -> tuple[str, WebSession, bool]:
        """The request's session, or a new one (then True: its cookie must be sent)."""
        found = self.find(req)
        if found is not None:
            return found[0], found[1], False
        sid, web = self.new()
        return sid, web, True

    def form(self, req: Request, limit: int = MAX_FORM) -> tuple[str, WebSession, Form]:
        """The POSTed form (urlencoded or multipart), after the session and CSRF checks."""
        if req.header("Sec-Fetch-Site") == "cross-site":
            raise Refused(Reason.NOT_PERMITTED, "Requête refusée (autre site).")
        found = self.find(req)
        if found is None:
            raise Refused(Reason.UNAUTHENTICATED, "Session expirée : recommencez.")
        sid, web = found
        fields = parse_form(req.header("Content-Type") or "", req.body(limit))
        token = fields.get("csrf")
        if not isinstance(token, str) or not hmac.compare_digest(token.encode(),
                                                                 web.csrf.encode()):
            raise Refused(Reason.NOT_PERMITTED, "Jeton de formulaire invalide : rechargez la page.")
        return sid, web, fields
