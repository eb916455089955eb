"""The patient pages' HTML: the common layout (menu, messages, accessible tables), forms'
buttons and redirects, and the security headers every page is sent with (a strict
Content-Security-Policy with no script at all, no framing, no referrer)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from bifente.simulators.dmp.pages.display import e, when
from bifente.simulators.dmp.pages.session import WebSession
from bifente.simulators.dmp.patient import PatientRecord
from bifente.simulators.dmp.server import Request, Response

__all__ = ["SECURITY_HEADERS", "Page", "button", "csrf_field", "labelled_tables", "redirect",
           "render"]

SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'self'; img-src 'self'; "
                               "form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


@dataclass
class Page:
    """What a page handler produces before layout."""

    title: str
    body: str
    status: int = 200


_TABLE_RE = re.compile(r"<table>(.*?)</table>", re.S)
_TH_RE = re.compile(r'<th scope="col">(.*?)</th>', re.S)


def labelled_tables(html: str) -> str:
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


def render(req: Request, page: Page, web: WebSession | None = None,
           cookie: str | None = None, record: PatientRecord | None = None) -> Response:
    """The page in the common layout: the menu, the pending message, the closed-record note."""
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
               f'{csrf_field(web)}<button type="submit">Se déconnecter</button></form></nav>')
    flash = ""
    if web is not None and web.flash:
        role, cls = ("alert", "error") if web.flash_error else ("status", "ok")
        flash = f'<p role="{role}" class="{cls}">{e(web.flash)}</p>'
        web.flash = ""
    closed = ""
    if record is not None and record.status == "closed":
        closed = (f'<p class="closed" role="note">Votre DMP est fermé depuis le '
                  f'{e(when(record.closed_at))} : il reste consultable, '
                  "sans modification.</p>")
    html = (
        '<!DOCTYPE html>\n<html lang="fr"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{e(page.title)} - Mon DMP</title>"
        '<link rel="stylesheet" href="/static/patient.css"></head><body>'
        '<header><p class="brand">Mon DMP <span class="test">service de test</span></p>'
        f"{nav}</header><main>{flash}{closed}<h1>{e(page.title)}</h1>"
        f"{labelled_tables(page.body)}</main>"
        "<footer><p>Hôte DMP de référence bifente (TEST) - données fictives.</p></footer>"
        "</body></html>")
    headers = {"Set-Cookie": cookie} if cookie else {}
    return Response(page.status, html.encode(), "text/html; charset=utf-8", headers)


def csrf_field(web: WebSession) -> str:
    """The hidden field every POST form carries."""
    return f'<input type="hidden" name="csrf" value="{e(web.csrf)}">'


def button(web: WebSession, action: str, label: str, fields: dict[str, str] | None = None,
           cls: str = "") -> str:
    """A one-button POST form (with its CSRF field and these hidden fields)."""
    hidden = "".join(f'<input type="hidden" name="{e(k)}" value="{e(v)}">'
                     for k, v in (fields or {}).items())
    return (f'<form method="post" action="{e(action)}" class="inline">{csrf_field(web)}'
            f'{hidden}<button type="submit" class="{cls}">{e(label)}</button></form>')


def redirect(location: str, cookie: str | None = None) -> Response:
    """303 See Other (POST then redirect), setting the cookie when given."""
    headers = {"Location": location}
    if cookie:
        headers["Set-Cookie"] = cookie
    return Response(303, b"", "text/html; charset=utf-8", headers)
