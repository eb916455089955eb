"""The patient pages on a phone (375 px wide) and through axe-core (WCAG 2.1 A and AA).

axe-core is the npm package pinned in tools/web (installed by `make setup`); it is injected
into each page in Debian's Chromium and run there. Screenshots: `artifacts/web/m-*.png`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from test_patient_space import feed_text, login, nav, snap

from bifente.simulators.dmp.testing import DmpWorld

# The module-scoped world's loop starts its executor threads (asyncio_N) on first use;
# they end with the module's fixture, not with the test that happened to start them.
pytestmark = pytest.mark.leaks("module-scoped fixture's executor threads")

AXE = Path(__file__).resolve().parents[2] / "tools" / "web" / "node_modules" / "axe-core" / \
    "axe.min.js"
PHONE = {"width": 375, "height": 812}
WCAG = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]


def _axe(page: Any) -> list[dict[str, Any]]:
    if not AXE.exists():
        pytest.fail(f"{AXE} is missing: run make setup (tools/web)")
    # Evaluated through the DevTools protocol: the page's CSP (no inline script) stays on.
    page.evaluate(AXE.read_text() + "\n;0")
    result = page.evaluate("tags => axe.run(document, {runOnly: {type: 'tag', values: tags}})",
                           WCAG)
    return [{"id": v["id"], "help": v["help"],
             "nodes": [n["html"][:120] for n in v["nodes"][:3]]} for v in result["violations"]]


def _check(page: Any, shots: Path, name: str) -> None:
    width = page.evaluate("document.documentElement.scrollWidth")
    snap(page, shots, f"m-{name}")
    widest = page.evaluate("""() => [...document.querySelectorAll('body *')]
        .filter(e => e.getBoundingClientRect().right > window.innerWidth + 1)
        .slice(-3).map(e => e.outerHTML.slice(0, 160))""")
    assert width <= PHONE["width"], f"{name}: {width} px wide on a 375 px screen: {widest}"
    violations = _axe(page)
    assert not violations, f"{name}: {json.dumps(violations, indent=1, ensure_ascii=False)}"


def test_every_page_fits_a_phone_and_passes_axe(page: Any, web_world: DmpWorld,
                                                 shots: Path) -> None:
    world = web_world
    ins, password = world.create()
    feed_text(world, ins, "Bilan sanguin du 12 mars, numération et ferritine",
              "Hémoglobine 14,2 g/dL\nFerritine normale")
    feed_text(world, ins, "Consultation", "Note", type_code="11488-4")
    page.set_viewport_size(PHONE)
    page.goto(world.host.url + "/patient/")
    page.get_by_role("heading", name="Connexion à mon DMP").wait_for()
    _check(page, shots, "login")
    login(page, world, ins, password)
    _check(page, shots, "documents")
    table = page.get_by_role("table").inner_text()
    assert "Compte rendu de biologie" in table and "Compte rendu de consultation" in table
    assert "Biology report" not in page.content()
    page.get_by_role("table").get_by_role("link", name="Consultation").click()
    page.get_by_role("heading", name="Consultation").wait_for()
    _check(page, shots, "document")
    for name, slug in (("Ajouter", "add"), ("Paramètres", "settings"),
                       ("Professionnels", "professionals"), ("Historique", "traces"),
                       ("Fermer mon DMP", "close")):
        nav(page, name)
        page.wait_for_url(f"**/patient/{slug}")
        page.wait_for_load_state("load")
        _check(page, shots, slug)
