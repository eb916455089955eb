"""The patient's settings: oppositions to emergency access (bris de glace, centre 15), the
occupational doctor's express consent, the chosen doctor; and the emergency accesses so far."""

from __future__ import annotations

from bifente.simulators.dmp.codes import Reason, Refused
from bifente.simulators.dmp.pages.context import PageContext, Route
from bifente.simulators.dmp.pages.display import e, when
from bifente.simulators.dmp.pages.labels import MODES, message
from bifente.simulators.dmp.pages.layout import Page, csrf_field, redirect, render
from bifente.simulators.dmp.server import Request, Response

__all__ = ["SettingsPages"]


class SettingsPages:
    """The patient's settings, saved all at once."""

    def __init__(self, ctx: PageContext) -> None:
        self.ctx = ctx

    def routes(self) -> list[Route]:
        """The pages' (method, pattern, handler)."""
        return [
            ("GET", "/patient/settings", self.settings_form),
            ("POST", "/patient/settings", self.settings_submit),
        ]

    def settings_form(self, req: Request) -> Response:
        """Oppositions to emergency access, occupational consent, chosen doctor."""
        _sid, web = self.ctx.patient(req)
        record = self.ctx.record(web)
        ticked = {"oppose_bris_de_glace": record.oppose_bris_de_glace,
                  "oppose_centre_15": record.oppose_centre_15,
                  "occupational_express_consent": record.occupational_consent}
        chosen = record.chosen_doctor.national_id if record.chosen_doctor else ""
        options = '<option value="">Aucun</option>' + "".join(
            f'<option value="{e(p.national_id)}"{" selected" if p.national_id == chosen else ""}>'
            f"{e(p.name)} ({e(p.national_id)})</option>" for p in self.ctx.patients.doctors())

        def box(name: str, label: str, hint: str) -> str:
            checked = " checked" if ticked[name] else ""
            return (f'<div class="check"><input type="checkbox" id="{name}" name="{name}" '
                    f'value="true" aria-describedby="{name}-hint"{checked}>'
                    f'<label for="{name}">{label}</label>'
                    f'<p class="hint" id="{name}-hint">{hint}</p></div>')

        disabled = "" if record.open else " disabled"
        emergencies = "".join(
            f"<li>{e(when(t.time))} : {e(t.actor_name)} "
            f"({e(MODES.get(t.mode, t.mode))}, motif : {e(t.emergency_reason)})</li>"
            for t in record.emergency_accesses)
        body = (
            f'<form method="post" action="/patient/settings" class="card">{csrf_field(web)}'
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
        return render(req, Page("Paramètres", body), web, record=record)

    def settings_submit(self, req: Request) -> Response:
        """Save all settings at once (an unticked box is false)."""
        _sid, web, fields = self.ctx.sessions.form(req)
        chosen = str(fields.get("chosen_doctor", "")).strip()
        try:
            self.ctx.patients.change_settings(web.token, {
                "oppose_bris_de_glace": fields.get("oppose_bris_de_glace") == "true",
                "oppose_centre_15": fields.get("oppose_centre_15") == "true",
                "occupational_express_consent":
                    fields.get("occupational_express_consent") == "true",
                "chosen_doctor": chosen or None})
            web.say("Paramètres enregistrés.")
        except Refused as refusal:
            if refusal.told is Reason.UNAUTHENTICATED:
                raise
            web.say(message(refusal), error=True)
        return redirect("/patient/settings")
