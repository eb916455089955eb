"""Routes that exist only on a host started in test mode (never in a real deployment)."""

from __future__ import annotations

from bifente.simulators.dmp.api.base import (
    ServiceBase,
    _ins,
)
from bifente.simulators.dmp.auth import (
    OutboxCodeSender,
)
from bifente.simulators.dmp.codes import Reason, Refused
from bifente.simulators.dmp.server import Request, Response, json_response


class TestModeApi(ServiceBase):
    """TEST MODE ONLY: read back what a real host would send to the patient."""

    def test_last_code(self, req: Request) -> Response:
        """TEST MODE ONLY: the last one-time code sent to a patient through the outbox."""
        sender = self.code_sender
        ins = _ins(req.arg("ins") or "")
        code = sender.last_code(ins) if isinstance(sender, OutboxCodeSender) else None
        if code is None:
            raise Refused(Reason.NOT_FOUND, "no code sent to this patient")
        return json_response(200, {"code": code})
