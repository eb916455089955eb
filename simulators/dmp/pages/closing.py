"""The patient closes the record: professionals lose access, the patient keeps reading it."""

from __future__ import annotations

from bifente.simulators.dmp.codes import Reason, Refused
from bifente.simulators.dmp.pages.context import PageContext, Route
from bifente.simulators.dmp.pages.labels import message
from bifente.simulators.dmp.pages.layout import Page, csrf_field, redirect, render
from bifente.simulators.dmp.server import Request, Response

__all__ = ["ClosingPages"]


class ClosingPages:
    """Closing the record, with an explicit confirmation."""

    def __init__(self, ctx: PageContext) -> None:
        self.ctx = ctx

    def routes(self) -> list[Route]:
        """The pages' (method, pattern, handler)."""
        return [
            ("GET", "/patient/close", self.close_form),
            ("POST", "/patient/close", self.close_submit),
        ]

    def close_form(self, req: Request) -> Response:
        """Closing, with an explicit confirmation."""
        _sid, web = self.ctx.patient(req)
        record = self.ctx.record(web)
        if not record.open:
            body = "<p>Votre DMP est déjà fermé.</p>"
        else:
            body = (
                "<p>Fermer votre DMP le rend inaccessible aux professionnels. Il est conservé "
                "10 ans et reste consultable par vous, sans modification. Cette action ne peut "
                "pas être annulée ici.</p>"
                f'<form method="post" action="/patient/close" class="card">{csrf_field(web)}'
                '<div class="check"><input type="checkbox" id="confirm" name="confirm" '
                'value="yes" required><label for="confirm">Je confirme vouloir fermer mon '
                "DMP</label></div>"
                '<button type="submit" class="danger">Fermer définitivement mon DMP</button>'
                "</form>")
        return render(req, Page("Fermer mon DMP", body), web, record=record)

    def close_submit(self, req: Request) -> Response:
        """Close the record (only with the box ticked)."""
        _sid, web, fields = self.ctx.sessions.form(req)
        if fields.get("confirm") != "yes":
            web.say("Cochez la case de confirmation pour fermer votre DMP.", error=True)
            return redirect("/patient/close")
        try:
            self.ctx.patients.close(web.token, {"confirm": True})
            web.say("Votre DMP est fermé.")
        except Refused as refusal:
            if refusal.told is Reason.UNAUTHENTICATED:
                raise
            web.say(message(refusal), error=True)
        return redirect("/patient/documents")
