"""The seam for the patient's web space (issue 6 §5): HTML pages and static files.

The pages come later (another change); they register here, on the same router and server as
the JSON API, and call the same `DmpService`. Static files are served from `static/` beside
this module when it exists.
"""

from __future__ import annotations

import mimetypes
from pathlib import Path

from simulators.dmp.api import DmpService
from simulators.dmp.codes import Reason, Refused
from simulators.dmp.server import Request, Response, Router

__all__ = ["STATIC", "register"]

STATIC = Path(__file__).parent / "static"


def _static(req: Request) -> Response:
    """A file under static/ (no directory escapes, no listings)."""
    root = STATIC.resolve()
    target = (root / req.params["path"]).resolve()
    if not target.is_relative_to(root) or not target.is_file():
        raise Refused(Reason.NOT_FOUND)
    content_type = mimetypes.guess_type(target.name)[0] or "application/octet-stream"
    return Response(200, target.read_bytes(), content_type)


def register(router: Router, service: DmpService) -> None:
    """Add the patient pages (`/patient/...`) and static files (`/static/...`)."""
    router.add("GET", "/static/{path:path}", _static)
    # Patient pages go here, e.g. router.add("GET", "/patient/login", pages.login).
