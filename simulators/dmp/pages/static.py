"""The pages' static files (the stylesheet): served from static/, nothing outside it."""

from __future__ import annotations

import mimetypes
from pathlib import Path

from bifente.simulators.dmp.codes import Reason, Refused
from bifente.simulators.dmp.server import Request, Response

__all__ = ["STATIC", "serve_static"]

STATIC = Path(__file__).resolve().parents[1] / "static"


def serve_static(req: Request) -> Response:
    """A file under static/ (no directory escapes, no listings)."""
    root = STATIC.resolve()
    target = (root / req.params["path"]).resolve()
    if not target.is_relative_to(root) or not target.is_file():
        raise Refused(Reason.NOT_FOUND)
    content_type = mimetypes.guess_type(target.name)[0] or "application/octet-stream"
    return Response(200, target.read_bytes(), content_type,
                    headers={"X-Content-Type-Options": "nosniff"})
