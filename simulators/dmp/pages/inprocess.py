"""The patient API, called in process by the pages: the same handlers, rules and traces as
over HTTP, so that nothing is decided in a page."""

from __future__ import annotations

import json
from email.message import Message

from simulators.dmp.api import DmpService
from simulators.dmp.codes import Reason, Refused
from simulators.dmp.pages.display import JsonObject
from simulators.dmp.pages.session import WebSession
from simulators.dmp.server import Request, Router

__all__ = ["InProcessApi"]


class _InternalRequest(Request):
    """A request to the JSON API made in process by a page (same handlers, rules, traces)."""

    def __init__(self, method: str, path: str, params: dict[str, str], token: str | None,
                 body: bytes, peer: str, query: dict[str, list[str]] | None = None) -> None:
        self._handler = None  # type: ignore[assignment]  # no HTTP connection behind it
        self.method = method
        self.path = path
        self.query = query or {}
        self.params = params
        headers = Message()
        headers["Content-Type"] = "application/json"
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self.headers = headers
        self.peer = peer
        self._body = body

    def body(self, limit: int) -> bytes:
        assert self._body is not None
        if len(self._body) > limit:
            raise Refused(Reason.TOO_LARGE, f"the body may be at most {limit} bytes")
        return self._body


class InProcessApi:
    """The DMP service's JSON API as a page calls it, on behalf of the page's browser."""

    def __init__(self, service: DmpService) -> None:
        self.router = Router()
        service.register(self.router)  # the same handlers, called in process

    def call(self, req: Request, web: WebSession | None, method: str, path: str,
             body: object = None, query: dict[str, list[str]] | None = None) -> JsonObject:
        """The API's answer (Refused as the API refuses); an expired API session is forgotten."""
        route, params = self.router.match(method, path)
        data = b"" if body is None else json.dumps(body).encode()
        inner = _InternalRequest(method, path, params, web.token if web else None, data,
                                 req.peer, query)
        try:
            response = route.handler(inner)
        except Refused as refusal:
            if refusal.told is Reason.UNAUTHENTICATED and web is not None:
                web.token = None
            raise
        answer = json.loads(response.body or b"{}")
        assert isinstance(answer, dict), "every answer of the API is a JSON object"
        return answer
