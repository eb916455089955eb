"""The patient's documents: the index (never the hidden ones), one document with its text
or PDF, its download, masking it to professionals (D16) and asking for its deletion (D20)."""

from __future__ import annotations

from urllib.parse import quote

from bifente.simulators.dmp.codes import Reason, Refused
from bifente.simulators.dmp.pages.cda_view import read_cda
from bifente.simulators.dmp.pages.context import PageContext, Route
from bifente.simulators.dmp.pages.display import author_of, e, type_of, when, when_hl7
from bifente.simulators.dmp.pages.labels import STATUSES, message
from bifente.simulators.dmp.pages.layout import Page, button, redirect, render
from bifente.simulators.dmp.server import Request, Response

__all__ = ["DocumentPages"]


class DocumentPages:
    """The index, one document, its download, masking and deletion requests."""

    def __init__(self, ctx: PageContext) -> None:
        self.ctx = ctx

    def routes(self) -> list[Route]:
        """The pages' (method, pattern, handler)."""
        return [
            ("GET", "/patient/documents", self.documents),
            ("GET", "/patient/documents/{doc}", self.document),
            ("GET", "/patient/documents/{doc}/content", self.content),
            ("POST", "/patient/documents/{doc}/visibility", self.visibility),
            ("POST", "/patient/documents/{doc}/deletion-request", self.deletion),
        ]

    def documents(self, req: Request) -> Response:
        """The index of the documents the patient sees (never the hidden ones)."""
        _sid, web = self.ctx.patient(req)
        record = self.ctx.record(web)
        listing = self.ctx.patients.documents(web.token)
        types = self.ctx.patients.document_types()
        rows = []
        for d in listing.documents:
            masked = d.masked_ps
            status = STATUSES.get(d.status, d.status)
            actions = ""
            if record.open:
                actions = button(
                    web, f"/patient/documents/{quote(d.id)}/visibility",
                    "Démasquer" if masked else "Masquer aux professionnels",
                    {"masked_ps": "false" if masked else "true"})
            rows.append(
                f'<tr data-id="{e(d.id)}">'
                f'<td><a href="/patient/documents/{e(quote(d.id))}">'
                f"{e(d.title)}</a></td><td>{e(type_of(d, types))}</td>"
                f"<td>{e(when_hl7(d.effective_time))}</td><td>{e(author_of(d))}</td>"
                f'<td class="status">{e(status)}'
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
            f"sera visible le {e(when(p.visible_from))}.</li>"
            for p in listing.pending)
        body = table + (f'<h2>Documents en attente</h2><ul>{pending}</ul>' if pending else "")
        return render(req, Page("Mes documents", body), web, record=record)

    def document(self, req: Request) -> Response:
        """One document: header fields, its text or a PDF download, and the patient's actions."""
        _sid, web = self.ctx.patient(req)
        doc_id = req.params["doc"]
        record = self.ctx.record(web)
        found = self.ctx.patients.document(web.token, doc_id)
        d = found.document
        view = read_cda(found.cda)
        link = f"/patient/documents/{quote(doc_id)}/content"
        if view.text is not None:
            content = f'<pre class="doc-text">{e(view.text)}</pre>'
        elif view.data is None:
            content = "".join(f"<section><h3>{e(t)}</h3><p>{e(x)}</p></section>"
                              for t, x in view.sections)
        else:
            content = (f'<p><a href="{link}" download>Télécharger le PDF</a> '
                       f'({e(len(view.data))} octets)</p>')
        author = author_of(d)
        if view.author and view.author != author and d.author_kind != "patient":
            author += f" (dans le document : {view.author})"
        masked = d.masked_ps
        actions = ""
        if record.open:
            actions = button(web, f"/patient/documents/{quote(doc_id)}/visibility",
                             "Démasquer" if masked else "Masquer aux professionnels",
                             {"masked_ps": "false" if masked else "true"})
            if d.status == "available":
                actions += button(
                    web, f"/patient/documents/{quote(doc_id)}/deletion-request",
                    "Supprimer" if d.author_kind == "patient"
                    else "Demander la suppression à l'auteur", cls="danger")
        body = (
            '<dl class="meta">'
            f"<dt>Titre (CDA)</dt><dd>{e(view.title)}</dd>"
            f"<dt>Type</dt><dd>{e(type_of(d, self.ctx.patients.document_types()))}</dd>"
            f"<dt>Auteur</dt><dd>{e(author)}</dd>"
            f"<dt>Date</dt><dd>{e(view.date)}</dd>"
            f"<dt>Ajouté le</dt><dd>{e(when(d.submitted_at))}</dd>"
            f'<dt>État</dt><dd class="status">{e(STATUSES.get(d.status, d.status))}</dd>'
            f"<dt>Visibilité</dt><dd>{'Masqué aux professionnels (sauf votre médecin traitant et l' + chr(39) + 'auteur)' if masked else 'Visible des professionnels autorisés'}</dd>"  # noqa: E501
            "</dl>"
            f'<div class="actions">{actions}</div>'
            f"<h2>Contenu</h2>{content}"
            f'<p><a href="{link}?format=cda" download>Télécharger le document CDA</a> · '
            '<a href="/patient/documents">Retour à mes documents</a></p>')
        return render(req, Page(d.title, body), web, record=record)

    def content(self, req: Request) -> Response:
        """The document's body (PDF or text) or its CDA, as a download."""
        _sid, web = self.ctx.patient(req)
        doc_id = req.params["doc"]
        data = self.ctx.patients.document(web.token, doc_id).cda
        if req.arg("format") == "cda":
            return Response(200, data, "application/hl7-v3+xml", {
                "Content-Disposition": 'attachment; filename="document-cda.xml"'})
        view = read_cda(data)
        if view.data is not None and view.media_type == "application/pdf":
            return Response(200, view.data, "application/pdf",
                            {"Content-Disposition": 'attachment; filename="document.pdf"'})
        text = view.text or "\n\n".join(f"{t}\n{x}" for t, x in view.sections)
        return Response(200, text.encode(), "text/plain; charset=utf-8",
                        {"Content-Disposition": 'attachment; filename="document.txt"'})

    def visibility(self, req: Request) -> Response:
        """Mask or unmask a document to professionals (D16)."""
        _sid, web, fields = self.ctx.sessions.form(req)
        masked = fields.get("masked_ps") == "true"
        doc_id = req.params["doc"]
        try:
            self.ctx.patients.set_visibility(web.token, doc_id, {"masked_ps": masked})
            web.say("Document masqué aux professionnels." if masked
                    else "Document de nouveau visible des professionnels autorisés.")
        except Refused as refusal:
            if refusal.told is Reason.UNAUTHENTICATED:
                raise
            web.say(message(refusal), error=True)
        return redirect(f"/patient/documents/{quote(doc_id)}")

    def deletion(self, req: Request) -> Response:
        """Ask the author to delete a document (D20); the patient's own go at once."""
        _sid, web, _fields = self.ctx.sessions.form(req)
        doc_id = req.params["doc"]
        try:
            doc = self.ctx.patients.request_deletion(web.token, doc_id)
        except Refused as refusal:
            if refusal.told is Reason.UNAUTHENTICATED:
                raise
            web.say(message(refusal), error=True)
            return redirect(f"/patient/documents/{quote(doc_id)}")
        if doc.status == "deleted":
            web.say("Document supprimé.")
            return redirect("/patient/documents")
        web.say("Suppression demandée : l'auteur du document en est informé.")
        return redirect(f"/patient/documents/{quote(doc_id)}")
