"""The patient's web space (issue 6 §5, D21): server-rendered HTML pages and static files.

The pages register on the same router and server as the JSON API and call the patient API
in process (the same handlers, rules and traces: nothing is decided here). They work without
JavaScript: plain forms, POST then redirect (303), a little CSS in `static/`.

Security: a web session per browser in a `__Host-` cookie (HttpOnly, Secure,
SameSite=Strict, Path=/), renewed at login (no fixation); the patient API token stays on the
server. Every POST form carries the session's CSRF token (checked in constant time) and a
cross-site `Sec-Fetch-Site` is refused. Every value is escaped with `html.escape`; pages are
sent with a strict Content-Security-Policy (no script at all), `X-Frame-Options: DENY` and
`Referrer-Policy: no-referrer`.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import datetime as dt
import email.parser
import email.policy
import hmac
import json
import mimetypes
import re
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from email.message import Message
from html import escape
from http.cookies import CookieError, SimpleCookie
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote

from simulators.dmp import cda
from simulators.dmp.api import MAX_PATIENT_UPLOAD, DmpService
from simulators.dmp.codes import Reason, Refused
from simulators.dmp.server import Request, Response, Router

__all__ = ["STATIC", "PatientPages", "register"]

STATIC = Path(__file__).parent / "static"
COOKIE = "__Host-dmp_patient"
WEB_SESSION_IDLE = 30 * 60
MAX_WEB_SESSIONS = 10_000
MAX_FORM = 64 * 1024
MAX_UPLOAD_FILE = (MAX_PATIENT_UPLOAD // 4) * 3 - 64 * 1024  # base64 in JSON fits the API cap
N = "{urn:hl7-org:v3}"

# An answer of the JSON API (docs/dmp-api.md), decoded: the pages read the fields they show.
JsonObject = dict[str, Any]

SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'self'; img-src 'self'; "
                               "form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}

MESSAGES: dict[str, str] = {
    Reason.LOGIN_FAILED: "INS ou mot de passe incorrect.",
    Reason.CODE_INVALID: "Code incorrect ou expiré. Vérifiez le code reçu, ou recommencez la "
                         "connexion.",
    Reason.LOGIN_LOCKED: "Trop d'échecs : la connexion est bloquée pendant 15 minutes.",
    Reason.DMP_CLOSED: "Votre DMP est fermé : il reste consultable, sans modification.",
    Reason.DMP_NOT_FOUND: "Aucun DMP pour cet INS.",
    Reason.UNKNOWN_DOCUMENT: "Document inconnu.",
    Reason.UNAUTHENTICATED: "Votre session a expiré : reconnectez-vous.",
    Reason.UNKNOWN_PROFESSIONAL: "Ce professionnel n'est pas un médecin de l'annuaire.",
    Reason.VISIBILITY_CONFLICT: "Un document ne peut pas être à la fois masqué et caché.",
    Reason.TOO_LARGE: "Le fichier est trop volumineux.",
    Reason.NOT_FOUND: "Introuvable.",
    Reason.CDA_INVALID: "Le document CDA n'est pas conforme",
    Reason.INS_MISMATCH: "Ce document CDA concerne un autre patient (INS différent)",
    Reason.DOCUMENT_EXISTS: "Ce document est déjà dans votre DMP.",
}

ACTIONS: dict[str, str] = {
    "exists": "Vérification de l'existence du DMP", "create": "Création du DMP",
    "feed": "Ajout d'un document", "find": "Consultation de la liste des documents",
    "retrieve": "Lecture d'un document", "visibility": "Changement de visibilité",
    "delete": "Suppression d'un document", "emergency": "Accès en urgence",
    "traces": "Lecture de l'historique", "patient_login": "Connexion du patient",
    "patient_settings": "Paramètres", "patient_block": "Blocage d'un professionnel",
    "patient_unblock": "Déblocage d'un professionnel",
    "deletion_request": "Demande de suppression", "close": "Fermeture du DMP",
    "patient_code_issued": "Code de connexion affiché au terminal",
}
REASONS: dict[str, str] = {
    "blocked_by_patient": "professionnel bloqué par vous",
    "emergency_opposed": "vous vous êtes opposé à cet accès en urgence",
    "masked_by_patient": "document masqué par vous",
    "hidden_from_patient": "document pas encore visible",
    "consent_missing": "sans votre consentement", "outside_access_matrix":
    "type de document non autorisé pour cette profession",
    "insurer_forbidden": "assureur : toujours refusé",
    "occupational_needs_express_consent": "médecin du travail sans votre autorisation",
    "student_card_refused": "carte d'étudiant", "login_failed": "mot de passe incorrect",
    "code_invalid": "code incorrect", "dmp_closed": "DMP fermé",
}
MODES = {"normal": "", "bris_de_glace": "Bris de glace", "centre_15": "Centre 15 (SAMU)"}
STATUSES = {"available": "Disponible", "deletion_requested": "Suppression demandée",
            "deleted": "Supprimé"}
# Document types (LOINC codes of data/standin_access_matrix.toml) as a French patient reads them.
TYPES_FR = {
    "11488-4": "Compte rendu de consultation", "11490-0": "Lettre de sortie",
    "11502-2": "Compte rendu de biologie", "11528-7": "Compte rendu d'imagerie",
    "15507-7": "Compte rendu de passage aux urgences", "34874-8": "Compte rendu opératoire",
    "57833-6": "Prescription", "29551-9": "Prescription de médicaments",
    "29550-1": "Dispensation", "60593-1": "Dispensation de médicaments",
    "11506-3": "Suivi de soins par un auxiliaire médical", "52521-2": "Prescription de soins",
    "18776-5": "Plan de soins", "47420-5": "Bilan fonctionnel",
    "60591-5": "Synthèse médicale", "87273-9": "Vaccination",
}


def _type_fr(d: JsonObject) -> str:
    """The document's type in French (the host's name, else its code, when unknown)."""
    code = str(d.get("type_code", ""))
    return TYPES_FR.get(code, str(d.get("type_name") or code))


_TABLE_RE = re.compile(r"<table>(.*?)</table>", re.S)
_TH_RE = re.compile(r'<th scope="col">(.*?)</th>', re.S)


def _labelled_tables(html: str) -> str:
    """Each cell labelled with its column (data-label, shown on narrow screens, where rows
    become cards) and explicit table roles, which CSS display changes cannot take away."""
    def one(match: re.Match[str]) -> str:
        inner = match.group(1)
        head, sep, body = inner.partition("</thead>")
        if not sep:
            return match.group(0)
        labels = [re.sub(r"<[^>]+>", "", h) for h in _TH_RE.findall(head)]
        head = (head.replace("<thead>", '<thead role="rowgroup">')
                .replace("<tr>", '<tr role="row">')
                .replace('<th scope="col">', '<th scope="col" role="columnheader">'))

        def row(m: re.Match[str]) -> str:
            cells = iter(labels)
            return re.sub(r"<td", lambda _c: f'<td role="cell" data-label="{next(cells, "")}"',
                          m.group(0).replace("<tr", '<tr role="row"', 1))

        body = re.sub(r"<tr.*?</tr>", row, body.replace("<tbody>", '<tbody role="rowgroup">'),
                      flags=re.S)
        return f'<table role="table">{head}{sep}{body}</table>'

    return _TABLE_RE.sub(one, html)


# -- small helpers -------------------------------------------------------------------------------
def _e(value: object) -> str:
    return escape("" if value is None else str(value), quote=True)


def _message(refusal: Refused) -> str:
    return MESSAGES.get(refusal.told) or (refusal.message if refusal.told is refusal.reason
                                          else refusal.told.value.replace("_", " "))


def _when_iso(value: object) -> str:
    """2026-01-31T12:00:00Z -> 31/01/2026 12:00 UTC."""
    try:
        t = dt.datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return str(value or "")
    return t.strftime("%d/%m/%Y %H:%M UTC")


def _when_hl7(value: object) -> str:
    """20260131120000+0000 -> 31/01/2026 12:00."""
    text = str(value or "")
    if len(text) >= 8 and text[:8].isdigit():
        out = f"{text[6:8]}/{text[4:6]}/{text[0:4]}"
        if len(text) >= 12 and text[8:12].isdigit():
            out += f" {text[8:10]}:{text[10:12]}"
        return out
    return text


def _author(doc: JsonObject) -> str:
    author = doc.get("author") or {}
    if author.get("kind") == "patient":
        return "Vous"
    return str(author.get("name") or author.get("id") or "")


def _static(req: Request) -> Response:
    """A file under static/ (no directory escapes, no listings)."""
    root = STATIC.resolve()
    target = (root / req.params["path"]).resolve()
    if not target.is_relative_to(root) or not target.is_file():
        raise Refused(Reason.NOT_FOUND)
    content_type = mimetypes.guess_type(target.name)[0] or "application/octet-stream"
    return Response(200, target.read_bytes(), content_type,
                    headers={"X-Content-Type-Options": "nosniff"})


class _InternalRequest(Request):
    """A request to the JSON API made in process by a page (same handlers, rules, traces)."""

    def __init__(self, method: str, path: str, params: dict[str, str], token: str | None,
                 body: bytes, peer: str, query: dict[str, list[str]] | None = None) -> None:
        self._handler = None  # type: ignore[assignment]
        self.method = method
        self.path = path
        self.query = query or {}
        self.params = params
        headers = Message()
        headers["Content-Type"] = "application/json"
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self.headers = headers
        self.peer = peer
        self._body = body

    def body(self, limit: int) -> bytes:
        assert self._body is not None
        if len(self._body) > limit:
            raise Refused(Reason.TOO_LARGE, f"the body may be at most {limit} bytes")
        return self._body


@dataclass
class _Web:
    """One browser's web session (kept on the server; the cookie holds only its id)."""

    csrf: str
    seen: float
    token: str | None = None  # the patient API session token
    login: str | None = None  # a login waiting for its one-time code
    flash: str = ""
    flash_error: bool = False


@dataclass
class Page:
    """What a page handler produces before layout."""

    title: str
    body: str
    status: int = 200


@dataclass(frozen=True)
class CdaView:
    """What the pages show of a stored CDA: its header, and a text, a PDF or sections."""

    title: str
    author: str
    date: str
    media_type: str
    text: str | None = None  # a text/plain nonXMLBody
    data: bytes | None = None  # any other nonXMLBody (a PDF)
    sections: tuple[tuple[str, str], ...] = ()  # a structured body: (title, text) each


def _cda_view(data: bytes) -> CdaView:
    """Title, author, date and a body (text, or PDF bytes) from a stored CDA."""
    root = cda.parse_xml(data)  # stored documents passed the D7 check; no DTD is ever expanded
    title = root.find(N + "title")
    person = root.find(f"{N}author/{N}assignedAuthor/{N}assignedPerson/{N}name")
    when = root.find(N + "effectiveTime")
    header = CdaView(
        title="".join(title.itertext()) if title is not None else "",
        author=" ".join(t.strip() for t in person.itertext() if t.strip())
        if person is not None else "",
        date=_when_hl7(when.get("value") if when is not None else ""), media_type="text/xml")
    text = root.find(f"{N}component/{N}nonXMLBody/{N}text")
    if text is not None:
        media = text.get("mediaType", "")
        content = text.text or ""
        raw = binascii.a2b_base64("".join(content.split())) if text.get(
            "representation") == "B64" else content.encode("utf-8")
        if media == "text/plain":
            return replace(header, media_type=media, text=raw.decode("utf-8", "replace"))
        return replace(header, media_type=media, data=raw)
    sections = []
    for section in root.iter(N + "section"):
        heading = section.find(N + "title")
        body = section.find(N + "text")
        sections.append(("".join(heading.itertext()) if heading is not None else "",
                         "".join(body.itertext()) if body is not None else ""))
    return replace(header, sections=tuple(sections))


class PatientPages:
    """The `/patient/...` pages over the patient API of a `DmpService`."""

    def __init__(self, service: DmpService) -> None:
        self.service = service
        self.api = Router()
        service.register(self.api)  # the same handlers, called in process
        self._web: dict[str, _Web] = {}
        self._lock = threading.Lock()

    # -- routing -----------------------------------------------------------------------------------
    def register(self, router: Router) -> None:
        """Add the pages."""
        for method, pattern, handler in (
            ("GET", "/patient", self.root),
            ("GET", "/patient/", self.root),
            ("GET", "/patient/login", self.login_form),
            ("POST", "/patient/login", self.login_submit),
            ("GET", "/patient/code", self.code_form),
            ("POST", "/patient/code", self.code_submit),
            ("POST", "/patient/logout", self.logout),
            ("GET", "/patient/documents", self.documents),
            ("GET", "/patient/documents/{doc}", self.document),
            ("GET", "/patient/documents/{doc}/content", self.content),
            ("POST", "/patient/documents/{doc}/visibility", self.visibility),
            ("POST", "/patient/documents/{doc}/deletion-request", self.deletion),
            ("GET", "/patient/add", self.add_form),
            ("POST", "/patient/add", self.add_submit),
            ("GET", "/patient/settings", self.settings_form),
            ("POST", "/patient/settings", self.settings_submit),
            ("GET", "/patient/professionals", self.professionals),
            ("POST", "/patient/professionals/block", self.block),
            ("POST", "/patient/professionals/unblock", self.unblock),
            ("GET", "/patient/traces", self.traces),
            ("GET", "/patient/close", self.close_form),
            ("POST", "/patient/close", self.close_submit),
        ):
            router.add(method, pattern, self._guard(handler))

    def _guard(self, handler: Callable[[Request], Response]) -> Callable[[Request], Response]:
        def run(req: Request) -> Response:
            try:
                response = handler(req)
            except Refused as refusal:
                if refusal.told is Reason.UNAUTHENTICATED:
                    return self._to_login(req, _message(refusal))
                response = self._html(req, Page("Erreur", f'<p role="alert" class="error">'
                                                f"{_e(_message(refusal))}</p>",
                                                400 if refusal.told is Reason.BAD_REQUEST
                                                else 403 if refusal.told is Reason.NOT_PERMITTED
                                                else 404 if refusal.told in (
                                                    Reason.NOT_FOUND, Reason.UNKNOWN_DOCUMENT)
                                                else 409))
            for name, value in SECURITY_HEADERS.items():
                response.headers.setdefault(name, value)
            return response
        return run

    # -- web sessions ------------------------------------------------------------------------------
    def _session(self, req: Request) -> tuple[str, _Web] | None:
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

    def _new_session(self) -> tuple[str, _Web]:
        sid = secrets.token_urlsafe(32)
        web = _Web(csrf=secrets.token_urlsafe(32), seen=time.monotonic())
        with self._lock:
            now = time.monotonic()
            for key in [k for k, w in self._web.items() if now - w.seen > WEB_SESSION_IDLE]:
                del self._web[key]
            while len(self._web) >= MAX_WEB_SESSIONS:  # the oldest pre-login sessions go first
                del self._web[min(self._web, key=lambda k: self._web[k].seen)]
            self._web[sid] = web
        return sid, web

    def _drop(self, sid: str) -> None:
        with self._lock:
            self._web.pop(sid, None)

    @staticmethod
    def _cookie(sid: str, *, clear: bool = False) -> str:
        value = "" if clear else sid
        extra = "; Max-Age=0" if clear else ""
        return f"{COOKIE}={value}; Path=/; Secure; HttpOnly; SameSite=Strict{extra}"

    def _ensure(self, req: Request) -> tuple[str, _Web, bool]:
        found = self._session(req)
        if found is not None:
            return found[0], found[1], False
        sid, web = self._new_session()
        return sid, web, True

    def _form(self, req: Request, limit: int = MAX_FORM) -> tuple[str, _Web, dict[str, object]]:
        """The POSTed form (urlencoded or multipart), after the session and CSRF checks."""
        if req.header("Sec-Fetch-Site") == "cross-site":
            raise Refused(Reason.NOT_PERMITTED, "Requête refusée (autre site).")
        found = self._session(req)
        if found is None:
            raise Refused(Reason.UNAUTHENTICATED, "Session expirée : recommencez.")
        sid, web = found
        ctype = req.header("Content-Type") or ""
        raw = req.body(limit)
        fields: dict[str, object] = {}
        if ctype.startswith("multipart/form-data"):
            msg = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
                b"Content-Type: " + ctype.encode("latin-1") + b"\r\n\r\n" + raw)
            if not msg.is_multipart():
                raise Refused(Reason.BAD_REQUEST, "Formulaire illisible.")
            for part in msg.iter_parts():
                name = part.get_param("name", header="content-disposition")
                if not isinstance(name, str):
                    continue
                payload = part.get_payload(decode=True)  # bytes: a part is never multipart
                if not isinstance(payload, bytes):
                    payload = b""
                filename = part.get_filename()
                if filename is not None:
                    fields[name] = (filename, part.get_content_type(), payload)
                else:
                    fields[name] = payload.decode("utf-8", "replace")
        else:
            for key, values in parse_qs(raw.decode("utf-8", "replace"),
                                        keep_blank_values=True).items():
                fields[key] = values[-1]
        token = fields.get("csrf")
        if not isinstance(token, str) or not hmac.compare_digest(token.encode(),
                                                                 web.csrf.encode()):
            raise Refused(Reason.NOT_PERMITTED, "Jeton de formulaire invalide : rechargez la page.")
        return sid, web, fields

    # -- the API, in process -----------------------------------------------------------------------
    def _call(self, req: Request, web: _Web | None, method: str, path: str,
              body: object = None, query: dict[str, list[str]] | None = None) -> JsonObject:
        route, params = self.api.match(method, path)
        data = b"" if body is None else json.dumps(body).encode()
        inner = _InternalRequest(method, path, params, web.token if web else None, data,
                                 req.peer, query)
        try:
            response = route.handler(inner)
        except Refused as refusal:
            if refusal.told is Reason.UNAUTHENTICATED and web is not None:
                web.token = None
            raise
        answer = json.loads(response.body or b"{}")
        assert isinstance(answer, dict), "every answer of the API is a JSON object"
        return answer

    def _patient(self, req: Request) -> tuple[str, _Web]:
        found = self._session(req)
        if found is None or found[1].token is None:
            raise Refused(Reason.UNAUTHENTICATED, "Connectez-vous.")
        return found

    # -- responses ---------------------------------------------------------------------------------
    @staticmethod
    def _redirect(location: str, cookie: str | None = None) -> Response:
        headers = {"Location": location}
        if cookie:
            headers["Set-Cookie"] = cookie
        return Response(303, b"", "text/html; charset=utf-8", headers)

    def _to_login(self, req: Request, message: str) -> Response:
        sid, web, new = self._ensure(req)
        web.token, web.login = None, None
        web.flash, web.flash_error = message, True
        return self._redirect("/patient/login", self._cookie(sid) if new else None)

    def _flash(self, web: _Web, message: str, *, error: bool = False) -> None:
        web.flash, web.flash_error = message, error

    def _html(self, req: Request, page: Page, web: _Web | None = None,
              cookie: str | None = None, record: JsonObject | None = None) -> Response:
        nav = ""
        if web is not None and web.token:
            links = (("/patient/documents", "Mes documents"), ("/patient/add", "Ajouter"),
                     ("/patient/settings", "Paramètres"),
                     ("/patient/professionals", "Professionnels"),
                     ("/patient/traces", "Historique"), ("/patient/close", "Fermer mon DMP"))
            current = ' aria-current="page"'
            items = "".join(
                f'<li><a href="{href}"{current if req.path == href else ""}>'
                f"{label}</a></li>" for href, label in links)
            nav = (f'<nav aria-label="Menu"><ul>{items}</ul>'
                   f'<form method="post" action="/patient/logout" class="logout">'
                   f'{self._csrf(web)}<button type="submit">Se déconnecter</button></form></nav>')
        flash = ""
        if web is not None and web.flash:
            role, cls = ("alert", "error") if web.flash_error else ("status", "ok")
            flash = f'<p role="{role}" class="{cls}">{_e(web.flash)}</p>'
            web.flash = ""
        closed = ""
        if record is not None and record.get("status") == "closed":
            closed = (f'<p class="closed" role="note">Votre DMP est fermé depuis le '
                      f'{_e(_when_iso(record.get("closed_at")))} : il reste consultable, '
                      "sans modification.</p>")
        html = (
            '<!DOCTYPE html>\n<html lang="fr"><head><meta charset="utf-8">'
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{_e(page.title)} - Mon DMP</title>"
            '<link rel="stylesheet" href="/static/patient.css"></head><body>'
            '<header><p class="brand">Mon DMP <span class="test">service de test</span></p>'
            f"{nav}</header><main>{flash}{closed}<h1>{_e(page.title)}</h1>"
            f"{_labelled_tables(page.body)}</main>"
            "<footer><p>Hôte DMP de référence bifente (TEST) - données fictives.</p></footer>"
            "</body></html>")
        headers = {"Set-Cookie": cookie} if cookie else {}
        return Response(page.status, html.encode(), "text/html; charset=utf-8", headers)

    @staticmethod
    def _csrf(web: _Web) -> str:
        return f'<input type="hidden" name="csrf" value="{_e(web.csrf)}">'

    def _button(self, web: _Web, action: str, label: str, fields: dict[str, str] | None = None,
                cls: str = "") -> str:
        hidden = "".join(f'<input type="hidden" name="{_e(k)}" value="{_e(v)}">'
                         for k, v in (fields or {}).items())
        return (f'<form method="post" action="{_e(action)}" class="inline">{self._csrf(web)}'
                f'{hidden}<button type="submit" class="{cls}">{_e(label)}</button></form>')

    # -- login -------------------------------------------------------------------------------------
    def root(self, req: Request) -> Response:
        """/patient/: the documents when logged in, else the login page."""
        found = self._session(req)
        return self._redirect("/patient/documents" if found and found[1].token
                              else "/patient/login")

    def login_form(self, req: Request, status: int = 200) -> Response:
        """Step 1: INS and password."""
        sid, web, new = self._ensure(req)
        body = (
            '<p>Connectez-vous avec votre INS (numéro de sécurité sociale, 15 caractères) et le '
            "mot de passe remis à la création de votre DMP. Un code à usage unique vous sera "
            "ensuite envoyé.</p>"
            f'<form method="post" action="/patient/login" class="card">{self._csrf(web)}'
            '<label for="ins">INS</label>'
            '<input id="ins" name="ins" inputmode="numeric" autocomplete="username" required '
            'maxlength="15" pattern="[0-9ABab]{15}">'
            '<label for="password">Mot de passe</label>'
            '<input id="password" name="password" type="password" '
            'autocomplete="current-password" required maxlength="64">'
            '<button type="submit">Continuer</button></form>')
        return self._html(req, Page("Connexion à mon DMP", body, status), web,
                          self._cookie(sid) if new else None)

    def login_submit(self, req: Request) -> Response:
        """INS + password -> a one-time code is sent; then the code page."""
        try:
            _sid, web, fields = self._form(req)
        except Refused as refusal:
            if refusal.told is Reason.UNAUTHENTICATED:  # no session yet: show the form again
                return self._to_login(req, "Session expirée : recommencez.")
            raise
        ins = str(fields.get("ins", "")).strip().upper()
        try:
            answer = self._call(req, None, "POST", "/api/patient/login",
                                {"ins": ins, "password": str(fields.get("password", ""))})
        except Refused as refusal:
            self._flash(web, _message(refusal), error=True)
            return self.login_form(req, 401 if refusal.told is not Reason.LOGIN_LOCKED else 429)
        web.login, web.token = str(answer["login"]), None
        if answer.get("code_sent_via") == "terminal":
            self._flash(web, "Saisissez le code à usage unique affiché sur le terminal de "
                        "votre professionnel de santé.")
        else:
            via = {"outbox": "votre messagerie sécurisée de santé"}.get(
                str(answer.get("code_sent_via")), str(answer.get("code_sent_via")))
            self._flash(web, f"Un code à usage unique vous a été envoyé ({via}).")
        return self._redirect("/patient/code")

    def code_form(self, req: Request, status: int = 200) -> Response:
        """Step 2: the one-time code."""
        found = self._session(req)
        if found is None or found[1].login is None:
            return self._to_login(req, "Saisissez d'abord votre INS et votre mot de passe.")
        web = found[1]
        body = (
            "<p>Saisissez le code à 6 chiffres reçu dans votre messagerie sécurisée de santé "
            "(ou affiché sur le terminal). Il est valable 10 minutes.</p>"
            f'<form method="post" action="/patient/code" class="card">{self._csrf(web)}'
            '<label for="code">Code à usage unique</label>'
            '<input id="code" name="code" inputmode="numeric" autocomplete="one-time-code" '
            'required maxlength="6" pattern="[0-9]{6}">'
            '<button type="submit">Valider</button></form>'
            '<p><a href="/patient/login">Recommencer la connexion</a></p>')
        return self._html(req, Page("Code de connexion", body, status), web)

    def code_submit(self, req: Request) -> Response:
        """The code opens the patient's session; the web session id is renewed."""
        sid, web, fields = self._form(req)
        if web.login is None:
            return self._to_login(req, "Saisissez d'abord votre INS et votre mot de passe.")
        try:
            answer = self._call(req, None, "POST", "/api/patient/login/code",
                                {"login": web.login, "code": str(fields.get("code", "")).strip()})
        except Refused as refusal:
            self._flash(web, _message(refusal), error=True)
            return self.code_form(req, 401)
        self._drop(sid)
        new_sid, new_web = self._new_session()
        new_web.token = str(answer["token"])
        self._flash(new_web, "Vous êtes connecté.")
        return self._redirect("/patient/documents", self._cookie(new_sid))

    def logout(self, req: Request) -> Response:
        """End the API session and the web session."""
        sid, web, _fields = self._form(req)
        if web.token:
            with contextlib.suppress(Refused):
                self._call(req, web, "POST", "/api/patient/logout")
        self._drop(sid)
        new_sid, new_web = self._new_session()
        self._flash(new_web, "Vous êtes déconnecté.")
        return self._redirect("/patient/login", self._cookie(new_sid))

    # -- documents ---------------------------------------------------------------------------------
    def _record(self, req: Request, web: _Web) -> JsonObject:
        return self._call(req, web, "GET", "/api/patient/dmp")

    def documents(self, req: Request) -> Response:
        """The index of the documents the patient sees (never the hidden ones)."""
        _sid, web = self._patient(req)
        record = self._record(req, web)
        listing = self._call(req, web, "GET", "/api/patient/documents")
        docs = listing.get("documents", [])
        writable = record.get("status") == "open"
        rows = []
        for d in docs:
            masked = d["visibility"]["masked_ps"]
            status = STATUSES.get(d["status"], d["status"])
            actions = ""
            if writable:
                actions = self._button(
                    web, f"/patient/documents/{quote(d['id'])}/visibility",
                    "Démasquer" if masked else "Masquer aux professionnels",
                    {"masked_ps": "false" if masked else "true"})
            rows.append(
                f'<tr data-id="{_e(d["id"])}">'
                f'<td><a href="/patient/documents/{_e(quote(d["id"]))}">'
                f'{_e(d["title"])}</a></td><td>{_e(_type_fr(d))}</td>'
                f'<td>{_e(_when_hl7(d["effective_time"]))}</td><td>{_e(_author(d))}</td>'
                f'<td class="status">{_e(status)}'
                f'{"<br><span class=badge>Masqué aux professionnels</span>" if masked else ""}'
                f"</td><td>{actions}</td></tr>")
        table = ("<p>Aucun document.</p>" if not rows else
                 '<table><caption>Documents visibles dans votre DMP</caption><thead><tr>'
                 '<th scope="col">Titre</th><th scope="col">Type</th><th scope="col">Date</th>'
                 '<th scope="col">Auteur</th><th scope="col">État</th>'
                 '<th scope="col">Actions</th></tr></thead>'
                 f"<tbody>{''.join(rows)}</tbody></table>")
        pending = "".join(
            f"<li>Un document vous attend : demandez un rendez-vous à votre médecin, ou il "
            f"sera visible le {_e(_when_iso(p.get('visible_from')))}.</li>"
            for p in listing.get("pending", []))
        body = table + (f'<h2>Documents en attente</h2><ul>{pending}</ul>' if pending else "")
        return self._html(req, Page("Mes documents", body), web, record=record)

    def document(self, req: Request) -> Response:
        """One document: header fields, its text or a PDF download, and the patient's actions."""
        _sid, web = self._patient(req)
        doc_id = req.params["doc"]
        record = self._record(req, web)
        answer = self._call(req, web, "GET", f"/api/patient/documents/{quote(doc_id)}")
        d = answer["document"]
        view = _cda_view(base64.b64decode(answer["cda"]))
        link = f"/patient/documents/{quote(doc_id)}/content"
        if view.text is not None:
            content = f'<pre class="doc-text">{_e(view.text)}</pre>'
        elif view.data is None:
            content = "".join(f"<section><h3>{_e(t)}</h3><p>{_e(x)}</p></section>"
                              for t, x in view.sections)
        else:
            content = (f'<p><a href="{link}" download>Télécharger le PDF</a> '
                       f'({_e(len(view.data))} octets)</p>')
        author = _author(d)
        if view.author and view.author != author and d["author"]["kind"] != "patient":
            author += f" (dans le document : {view.author})"
        masked = d["visibility"]["masked_ps"]
        actions = ""
        if record.get("status") == "open":
            actions = self._button(web, f"/patient/documents/{quote(doc_id)}/visibility",
                                   "Démasquer" if masked else "Masquer aux professionnels",
                                   {"masked_ps": "false" if masked else "true"})
            if d["status"] == "available":
                actions += self._button(
                    web, f"/patient/documents/{quote(doc_id)}/deletion-request",
                    "Supprimer" if d["author"]["kind"] == "patient"
                    else "Demander la suppression à l'auteur", cls="danger")
        body = (
            '<dl class="meta">'
            f"<dt>Titre (CDA)</dt><dd>{_e(view.title)}</dd>"
            f"<dt>Type</dt><dd>{_e(_type_fr(d))}</dd>"
            f"<dt>Auteur</dt><dd>{_e(author)}</dd>"
            f"<dt>Date</dt><dd>{_e(view.date)}</dd>"
            f"<dt>Ajouté le</dt><dd>{_e(_when_iso(d['submitted_at']))}</dd>"
            f'<dt>État</dt><dd class="status">{_e(STATUSES.get(d["status"], d["status"]))}</dd>'
            f"<dt>Visibilité</dt><dd>{'Masqué aux professionnels (sauf votre médecin traitant et l' + chr(39) + 'auteur)' if masked else 'Visible des professionnels autorisés'}</dd>"  # noqa: E501
            "</dl>"
            f'<div class="actions">{actions}</div>'
            f"<h2>Contenu</h2>{content}"
            f'<p><a href="{link}?format=cda" download>Télécharger le document CDA</a> · '
            '<a href="/patient/documents">Retour à mes documents</a></p>')
        return self._html(req, Page(str(d["title"]), body), web, record=record)

    def content(self, req: Request) -> Response:
        """The document's body (PDF or text) or its CDA, as a download."""
        _sid, web = self._patient(req)
        doc_id = req.params["doc"]
        answer = self._call(req, web, "GET", f"/api/patient/documents/{quote(doc_id)}")
        data = base64.b64decode(answer["cda"])
        if req.arg("format") == "cda":
            return Response(200, data, "application/hl7-v3+xml", {
                "Content-Disposition": 'attachment; filename="document-cda.xml"'})
        view = _cda_view(data)
        if view.data is not None and view.media_type == "application/pdf":
            return Response(200, view.data, "application/pdf",
                            {"Content-Disposition": 'attachment; filename="document.pdf"'})
        text = view.text or "\n\n".join(f"{t}\n{x}" for t, x in view.sections)
        return Response(200, text.encode(), "text/plain; charset=utf-8",
                        {"Content-Disposition": 'attachment; filename="document.txt"'})

    def visibility(self, req: Request) -> Response:
        """Mask or unmask a document to professionals (D16)."""
        _sid, web, fields = self._form(req)
        masked = fields.get("masked_ps") == "true"
        doc_id = req.params["doc"]
        try:
            self._call(req, web, "POST", f"/api/patient/documents/{quote(doc_id)}/visibility",
                       {"masked_ps": masked})
            self._flash(web, "Document masqué aux professionnels." if masked
                        else "Document de nouveau visible des professionnels autorisés.")
        except Refused as refusal:
            if refusal.told is Reason.UNAUTHENTICATED:
                raise
            self._flash(web, _message(refusal), error=True)
        return self._redirect(f"/patient/documents/{quote(doc_id)}")

    def deletion(self, req: Request) -> Response:
        """Ask the author to delete a document (D20); the patient's own go at once."""
        _sid, web, _fields = self._form(req)
        doc_id = req.params["doc"]
        try:
            answer = self._call(req, web, "POST",
                                f"/api/patient/documents/{quote(doc_id)}/deletion-request")
        except Refused as refusal:
            if refusal.told is Reason.UNAUTHENTICATED:
                raise
            self._flash(web, _message(refusal), error=True)
            return self._redirect(f"/patient/documents/{quote(doc_id)}")
        if answer["document"]["status"] == "deleted":
            self._flash(web, "Document supprimé.")
            return self._redirect("/patient/documents")
        self._flash(web, "Suppression demandée : l'auteur du document en est informé.")
        return self._redirect(f"/patient/documents/{quote(doc_id)}")

    def add_form(self, req: Request, status: int = 200) -> Response:
        """Add a document (D17): a PDF or a text file."""
        _sid, web = self._patient(req)
        record = self._record(req, web)
        if record.get("status") != "open":
            return self._html(req, Page("Ajouter un document", "<p>Votre DMP est fermé : "
                                        "aucun document ne peut y être ajouté.</p>", status),
                              web, record=record)
        types = sorted(self.service.policy.types.values(), key=lambda t: t.name)
        options = "".join(f'<option value="{_e(t.code)}">{_e(t.name)}</option>' for t in types)
        body = (
            "<p>Ajoutez un document (PDF ou texte) : le DMP l'enregistre comme un document "
            "CDA dont vous êtes l'auteur. Vous pouvez aussi déposer un document CDA déjà "
            "constitué : il est vérifié, et son titre et son type sont alors ceux du "
            "document.</p>"
            '<form method="post" action="/patient/add" enctype="multipart/form-data" '
            f'class="card">{self._csrf(web)}'
            '<label for="title">Titre</label>'
            '<input id="title" name="title" maxlength="200">'
            '<label for="type_code">Type de document</label>'
            f'<select id="type_code" name="type_code" required>{options}</select>'
            '<label for="file">Fichier (PDF, texte ou CDA, '
            f'{MAX_UPLOAD_FILE // (1024 * 1024)} Mo au plus)</label>'
            '<input id="file" name="file" type="file" required '
            'accept="application/pdf,text/plain,.pdf,.txt,.xml">'
            '<button type="submit">Ajouter le document</button></form>')
        return self._html(req, Page("Ajouter un document", body, status), web, record=record)

    def add_submit(self, req: Request) -> Response:
        """Upload -> POST /api/patient/documents (the host wraps it in a CDA)."""
        _sid, web, fields = self._form(req, MAX_UPLOAD_FILE + MAX_FORM)
        upload = fields.get("file")
        try:
            if not isinstance(upload, tuple) or not upload[2]:
                raise Refused(Reason.BAD_REQUEST, "Choisissez un fichier.")
            filename, ctype, data = upload
            if data.startswith(b"%PDF-"):
                media = "application/pdf"
            elif data.lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"<"):
                media = "application/hl7-v3+xml"  # a ready-made CDA, checked by the host
            elif ctype == "text/plain" or str(filename).lower().endswith(".txt"):
                media = "text/plain"
                try:
                    data.decode("utf-8")
                except UnicodeDecodeError:
                    raise Refused(Reason.BAD_REQUEST, "Le texte doit être en UTF-8.") from None
            else:
                raise Refused(Reason.BAD_REQUEST,
                              "Seuls les PDF, les textes et les documents CDA sont acceptés.")
            if media != "application/hl7-v3+xml" and not str(fields.get("title", "")).strip():
                raise Refused(Reason.BAD_REQUEST, "Indiquez un titre.")
            answer = self._call(req, web, "POST", "/api/patient/documents", {
                "title": str(fields.get("title", "")).strip(),
                "type_code": str(fields.get("type_code", "")), "media_type": media,
                "content": base64.b64encode(data).decode()})
        except Refused as refusal:
            if refusal.told is Reason.UNAUTHENTICATED:
                raise
            problems = "; ".join(str(d.get("message", "")) for d in refusal.details)
            self._flash(web, _message(refusal) + (f" ({problems})" if problems else ""),
                        error=True)
            return self.add_form(req, 400)
        self._flash(web, f"Document « {answer['document']['title']} » ajouté.")
        return self._redirect("/patient/documents")

    # -- settings ----------------------------------------------------------------------------------
    def settings_form(self, req: Request) -> Response:
        """Oppositions to emergency access, occupational consent, chosen doctor."""
        _sid, web = self._patient(req)
        record = self._record(req, web)
        s = record["settings"]
        chosen = (s.get("chosen_doctor") or {}).get("national_id") or ""
        doctors = sorted((e for e in self.service.directory.professionals.values()
                          if e.profession == "10"), key=lambda e: e.name)
        options = '<option value="">Aucun</option>' + "".join(
            f'<option value="{_e(e.national_id)}"{" selected" if e.national_id == chosen else ""}>'
            f"{_e(e.name)} ({_e(e.national_id)})</option>" for e in doctors)

        def box(name: str, label: str, hint: str) -> str:
            checked = " checked" if s.get(name) else ""
            return (f'<div class="check"><input type="checkbox" id="{name}" name="{name}" '
                    f'value="true" aria-describedby="{name}-hint"{checked}>'
                    f'<label for="{name}">{label}</label>'
                    f'<p class="hint" id="{name}-hint">{hint}</p></div>')

        disabled = "" if record.get("status") == "open" else " disabled"
        emergencies = "".join(
            f"<li>{_e(_when_iso(t['time']))} : {_e(t['actor']['name'])} "
            f"({_e(MODES.get(t['mode'], t['mode']))}, motif : {_e(t['emergency_reason'])})</li>"
            for t in record.get("emergency_accesses", []))
        body = (
            f'<form method="post" action="/patient/settings" class="card">{self._csrf(web)}'
            f"<fieldset{disabled}><legend>Accès en urgence</legend>"
            + box("oppose_bris_de_glace", "Je m'oppose à l'accès « bris de glace »",
                  "Un professionnel ne pourra pas consulter votre DMP en urgence sans votre "
                  "accord.")
            + box("oppose_centre_15", "Je m'oppose à l'accès par le médecin régulateur du "
                  "centre 15 (SAMU)", "Opposition distincte de la précédente.")
            + "</fieldset>"
            f"<fieldset{disabled}><legend>Médecine du travail</legend>"
            + box("occupational_express_consent", "J'autorise le médecin du travail à "
                  "consulter mon DMP", "Sans cette autorisation expresse, il est refusé.")
            + "</fieldset>"
            f"<fieldset{disabled}><legend>Médecin traitant DMP</legend>"
            '<label for="chosen_doctor">Votre médecin traitant DMP</label>'
            '<p class="hint" id="chosen-hint">Il voit aussi les documents que vous masquez.</p>'
            f'<select id="chosen_doctor" name="chosen_doctor" aria-describedby="chosen-hint">'
            f"{options}</select></fieldset>"
            f'<button type="submit"{disabled}>Enregistrer</button></form>'
            "<h2>Accès en urgence à votre DMP</h2>"
            + (f"<ul>{emergencies}</ul>" if emergencies else "<p>Aucun accès en urgence.</p>"))
        return self._html(req, Page("Paramètres", body), web, record=record)

    def settings_submit(self, req: Request) -> Response:
        """Save all settings at once (an unticked box is false)."""
        _sid, web, fields = self._form(req)
        chosen = str(fields.get("chosen_doctor", "")).strip()
        try:
            self._call(req, web, "POST", "/api/patient/settings", {
                "oppose_bris_de_glace": fields.get("oppose_bris_de_glace") == "true",
                "oppose_centre_15": fields.get("oppose_centre_15") == "true",
                "occupational_express_consent":
                    fields.get("occupational_express_consent") == "true",
                "chosen_doctor": chosen or None})
            self._flash(web, "Paramètres enregistrés.")
        except Refused as refusal:
            if refusal.told is Reason.UNAUTHENTICATED:
                raise
            self._flash(web, _message(refusal), error=True)
        return self._redirect("/patient/settings")

    # -- professionals -----------------------------------------------------------------------------
    def professionals(self, req: Request) -> Response:
        """Blocked professionals, those who accessed the record, and a form to block by id."""
        _sid, web = self._patient(req)
        record = self._record(req, web)
        writable = record.get("status") == "open"
        blocked = {b["national_id"]: b["name"] for b in record.get("blocked", [])}
        traces = self._call(req, web, "GET", "/api/patient/traces",
                            query={"limit": ["1000"]})["traces"]
        seen: dict[str, tuple[str, str]] = {}
        for t in traces:
            actor = t["actor"]
            if actor["kind"] in ("professional", "structure") and actor["id"] \
                    and actor["id"] not in seen:
                seen[actor["id"]] = (actor["name"], actor["structure"]["name"])
        blocked_rows = "".join(
            f"<li>{_e(name or nid)} ({_e(nid)}) "
            + (self._button(web, "/patient/professionals/unblock", "Débloquer",
                            {"national_id": nid}) if writable else "") + "</li>"
            for nid, name in blocked.items())
        seen_rows = "".join(
            f'<tr><td>{_e(name)}</td><td>{_e(nid)}</td><td>{_e(structure)}</td><td>'
            + ("Bloqué" if nid in blocked else self._button(
                web, "/patient/professionals/block", "Bloquer", {"national_id": nid})
               if writable else "")
            + "</td></tr>" for nid, (name, structure) in seen.items())
        body = (
            "<h2>Professionnels bloqués</h2>"
            + (f"<ul>{blocked_rows}</ul>" if blocked_rows else "<p>Aucun.</p>")
            + "<h2>Bloquer un professionnel</h2>"
            + (f'<form method="post" action="/patient/professionals/block" class="card">'
               f'{self._csrf(web)}<label for="national_id">Identifiant national (8 + RPPS, '
               'ou 0 + ADELI)</label><input id="national_id" name="national_id" required '
               'maxlength="12" pattern="8[0-9]{11}|0[0-9]{9}" inputmode="numeric">'
               '<button type="submit">Bloquer</button></form>' if writable else "")
            + "<h2>Professionnels ayant accédé à votre DMP</h2>"
            + ('<table><thead><tr><th scope="col">Nom</th><th scope="col">Identifiant</th>'
               '<th scope="col">Structure</th><th scope="col">Action</th></tr></thead>'
               f"<tbody>{seen_rows}</tbody></table>" if seen_rows else "<p>Aucun.</p>"))
        return self._html(req, Page("Professionnels", body), web, record=record)

    def block(self, req: Request) -> Response:
        """Block a professional (D18)."""
        _sid, web, fields = self._form(req)
        nid = str(fields.get("national_id", "")).strip()
        try:
            self._call(req, web, "POST", "/api/patient/blocked", {"national_id": nid})
            self._flash(web, f"Le professionnel {nid} est bloqué.")
        except Refused as refusal:
            if refusal.told is Reason.UNAUTHENTICATED:
                raise
            self._flash(web, _message(refusal) if refusal.told is not Reason.BAD_REQUEST
                        else "Identifiant national invalide (8 + RPPS, ou 0 + ADELI).",
                        error=True)
        return self._redirect("/patient/professionals")

    def unblock(self, req: Request) -> Response:
        """Lift a block."""
        _sid, web, fields = self._form(req)
        nid = str(fields.get("national_id", "")).strip()
        try:
            self._call(req, web, "DELETE", f"/api/patient/blocked/{quote(nid, safe='')}")
            self._flash(web, f"Le professionnel {nid} est débloqué.")
        except Refused as refusal:
            if refusal.told is Reason.UNAUTHENTICATED:
                raise
            self._flash(web, _message(refusal), error=True)
        return self._redirect("/patient/professionals")

    # -- traces ------------------------------------------------------------------------------------
    def traces(self, req: Request) -> Response:
        """Every access to the record, allowed or refused, newest first (D19)."""
        _sid, web = self._patient(req)
        record = self._record(req, web)
        traces = self._call(req, web, "GET", "/api/patient/traces",
                            query={"limit": ["500"]})["traces"]
        rows = []
        for t in traces:
            actor = t["actor"]
            who = ("Vous" if actor["kind"] == "patient" else
                   f"{actor['name'] or actor['id']}"
                   + (f" - {actor['structure']['name']}" if actor["structure"]["name"] else ""))
            mode = MODES.get(t["mode"], t["mode"])
            if mode and t.get("emergency_reason"):
                mode += f" (motif : {t['emergency_reason']})"
            refused = t["outcome"] != "ok"
            label = REASONS.get(t["reason"])
            outcome = ("Autorisé" if not refused else f"Refusé : {label} ({t['reason']})"
                       if label else f"Refusé ({t['reason']})")
            rows.append(
                f'<tr class="{"refused" if refused else "ok"}"><td>{_e(_when_iso(t["time"]))}</td>'
                f"<td>{_e(who)}</td><td>{_e(ACTIONS.get(t['action'], t['action']))}</td>"
                f"<td>{_e(mode)}</td><td>{_e(outcome)}</td></tr>")
        body = ("<p>Chaque accès à votre DMP, autorisé ou refusé, du plus récent au plus "
                "ancien.</p>"
                '<table><caption>Historique des accès</caption><thead><tr>'
                '<th scope="col">Date</th><th scope="col">Qui</th><th scope="col">Action</th>'
                '<th scope="col">Urgence</th><th scope="col">Résultat</th></tr></thead>'
                f"<tbody>{''.join(rows)}</tbody></table>")
        return self._html(req, Page("Historique des accès", body), web, record=record)

    # -- closing -----------------------------------------------------------------------------------
    def close_form(self, req: Request) -> Response:
        """Closing, with an explicit confirmation."""
        _sid, web = self._patient(req)
        record = self._record(req, web)
        if record.get("status") != "open":
            body = "<p>Votre DMP est déjà fermé.</p>"
        else:
            body = (
                "<p>Fermer votre DMP le rend inaccessible aux professionnels. Il est conservé "
                "10 ans et reste consultable par vous, sans modification. Cette action ne peut "
                "pas être annulée ici.</p>"
                f'<form method="post" action="/patient/close" class="card">{self._csrf(web)}'
                '<div class="check"><input type="checkbox" id="confirm" name="confirm" '
                'value="yes" required><label for="confirm">Je confirme vouloir fermer mon '
                "DMP</label></div>"
                '<button type="submit" class="danger">Fermer définitivement mon DMP</button>'
                "</form>")
        return self._html(req, Page("Fermer mon DMP", body), web, record=record)

    def close_submit(self, req: Request) -> Response:
        """Close the record (only with the box ticked)."""
        _sid, web, fields = self._form(req)
        if fields.get("confirm") != "yes":
            self._flash(web, "Cochez la case de confirmation pour fermer votre DMP.", error=True)
            return self._redirect("/patient/close")
        try:
            self._call(req, web, "POST", "/api/patient/close", {"confirm": True})
            self._flash(web, "Votre DMP est fermé.")
        except Refused as refusal:
            if refusal.told is Reason.UNAUTHENTICATED:
                raise
            self._flash(web, _message(refusal), error=True)
        return self._redirect("/patient/documents")


def register(router: Router, service: DmpService) -> None:
    """Add the patient pages (`/patient/...`) and static files (`/static/...`)."""
    router.add("GET", "/static/{path:path}", _static)
    PatientPages(service).register(router)
