"""The patient's web space in headless Chromium (Playwright), against a real reference DMP host.

Debian's Chromium (`/usr/bin/chromium`, installed by `make setup`) is driven by Playwright's
Python client; Playwright's own browser download is never used. TLS: the host's certificate
comes from the test PKI; Chromium is told to accept exactly the host's public key
(`--ignore-certificate-errors-spki-list` with its SPKI hash), not every certificate.
Screenshots of each step go to `artifacts/web/` (ignored by git, kept by CI as artefacts).
"""

from __future__ import annotations

import base64
import hashlib
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from bifente.simulators.dmp.testing import DmpWorld, FakeClock
from bifente.simulators.world import CardsOn, DmpOptions, SimulatedWorld
from tests.needs import missing

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts" / "web"
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                  "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="module")
def web_world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DmpWorld]:
    """A host in test mode (the one-time code is readable through /api/test/last-code)."""
    clock = FakeClock()
    with SimulatedWorld(None, None, cards=CardsOn.NONE, mail=False,
                        dmp=DmpOptions(tmp_path_factory.mktemp("dmp-web"), clock=clock)) as sim:
        assert sim.dmp is not None
        world = DmpWorld(sim.dmp, clock)
        yield world
        world.close()


def _spki_hash(chain_pem: Path) -> str:
    cert = x509.load_pem_x509_certificate(chain_pem.read_bytes())  # the first: the host's own
    spki = cert.public_key().public_bytes(serialization.Encoding.DER,
                                          serialization.PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(hashlib.sha256(spki).digest()).decode()


@pytest.fixture(scope="module")
def browser(web_world: DmpWorld) -> Iterator[Any]:
    """Headless Debian Chromium, trusting only the host's key."""
    if not CHROMIUM.exists():
        missing("/usr/bin/chromium is missing (make setup installs the chromium package)")
    from playwright.sync_api import sync_playwright

    spki = _spki_hash(web_world.host.data_dir / "tls" / "host.chain.pem")
    with tempfile.TemporaryDirectory(prefix="bifente-chromium-") as profile, \
            sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            profile, executable_path=str(CHROMIUM), headless=True,
            args=[*CHROMIUM_FLAGS, f"--ignore-certificate-errors-spki-list={spki}"],
            locale="fr-FR", viewport={"width": 1100, "height": 800}, accept_downloads=True)
        try:
            yield context
        finally:
            context.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    """A fresh page with no cookies (each test logs in as its own patient)."""
    browser.clear_cookies()
    page = browser.new_page()
    page.set_default_timeout(10_000)
    yield page
    page.close()


@pytest.fixture(scope="session")
def shots() -> Path:
    """Where screenshots go."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS
