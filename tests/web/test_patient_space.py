"""D21: the patient's web space, clicked through in headless Chromium (docs/patient-space.md).

Each test is a patient of its own, created and fed by professionals through the host's API
(simulated CPS cards, signed consent), then driven through the pages with real fills and
clicks; what the pages did is checked against the host's API as professionals see it.
Screenshots: `artifacts/web/<test step>.png`.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from bifente.simulators.dmp.testing import DmpWorld, national_id

# The module-scoped world's loop starts its executor threads (asyncio_N) on first use;
# they end with the module's fixture, not with the test that happened to start them.
pytestmark = pytest.mark.leaks("module-scoped fixture's executor threads")

MINI_PDF = (b"%PDF-1.4\n1 0 obj<</Type/Catalog/Pages 2 0 R>>endobj\n"
            b"2 0 obj<</Type/Pages/Kids[3 0 R]/Count 1>>endobj\n"
            b"3 0 obj<</Type/Page/Parent 2 0 R/MediaBox[0 0 200 200]>>endobj\n"
            b"trailer<</Root 1 0 R>>\n%%EOF\n")


def snap(page: Any, shots: Path, name: str) -> None:
    page.screenshot(path=str(shots / f"{name}.png"), full_page=True)


def feed_text(world: DmpWorld, ins: str, title: str, text: str, *, profile: str = "gp",
              type_code: str = "11502-2", query: str = "") -> str:
    data = world.cda(ins, type_code, author=profile, title=title, text=text,
                     media_type="text/plain")
    r = world.feed(ins, profile, type_code, data=data, query=query)
    assert r.status == 201, r.body
    return str(r.json()["document"]["id"])  # type: ignore[index]


def code_for(world: DmpWorld, ins: str) -> str:
    r = world.client.get(f"/api/test/last-code?ins={ins}")
    assert r.status == 200, r.body
    return str(r.json()["code"])


def login(page: Any, world: DmpWorld, ins: str, password: str) -> None:
    page.goto(world.host.url + "/patient/")
    page.get_by_label("INS").fill(ins)
    page.get_by_label("Mot de passe").fill(password)
    page.get_by_role("button", name="Continuer").click()
    page.get_by_role("heading", name="Code de connexion").wait_for()
    page.get_by_label("Code à usage unique").fill(code_for(world, ins))
    page.get_by_role("button", name="Valider").click()
    page.get_by_role("heading", name="Mes documents").wait_for()


def nav(page: Any, name: str) -> None:
    page.get_by_role("navigation").get_by_role("link", name=name).click()


def test_login_refusals_index_and_document(page: Any, web_world: DmpWorld, shots: Path) -> None:
    world = web_world
    ins, password = world.create()
    feed_text(world, ins, "Bilan sanguin", "Hémoglobine 14,2 g/dL\nFerritine normale")
    feed_text(world, ins, "Résultat à annoncer", "Hidden until announced",
              query="?invisible_patient=true")

    page.goto(world.host.url + "/patient/")
    page.get_by_role("heading", name="Connexion à mon DMP").wait_for()
    snap(page, shots, "01-login")
    page.get_by_label("INS").fill(ins)
    page.get_by_label("Mot de passe").fill("WRONG-PASS-000")
    page.get_by_role("button", name="Continuer").click()
    assert page.get_by_role("alert").inner_text() == "INS ou mot de passe incorrect."
    snap(page, shots, "02-login-wrong-password")

    page.get_by_label("INS").fill(ins)
    page.get_by_label("Mot de passe").fill(password)
    page.get_by_role("button", name="Continuer").click()
    page.get_by_role("heading", name="Code de connexion").wait_for()
    assert "code à usage unique vous a été envoyé" in page.get_by_role("status").inner_text()
    code = code_for(world, ins)
    page.get_by_label("Code à usage unique").fill("000000" if code != "000000" else "111111")
    page.get_by_role("button", name="Valider").click()
    assert "Code incorrect" in page.get_by_role("alert").inner_text()
    snap(page, shots, "03-code-wrong")
    page.get_by_label("Code à usage unique").fill(code)
    page.get_by_role("button", name="Valider").click()
    page.get_by_role("heading", name="Mes documents").wait_for()
    assert page.get_by_role("status").inner_text() == "Vous êtes connecté."
    snap(page, shots, "04-index")

    table = page.get_by_role("table")
    assert table.get_by_role("link", name="Bilan sanguin").count() == 1
    assert "Résultat à annoncer" not in page.content()  # hidden from the patient (D8)
    assert "Claire MARTIN" in table.inner_text()  # the author, from the directory

    table.get_by_role("link", name="Bilan sanguin").click()
    page.get_by_role("heading", name="Bilan sanguin").wait_for()
    text = page.locator("main").inner_text()
    assert "Hémoglobine 14,2 g/dL" in text
    assert re.search(r"Titre \(CDA\)\s+Bilan sanguin\n", text)
    assert re.search(r"Auteur\s+Claire MARTIN", text)
    assert re.search(r"Date\s+\d\d/\d\d/\d{4}", text)
    assert "Auteur" in text
    snap(page, shots, "05-document")

    page.get_by_role("button", name="Se déconnecter").click()
    page.get_by_role("heading", name="Connexion à mon DMP").wait_for()
    page.goto(world.host.url + "/patient/documents")
    page.get_by_role("heading", name="Connexion à mon DMP").wait_for()  # the session is gone


def test_mask_then_unmask(page: Any, web_world: DmpWorld, shots: Path) -> None:
    world = web_world
    ins, password = world.create()
    doc = feed_text(world, ins, "Compte rendu psychiatrique", "Texte sensible")
    assert doc in world.found(ins, "emergency")  # another doctor sees it
    login(page, world, ins, password)

    page.get_by_role("link", name="Compte rendu psychiatrique").click()
    page.get_by_role("button", name="Masquer aux professionnels").click()
    assert page.get_by_role("status").inner_text() == "Document masqué aux professionnels."
    assert "Masqué aux professionnels" in page.locator("dl.meta").inner_text()
    snap(page, shots, "06-document-masked")
    assert doc not in world.found(ins, "emergency")  # D16
    assert doc in world.found(ins, "gp")  # the author still sees it

    nav(page, "Mes documents")
    row = page.locator(f'tr[data-id="{doc}"]')
    assert "Masqué aux professionnels" in row.inner_text()
    row.get_by_role("button", name="Démasquer").click()
    assert "de nouveau visible" in page.get_by_role("status").inner_text()
    snap(page, shots, "07-document-unmasked")
    assert doc in world.found(ins, "emergency")


def test_add_a_pdf(page: Any, web_world: DmpWorld, shots: Path) -> None:
    world = web_world
    ins, password = world.create()
    login(page, world, ins, password)

    nav(page, "Ajouter")
    page.get_by_role("heading", name="Ajouter un document").wait_for()
    page.get_by_label("Titre").fill("Ordonnance de lunettes")
    options = page.get_by_label("Type de document").locator("option")
    page.get_by_label("Type de document").select_option(options.first.get_attribute("value"))
    page.get_by_label(re.compile("Fichier")).set_input_files(
        {"name": "ordonnance.pdf", "mimeType": "application/pdf", "buffer": MINI_PDF})
    snap(page, shots, "08-add-form")
    page.get_by_role("button", name="Ajouter le document").click()
    page.get_by_role("heading", name="Mes documents").wait_for()
    assert "Ordonnance de lunettes" in page.get_by_role("status").inner_text()
    row = page.get_by_role("row").filter(has_text="Ordonnance de lunettes")
    assert "Vous" in row.inner_text()
    snap(page, shots, "09-index-with-added")

    row.get_by_role("link").click()
    with page.expect_download() as download:
        page.get_by_role("link", name="Télécharger le PDF").click()
    assert Path(download.value.path()).read_bytes() == MINI_PDF
    # the professional's side: a CDA authored by the patient, with the PDF inside
    r = world.find(ins, "gp")
    docs = [d for d in r.json()["documents"] if d["title"] == "Ordonnance de lunettes"]
    assert len(docs) == 1 and docs[0]["author"]["kind"] == "patient"
    assert docs[0]["media_type"] == "application/pdf"

    # a ready-made CDA: checked by the host, its own title and type
    nav(page, "Ajouter")
    cda = world.cda(ins, "11502-2", author="gp", title="Analyse apportée", text="Glycémie",
                    media_type="text/plain")
    page.get_by_label(re.compile("Fichier")).set_input_files(
        {"name": "analyse.xml", "mimeType": "text/xml", "buffer": cda})
    page.get_by_role("button", name="Ajouter le document").click()
    assert "Analyse apportée" in page.get_by_role("status").inner_text()
    assert page.get_by_role("row").filter(has_text="Analyse apportée").count() == 1
    # a CDA that does not conform: refused with every problem listed
    nav(page, "Ajouter")
    page.get_by_label(re.compile("Fichier")).set_input_files(
        {"name": "bad.xml", "mimeType": "text/xml",
         "buffer": b'<ClinicalDocument xmlns="urn:hl7-org:v3"><title>x</title></ClinicalDocument>'})
    page.get_by_role("button", name="Ajouter le document").click()
    alert = page.get_by_role("alert").inner_text()
    assert "typeId" in alert and "recordTarget" in alert
    snap(page, shots, "09b-add-cda-refused")

    # not a PDF nor text: refused with a message, nothing added
    nav(page, "Ajouter")
    page.get_by_label("Titre").fill("Image")
    page.get_by_label(re.compile("Fichier")).set_input_files(
        {"name": "photo.png", "mimeType": "image/png", "buffer": b"\x89PNG\r\n\x1a\n0000"})
    page.get_by_role("button", name="Ajouter le document").click()
    assert "Seuls les PDF" in page.get_by_role("alert").inner_text()


def test_oppose_emergency(page: Any, web_world: DmpWorld, shots: Path) -> None:
    world = web_world
    ins, password = world.create()
    login(page, world, ins, password)

    nav(page, "Paramètres")
    box = page.get_by_label("Je m'oppose à l'accès « bris de glace »")
    assert not box.is_checked()
    box.check()
    page.get_by_role("button", name="Enregistrer").click()
    assert page.get_by_role("status").inner_text() == "Paramètres enregistrés."
    assert page.get_by_label("Je m'oppose à l'accès « bris de glace »").is_checked()
    assert not page.get_by_label(re.compile("centre 15")).is_checked()
    snap(page, shots, "10-settings-opposed")

    r = world.call("POST", f"/api/dmp/{ins}/emergency", "gp",
                   json_body={"mode": "bris_de_glace", "reason": "patient inconscient"})
    assert r.status == 403 and r.reason == "emergency_opposed"
    # centre 15 is a separate opposition, not given: the regulating doctor gets in
    r = world.call("POST", f"/api/dmp/{ins}/emergency", "emergency",
                   json_body={"mode": "centre_15", "reason": "appel au 15"})
    assert r.status == 200, r.body
    assert world.find(ins, "emergency", consent=None).status == 200
    page.reload()
    assert "Centre 15 (SAMU), motif : appel au 15" in page.locator("main").inner_text()


def test_block_and_traces(page: Any, web_world: DmpWorld, shots: Path) -> None:
    world = web_world
    ins, password = world.create()
    feed_text(world, ins, "Consultation", "Note")
    gp = national_id("gp")
    login(page, world, ins, password)

    nav(page, "Professionnels")
    row = page.get_by_role("row").filter(has_text=gp)
    row.get_by_role("button", name="Bloquer").click()
    assert page.get_by_role("status").inner_text() == f"Le professionnel {gp} est bloqué."
    snap(page, shots, "11-professionals-blocked")
    r = world.find(ins, "gp")
    assert r.status == 403 and r.reason == "blocked_by_patient"  # D18

    nav(page, "Historique")
    body = page.locator("table tbody tr")
    newest = body.first.inner_text()
    assert "Refusé : professionnel bloqué par vous (blocked_by_patient)" in newest
    assert "Consultation de la liste" in newest and "Claire MARTIN" in newest
    text = page.locator("table").inner_text()
    assert "Ajout d'un document" in text and "Création du DMP" in text
    assert "Connexion du patient" in text
    snap(page, shots, "12-traces")

    # unblock by the form, then block by national id typed in
    nav(page, "Professionnels")
    page.get_by_role("listitem").filter(has_text=gp).get_by_role(
        "button", name="Débloquer").click()
    assert "débloqué" in page.get_by_role("status").inner_text()
    assert world.find(ins, "gp").status == 200
    page.get_by_label(re.compile("Identifiant national")).fill(gp)
    page.locator("form.card").get_by_role("button", name="Bloquer").click()
    assert page.get_by_role("status").inner_text() == f"Le professionnel {gp} est bloqué."


def test_deletion_request(page: Any, web_world: DmpWorld, shots: Path) -> None:
    world = web_world
    ins, password = world.create()
    doc = feed_text(world, ins, "Radio du genou", "Pas de fracture")
    login(page, world, ins, password)

    page.get_by_role("link", name="Radio du genou").click()
    page.get_by_role("button", name="Demander la suppression à l'auteur").click()
    assert "Suppression demandée" in page.get_by_role("status").inner_text()
    assert page.locator("dd.status").inner_text() == "Suppression demandée"
    snap(page, shots, "13-deletion-requested")
    nav(page, "Mes documents")
    assert "Suppression demandée" in page.locator(f'tr[data-id="{doc}"]').inner_text()
    r = world.call("DELETE", f"/api/dmp/{ins}/documents/{doc}", "gp")  # the author deletes
    assert r.status == 200, r.body
    page.reload()
    assert "Radio du genou" not in page.locator("main").inner_text()


def test_close_the_dmp(page: Any, web_world: DmpWorld, shots: Path) -> None:
    world = web_world
    ins, password = world.create()
    feed_text(world, ins, "Synthèse", "Texte")
    login(page, world, ins, password)

    nav(page, "Fermer mon DMP")
    snap(page, shots, "14-close-confirm")
    page.get_by_label("Je confirme vouloir fermer mon DMP").check()
    page.get_by_role("button", name="Fermer définitivement mon DMP").click()
    page.get_by_role("heading", name="Mes documents").wait_for()
    assert page.get_by_role("status").inner_text() == "Votre DMP est fermé."
    assert "Votre DMP est fermé depuis" in page.get_by_role("note").inner_text()
    assert page.get_by_role("button", name="Masquer aux professionnels").count() == 0
    r = world.find(ins, "gp")
    assert r.status in (403, 409) and r.reason == "dmp_closed"

    page.get_by_role("button", name="Se déconnecter").click()
    login(page, world, ins, password)
    assert "Votre DMP est fermé depuis" in page.get_by_role("note").inner_text()
    assert "Synthèse" in page.get_by_role("table").inner_text()  # still readable
    snap(page, shots, "15-closed-after-login")
    nav(page, "Ajouter")
    assert page.get_by_role("button", name="Ajouter le document").count() == 0


def test_chosen_doctor_and_occupational_consent(page: Any, web_world: DmpWorld,
                                                shots: Path) -> None:
    world = web_world
    ins, password = world.create()
    doc = feed_text(world, ins, "Compte rendu opératoire", "Texte")
    r = world.find(ins, "occupational")
    assert r.status == 403 and r.reason == "occupational_needs_express_consent"
    login(page, world, ins, password)

    page.locator(f'tr[data-id="{doc}"]').get_by_role(
        "button", name="Masquer aux professionnels").click()
    assert doc not in world.found(ins, "emergency")
    nav(page, "Paramètres")
    page.get_by_label("Votre médecin traitant DMP").select_option(national_id("emergency"))
    page.get_by_label(re.compile("médecin du travail")).check()
    page.get_by_role("button", name="Enregistrer").click()
    assert page.get_by_role("status").inner_text() == "Paramètres enregistrés."
    assert page.get_by_label("Votre médecin traitant DMP").input_value() == national_id(
        "emergency")
    snap(page, shots, "16-settings-chosen-doctor")
    assert doc in world.found(ins, "emergency")  # the chosen doctor sees masked documents
    assert world.find(ins, "occupational").status == 200  # D1, express consent given


def test_pending_document_after_two_weeks(page: Any, web_world: DmpWorld, shots: Path) -> None:
    """D8 on the page: a hidden document is announced (no title) after two weeks. Runs last:
    it moves the module host's clock (professional sessions are opened again afterwards)."""
    world = web_world
    ins, password = world.create()
    feed_text(world, ins, "Diagnostic à annoncer", "Secret", query="?invisible_patient=true")
    world.clock.advance(days=15)
    world.tokens.clear()  # their sessions expired with the clock
    login(page, world, ins, password)
    main = page.locator("main").inner_text()
    assert "Documents en attente" in main and "Un document vous attend" in main
    assert "Diagnostic à annoncer" not in main
    snap(page, shots, "17-index-pending")
