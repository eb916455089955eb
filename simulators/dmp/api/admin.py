"""The host administrator's API: enroll and revoke terminals' consent-signing keys."""

from __future__ import annotations

import hmac
import re

from bifente.simulators.dmp.api.base import (
    ServiceBase,
)
from bifente.simulators.dmp.codes import Action, Outcome, Reason, Refused
from bifente.simulators.dmp.consent import (
    load_device_key,
)
from bifente.simulators.dmp.server import Request, Response, json_response
from bifente.simulators.dmp.storage import Trace


class AdminApi(ServiceBase):
    """Device enrollment behind the admin token."""

    def _admin(self, req: Request) -> None:
        token = req.bearer() or ""
        if not hmac.compare_digest(token.encode(), self.admin_token.encode()):
            raise Refused(Reason.ADMIN_REQUIRED, "the admin token is required")

    def enroll(self, req: Request) -> Response:
        """Enroll a terminal's device key (ECDSA P-256 PEM) that signs consent records."""
        self._admin(req)
        body = req.json()
        device, pem = body.get("device"), body.get("public_key")
        if not isinstance(device, str) or not re.match(r"^[A-Za-z0-9._:-]{1,64}$", device):
            raise Refused(Reason.BAD_REQUEST, "device: 1-64 of A-Z a-z 0-9 . _ : -")
        try:
            load_device_key(str(pem))
        except ValueError as exc:
            raise Refused(Reason.BAD_REQUEST, f"public_key: {exc}") from None
        self.storage.enroll_device(device, str(pem), self.clock())
        self.storage.add_trace(Trace(self.clock(), None, "admin", "admin", Action.ENROLL_DEVICE,
                                     Outcome.OK, document_id=device))
        return json_response(201, {"device": device, "enrolled": True})

    def revoke(self, req: Request) -> Response:
        """Revoke a device key: its consent records are refused from now on."""
        self._admin(req)
        if not self.storage.revoke_device(req.params["device"], self.clock()):
            raise Refused(Reason.NOT_FOUND, "no such device")
        return json_response(200, {"device": req.params["device"], "revoked": True})
