"""Every access to the patient's record, allowed or refused, newest first (D19)."""

from __future__ import annotations

from bifente.simulators.dmp.pages.context import PageContext, Route
from bifente.simulators.dmp.pages.display import e, when
from bifente.simulators.dmp.pages.labels import ACTIONS, MODES, REASONS
from bifente.simulators.dmp.pages.layout import Page, render
from bifente.simulators.dmp.server import Request, Response

__all__ = ["TracePages"]


class TracePages:
    """The record's traces, newest first."""

    def __init__(self, ctx: PageContext) -> None:
        self.ctx = ctx

    def routes(self) -> list[Route]:
        """The pages' (method, pattern, handler)."""
        return [
            ("GET", "/patient/traces", self.traces),
        ]

    def traces(self, req: Request) -> Response:
        """Every access to the record, allowed or refused, newest first (D19)."""
        _sid, web = self.ctx.patient(req)
        record = self.ctx.record(web)
        rows = []
        for t in self.ctx.patients.traces(web.token, limit=500):
            who = ("Vous" if t.actor_kind == "patient" else
                   f"{t.actor_name or t.actor_id}"
                   + (f" - {t.structure_name}" if t.structure_name else ""))
            mode = MODES.get(t.mode, t.mode)
            if mode and t.emergency_reason:
                mode += f" (motif : {t.emergency_reason})"
            refused = t.outcome != "ok"
            label = REASONS.get(t.reason)
            outcome = ("Autorisé" if not refused else f"Refusé : {label} ({t.reason})"
                       if label else f"Refusé ({t.reason})")
            rows.append(
                f'<tr class="{"refused" if refused else "ok"}"><td>{e(when(t.time))}</td>'
                f"<td>{e(who)}</td><td>{e(ACTIONS.get(t.action, t.action))}</td>"
                f"<td>{e(mode)}</td><td>{e(outcome)}</td></tr>")
        body = ("<p>Chaque accès à votre DMP, autorisé ou refusé, du plus récent au plus "
                "ancien.</p>"
                '<table><caption>Historique des accès</caption><thead><tr>'
                '<th scope="col">Date</th><th scope="col">Qui</th><th scope="col">Action</th>'
                '<th scope="col">Urgence</th><th scope="col">Résultat</th></tr></thead>'
                f"<tbody>{''.join(rows)}</tbody></table>")
        return render(req, Page("Historique des accès", body), web, record=record)
