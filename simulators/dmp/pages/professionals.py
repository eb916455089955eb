"""The professionals the patient blocks (D18), and those who accessed the record (from its
traces), each with a button to block them."""

from __future__ import annotations

from bifente.simulators.dmp.codes import Reason, Refused
from bifente.simulators.dmp.pages.context import PageContext, Route
from bifente.simulators.dmp.pages.display import e
from bifente.simulators.dmp.pages.labels import message
from bifente.simulators.dmp.pages.layout import Page, button, csrf_field, redirect, render
from bifente.simulators.dmp.server import Request, Response

__all__ = ["ProfessionalPages"]


class ProfessionalPages:
    """Blocked professionals, those who accessed the record, blocking and unblocking."""

    def __init__(self, ctx: PageContext) -> None:
        self.ctx = ctx

    def routes(self) -> list[Route]:
        """The pages' (method, pattern, handler)."""
        return [
            ("GET", "/patient/professionals", self.professionals),
            ("POST", "/patient/professionals/block", self.block),
            ("POST", "/patient/professionals/unblock", self.unblock),
        ]

    def professionals(self, req: Request) -> Response:
        """Blocked professionals, those who accessed the record, and a form to block by id."""
        _sid, web = self.ctx.patient(req)
        record = self.ctx.record(web)
        writable = record.open
        blocked = {b.national_id: b.name for b in record.blocked}
        seen: dict[str, tuple[str, str]] = {}
        for t in self.ctx.patients.traces(web.token, limit=1000):
            if t.actor_kind in ("professional", "structure") and t.actor_id \
                    and t.actor_id not in seen:
                seen[t.actor_id] = (t.actor_name, t.structure_name)
        blocked_rows = "".join(
            f"<li>{e(name or nid)} ({e(nid)}) "
            + (button(web, "/patient/professionals/unblock", "Débloquer",
                      {"national_id": nid}) if writable else "") + "</li>"
            for nid, name in blocked.items())
        seen_rows = "".join(
            f'<tr><td>{e(name)}</td><td>{e(nid)}</td><td>{e(structure)}</td><td>'
            + ("Bloqué" if nid in blocked else button(
                web, "/patient/professionals/block", "Bloquer", {"national_id": nid})
               if writable else "")
            + "</td></tr>" for nid, (name, structure) in seen.items())
        body = (
            "<h2>Professionnels bloqués</h2>"
            + (f"<ul>{blocked_rows}</ul>" if blocked_rows else "<p>Aucun.</p>")
            + "<h2>Bloquer un professionnel</h2>"
            + (f'<form method="post" action="/patient/professionals/block" class="card">'
               f'{csrf_field(web)}<label for="national_id">Identifiant national (8 + RPPS, '
               'ou 0 + ADELI)</label><input id="national_id" name="national_id" required '
               'maxlength="12" pattern="8[0-9]{11}|0[0-9]{9}" inputmode="numeric">'
               '<button type="submit">Bloquer</button></form>' if writable else "")
            + "<h2>Professionnels ayant accédé à votre DMP</h2>"
            + ('<table><thead><tr><th scope="col">Nom</th><th scope="col">Identifiant</th>'
               '<th scope="col">Structure</th><th scope="col">Action</th></tr></thead>'
               f"<tbody>{seen_rows}</tbody></table>" if seen_rows else "<p>Aucun.</p>"))
        return render(req, Page("Professionnels", body), web, record=record)

    def block(self, req: Request) -> Response:
        """Block a professional (D18)."""
        _sid, web, fields = self.ctx.sessions.form(req)
        nid = str(fields.get("national_id", "")).strip()
        try:
            self.ctx.patients.block(web.token, {"national_id": nid})
            web.say(f"Le professionnel {nid} est bloqué.")
        except Refused as refusal:
            if refusal.told is Reason.UNAUTHENTICATED:
                raise
            web.say(message(refusal) if refusal.told is not Reason.BAD_REQUEST
                    else "Identifiant national invalide (8 + RPPS, ou 0 + ADELI).",
                    error=True)
        return redirect("/patient/professionals")

    def unblock(self, req: Request) -> Response:
        """Lift a block."""
        _sid, web, fields = self.ctx.sessions.form(req)
        nid = str(fields.get("national_id", "")).strip()
        try:
            self.ctx.patients.unblock(web.token, nid)
            web.say(f"Le professionnel {nid} est débloqué.")
        except Refused as refusal:
            if refusal.told is Reason.UNAUTHENTICATED:
                raise
            web.say(message(refusal), error=True)
        return redirect("/patient/professionals")
