"""The patient adds a document (D17): a PDF or a text file the host wraps in a CDA of which
the patient is the author, or a ready-made CDA the host checks."""

from __future__ import annotations

from bifente.simulators.dmp.codes import Reason, Refused
from bifente.simulators.dmp.pages.context import PageContext, Route
from bifente.simulators.dmp.pages.display import e
from bifente.simulators.dmp.pages.forms import Upload
from bifente.simulators.dmp.pages.labels import message
from bifente.simulators.dmp.pages.layout import Page, csrf_field, redirect, render
from bifente.simulators.dmp.pages.session import MAX_FORM
from bifente.simulators.dmp.patient import MAX_PATIENT_UPLOAD
from bifente.simulators.dmp.server import Request, Response

__all__ = ["MAX_UPLOAD_FILE", "UploadPages"]

MAX_UPLOAD_FILE = (MAX_PATIENT_UPLOAD // 4) * 3 - 64 * 1024  # its base64 fits the upload cap


class UploadPages:
    """The form to add a document, and its upload."""

    def __init__(self, ctx: PageContext) -> None:
        self.ctx = ctx

    def routes(self) -> list[Route]:
        """The pages' (method, pattern, handler)."""
        return [
            ("GET", "/patient/add", self.add_form),
            ("POST", "/patient/add", self.add_submit),
        ]

    def add_form(self, req: Request, status: int = 200) -> Response:
        """Add a document (D17): a PDF or a text file."""
        _sid, web = self.ctx.patient(req)
        record = self.ctx.record(web)
        if not record.open:
            return render(req, Page("Ajouter un document", "<p>Votre DMP est fermé : "
                                    "aucun document ne peut y être ajouté.</p>", status),
                          web, record=record)
        types = sorted(self.ctx.patients.document_types().values(), key=lambda t: t.name)
        options = "".join(f'<option value="{e(t.code)}">{e(t.name)}</option>' for t in types)
        body = (
            "<p>Ajoutez un document (PDF ou texte) : le DMP l'enregistre comme un document "
            "CDA dont vous êtes l'auteur. Vous pouvez aussi déposer un document CDA déjà "
            "constitué : il est vérifié, et son titre et son type sont alors ceux du "
            "document.</p>"
            '<form method="post" action="/patient/add" enctype="multipart/form-data" '
            f'class="card">{csrf_field(web)}'
            '<label for="title">Titre</label>'
            '<input id="title" name="title" maxlength="200">'
            '<label for="type_code">Type de document</label>'
            f'<select id="type_code" name="type_code" required>{options}</select>'
            '<label for="file">Fichier (PDF, texte ou CDA, '
            f'{MAX_UPLOAD_FILE // (1024 * 1024)} Mo au plus)</label>'
            '<input id="file" name="file" type="file" required '
            'accept="application/pdf,text/plain,.pdf,.txt,.xml">'
            '<button type="submit">Ajouter le document</button></form>')
        return render(req, Page("Ajouter un document", body, status), web, record=record)

    def add_submit(self, req: Request) -> Response:
        """Upload: the host wraps a PDF or a text in a CDA, or checks a CDA sent as is."""
        _sid, web, fields = self.ctx.sessions.form(req, MAX_UPLOAD_FILE + MAX_FORM)
        upload = fields.get("file")
        try:
            if not isinstance(upload, Upload) or not upload.data:
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
            doc = self.ctx.patients.add_document(web.token, {
                "title": str(fields.get("title", "")).strip(),
                "type_code": str(fields.get("type_code", "")), "media_type": media,
                "content": data})
        except Refused as refusal:
            if refusal.told is Reason.UNAUTHENTICATED:
                raise
            problems = "; ".join(str(d.get("message", "")) for d in refusal.details)
            web.say(message(refusal) + (f" ({problems})" if problems else ""), error=True)
            return self.add_form(req, 400)
        web.say(f"Document « {doc.title} » ajouté.")
        return redirect("/patient/documents")
