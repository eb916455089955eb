"""The shared medical record (DMP) methods of the API (registered in edged/api/methods.py).

Each method works in the session of the CPS card in the terminal (edged/services/dmp.py):
create, feed and read (find, get) first ask the patient on the terminal and send the signed
consent record; an emergency access states a reason instead. The host's refusals come back as
DMP_ERROR with `data.reason` = the host's reason code (docs/dmp-api.md, "Refusal reasons").

`dmp.create` returns the patient's password once, and also shows it on the terminal display
(the patient, facing the terminal, copies it; it is never audited or logged).
`dmp.patient_code` shows the patient's one-time login code for the patient space on the
display only: the RPC answer has no code.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from apdu.identity import mask_nir
from edged.api.errors import DMP_ERROR
from edged.api.jsonrpc import INVALID_PARAMS, RpcError
from edged.api.method import BOOL, INT, STR, Method, b64_param, obj, on_card
from edged.services import cards

if TYPE_CHECKING:
    from edged.api.server import Connection
    from edged.daemon import Daemon
    from edged.services.dmp import DmpService

__all__ = ["MAX_CDA_BYTES", "METHODS"]

MAX_CDA_BYTES = 700 * 1024  # a CDA in one call (the API's message cap is 1 MiB of base64)
_INS = {"type": "string", "pattern": r"^[0-9]{6}[0-9AB][0-9]{8}$",
        "description": "the patient's INS (15 characters: NIR or NIA with its key)"}
_DOC_ID = {"type": "string", "minLength": 1, "maxLength": 64}


def _service(daemon: Daemon) -> DmpService:
    from edged.services.dmp import DmpService

    for extension in daemon.extensions:
        if isinstance(extension, DmpService):
            return extension
    raise RpcError(DMP_ERROR, "the DMP is not configured on this terminal ([dmp])",
                   "dmp_not_configured")


def _client(conn: Connection) -> str:
    return conn.client_id


async def _run(daemon: Daemon, conn: Connection, name: str, ins: str, op: Any,
               **audit: Any) -> Any:
    """Run op, audit the call (INS masked), map host refusals to DMP_ERROR."""
    from edged.services.dmp import DmpError, HostUnreachable

    try:
        result = await op()
    except DmpError as exc:
        daemon.audit_event(name, conn, patient=mask_nir(ins), outcome="refused",
                           reason=exc.reason, **audit)
        data: dict[str, Any] = {"status": exc.status}
        if exc.details:
            data["details"] = exc.details
        raise RpcError(DMP_ERROR, exc.message, exc.reason, **data) from exc
    except HostUnreachable as exc:
        daemon.audit_event(name, conn, patient=mask_nir(ins), outcome="unreachable", **audit)
        raise RpcError(DMP_ERROR, str(exc), "host_unreachable") from exc
    except RpcError as exc:
        daemon.audit_event(name, conn, patient=mask_nir(ins), outcome="refused",
                           reason=exc.data.get("reason"), **audit)
        raise
    daemon.audit_event(name, conn, patient=mask_nir(ins), outcome="ok", **audit)
    return result


async def _consent(daemon: Daemon, conn: Connection, ins: str, action: str,
                   express: bool = False) -> dict[str, str]:
    service = _service(daemon)
    session = await service.login(_client(conn))
    header = await service.ask_consent(conn, ins=ins, professional=session.national_id,
                                       name=session.display_name, action=action,
                                       express=express)
    return {"X-DMP-Consent": header}


def _path(ins: str, *rest: str) -> str:
    return "/api/dmp/" + quote(ins, safe="") + "".join("/" + quote(r, safe="") for r in rest)


# -- handlers -------------------------------------------------------------------------------

async def dmp_exists(daemon: Daemon, conn: Connection, params: dict[str, Any]) -> Any:
    """dmp.exists."""
    ins = params["ins"]

    async def op() -> Any:
        _, answer = await _service(daemon).call(_client(conn), "GET", _path(ins))
        return {"exists": bool(answer.get("exists")), "status": answer.get("status")}

    return await _run(daemon, conn, "dmp.exists", ins, op)


async def dmp_create(daemon: Daemon, conn: Connection, params: dict[str, Any]) -> Any:
    """dmp.create: consent, then the record; the patient's password once (and on screen)."""
    ins = params["ins"]

    async def op() -> Any:
        service = _service(daemon)
        headers = await _consent(daemon, conn, ins, "create", bool(params.get("express")))
        oid = params.get("ins_oid")
        if oid is None:  # the INS authority of the Vitale beneficiary
            card = await on_card(daemon, conn, "vitale", cards.vitale_read, "dmp.create")
            oid = next(b["ins"]["oid"] for b in card["beneficiaries"]
                       if b["ins"]["value"] == ins)
        _, answer = await service.call(_client(conn), "POST", _path(ins),
                                       json_body={"ins_oid": oid}, headers=headers)
        password = str(answer.get("patient_password", ""))
        if daemon.ui is not None and password:
            await daemon.ui.show(["DMP created", "Your password:", password])
        return {"ins": answer.get("ins", ins), "ins_oid": answer.get("ins_oid", oid),
                "status": answer.get("status"), "patient_password": password,
                "notice": answer.get("notice", "")}

    return await _run(daemon, conn, "dmp.create", ins, op)


async def dmp_feed(daemon: Daemon, conn: Connection, params: dict[str, Any]) -> Any:
    """dmp.feed: consent, then the CDA; queued durably when the host is unreachable."""
    from edged.services.dmp import HostUnreachable, query_string

    ins = params["ins"]
    cda = b64_param(params["cda"], "cda", MAX_CDA_BYTES)
    meta = params.get("metadata") or {}
    query = query_string({k: meta.get(k) for k in ("masked_ps", "invisible_patient",
                                                    "invisible_representatives")})
    express = bool(params.get("express", False))

    async def op() -> Any:
        service = _service(daemon)
        try:
            session = await service.login(_client(conn))
            professional, name = session.national_id, session.display_name
        except HostUnreachable:
            card = await service.identify(_client(conn))
            professional, name = card["national_id"], card["display_name"]
            session = None
        header = await service.ask_consent(conn, ins=ins, professional=professional,
                                           name=name, action="feed", express=express)
        if session is not None:
            try:
                _, answer = await service.call(
                    _client(conn), "POST", _path(ins, "documents") + query, body=cda,
                    headers={"Content-Type": "application/hl7-v3+xml",
                             "X-DMP-Consent": header})
            except HostUnreachable:
                pass
            else:
                return {"state": "registered", "document": answer.get("document"),
                        "already_registered": bool(answer.get("already_registered"))}
        queue_id = service.enqueue(ins, professional, query, cda, header)
        daemon.audit_event("dmp.feed.queued", conn, patient=mask_nir(ins), queue_id=queue_id,
                           bytes=len(cda))
        return {"state": "queued", "queue_id": queue_id}

    return await _run(daemon, conn, "dmp.feed", ins, op, bytes=len(cda))


async def dmp_find(daemon: Daemon, conn: Connection, params: dict[str, Any]) -> Any:
    """dmp.find: the index as this professional may see it."""
    from edged.services.dmp import query_string

    ins = params["ins"]
    query = query_string({"type": params.get("type"), "status": params.get("status"),
                          "limit": params.get("limit"), "offset": params.get("offset")})

    async def op() -> Any:
        service = _service(daemon)
        headers = {} if service.emergency_granted(ins) else await _consent(
            daemon, conn, ins, "read", bool(params.get("express", False)))
        _, answer = await service.call(_client(conn), "GET", _path(ins, "documents") + query,
                                       headers=headers)
        return {"documents": answer.get("documents", []), "total": answer.get("total", 0),
                "mode": answer.get("mode", "normal")}

    return await _run(daemon, conn, "dmp.find", ins, op)


async def dmp_get(daemon: Daemon, conn: Connection, params: dict[str, Any]) -> Any:
    """dmp.get: one document with its CDA (base64)."""
    ins, document_id = params["ins"], params["document_id"]

    async def op() -> Any:
        service = _service(daemon)
        headers = {} if service.emergency_granted(ins) else await _consent(
            daemon, conn, ins, "read", bool(params.get("express", False)))
        _, answer = await service.call(_client(conn), "GET",
                                       _path(ins, "documents", document_id), headers=headers)
        return {"document": answer.get("document"), "cda": answer.get("cda")}

    return await _run(daemon, conn, "dmp.get", ins, op, document=document_id)


async def dmp_emergency(daemon: Daemon, conn: Connection, params: dict[str, Any]) -> Any:
    """dmp.emergency: no patient consent possible; the professional states the reason."""
    ins, mode, reason = params["ins"], params["mode"], params["reason"].strip()
    if not reason:
        raise RpcError(INVALID_PARAMS, "an emergency access needs a reason", "reason_required")

    async def op() -> Any:
        service = _service(daemon)
        _, answer = await service.call(_client(conn), "POST", _path(ins, "emergency"),
                                       json_body={"mode": mode, "reason": reason})
        expires_in = float(answer.get("expires_in") or 0)
        if service.session is not None:
            service.session.emergency[ins] = time.monotonic() + expires_in
        return {"mode": answer.get("mode", mode), "reason": answer.get("reason", reason),
                "expires_in": expires_in}

    return await _run(daemon, conn, "dmp.emergency", ins, op, mode=mode)


async def dmp_visibility(daemon: Daemon, conn: Connection, params: dict[str, Any]) -> Any:
    """dmp.visibility: the author changes a document's visibility flags."""
    ins, document_id = params["ins"], params["document_id"]
    flags = {k: params[k] for k in ("masked_ps", "invisible_patient",
                                    "invisible_representatives", "announced") if k in params}
    if not flags:
        raise RpcError(INVALID_PARAMS, "give at least one visibility flag", "invalid_params")

    async def op() -> Any:
        _, answer = await _service(daemon).call(
            _client(conn), "POST", _path(ins, "documents", document_id, "visibility"),
            json_body=flags)
        return {"document": answer.get("document")}

    return await _run(daemon, conn, "dmp.visibility", ins, op, document=document_id)


async def dmp_delete(daemon: Daemon, conn: Connection, params: dict[str, Any]) -> Any:
    """dmp.delete: the author deletes a document the patient asked to delete (D20)."""
    ins, document_id = params["ins"], params["document_id"]

    async def op() -> Any:
        _, answer = await _service(daemon).call(
            _client(conn), "DELETE", _path(ins, "documents", document_id))
        return {"document": answer.get("document")}

    return await _run(daemon, conn, "dmp.delete", ins, op, document=document_id)


async def dmp_patient_code(daemon: Daemon, conn: Connection, params: dict[str, Any]) -> Any:
    """dmp.patient_code: the patient's web login code, shown on the terminal display only."""
    ins = params["ins"]

    async def op() -> Any:
        expires_in = await _service(daemon).show_patient_code(conn, ins)
        return {"shown": True, "expires_in": expires_in}

    return await _run(daemon, conn, "dmp.patient_code", ins, op)


async def dmp_queue(daemon: Daemon, conn: Connection, params: dict[str, Any]) -> Any:
    """dmp.queue: feeds waiting for the host (and, asked, delivered and failed ones)."""
    service = _service(daemon)
    feeds = service.queue.list(include_done=bool(params.get("all")))
    return {"feeds": [f.describe() for f in feeds]}


_READ = frozenset({"dmp:read", "dmp:emergency"})
_WRITE = frozenset({"dmp:write"})
_DOCUMENT = {"type": "object", "description": "the host's document JSON (docs/dmp-api.md)"}
_FLAGS = {"masked_ps": BOOL, "invisible_patient": BOOL, "invisible_representatives": BOOL}

METHODS: list[Method] = [
    Method("dmp.exists", dmp_exists, "Does the patient have a DMP (no consent needed).",
           _READ | _WRITE, obj({"ins": _INS}, ("ins",)),
           obj({"exists": BOOL, "status": {"type": ["string", "null"]}}, ("exists", "status"))),
    Method("dmp.create", dmp_create, "Create the patient's DMP: the patient consents on the "
           "terminal (Vitale card in); the answer holds the patient's password once (also "
           "shown on the terminal display).", _WRITE,
           obj({"ins": _INS, "ins_oid": {"type": "string", "maxLength": 64}, "express": BOOL},
               ("ins",)),
           obj({"ins": STR, "ins_oid": STR, "status": STR, "patient_password": STR,
                "notice": STR}, ("ins", "ins_oid", "status", "patient_password", "notice"))),
    Method("dmp.feed", dmp_feed, "Add a CDA R2 document (base64): the patient consents on the "
           "terminal; queued durably (state queued, queue_id) when the host is unreachable, "
           "delivered exactly once later.", _WRITE,
           obj({"ins": _INS, "cda": {"type": "string", "description": "base64 CDA R2 XML",
                                      "contentEncoding": "base64",
                                      "maxLength": 4 * (MAX_CDA_BYTES // 3 + 1)},
                "metadata": obj(_FLAGS), "express": BOOL}, ("ins", "cda")),
           obj({"state": {"type": "string", "enum": ["registered", "queued"]},
                "document": _DOCUMENT, "already_registered": BOOL, "queue_id": STR},
               ("state",))),
    Method("dmp.find", dmp_find, "The documents this professional may see (the patient "
           "consents on the terminal, unless an emergency access is open).", _READ,
           obj({"ins": _INS, "type": {"type": "string", "maxLength": 200},
                "status": {"type": "string", "maxLength": 100},
                "limit": {"type": "integer", "minimum": 1, "maximum": 1000},
                "offset": {"type": "integer", "minimum": 0}, "express": BOOL}, ("ins",)),
           obj({"documents": {"type": "array", "items": _DOCUMENT}, "total": INT,
                "mode": STR}, ("documents", "total", "mode"))),
    Method("dmp.get", dmp_get, "One document and its CDA (base64), with the patient's consent "
           "or an open emergency access.", _READ,
           obj({"ins": _INS, "document_id": _DOC_ID, "express": BOOL}, ("ins", "document_id")),
           obj({"document": _DOCUMENT, "cda": {"type": "string", "contentEncoding": "base64",
                                               "contentMediaType": "application/hl7-v3+xml"}},
               ("document", "cda"))),
    Method("dmp.emergency", dmp_emergency, "Emergency access without consent: bris_de_glace or "
           "centre_15 (regulating doctors), with the professional's stated reason; then "
           "dmp.find / dmp.get need no consent for this patient while it lasts.",
           frozenset({"dmp:emergency"}),
           obj({"ins": _INS, "mode": {"type": "string", "enum": ["bris_de_glace", "centre_15"]},
                "reason": {"type": "string", "minLength": 1, "maxLength": 500}},
               ("ins", "mode", "reason")),
           obj({"mode": STR, "reason": STR, "expires_in": {"type": "number"}},
               ("mode", "reason", "expires_in"))),
    Method("dmp.visibility", dmp_visibility, "The author changes a document's visibility "
           "(masked to professionals, hidden from the patient, from representatives, "
           "announced).", _WRITE,
           obj({"ins": _INS, "document_id": _DOC_ID, **_FLAGS, "announced": BOOL},
               ("ins", "document_id")),
           obj({"document": _DOCUMENT}, ("document",))),
    Method("dmp.delete", dmp_delete, "The author deletes a document after the patient asked "
           "for it (the entry stays, status deleted, its bytes wiped).", _WRITE,
           obj({"ins": _INS, "document_id": _DOC_ID}, ("ins", "document_id")),
           obj({"document": _DOCUMENT}, ("document",))),
    Method("dmp.patient_code", dmp_patient_code, "The patient's one-time code for the DMP "
           "patient space (with the INS and the password from dmp.create): the patient "
           "consents on the terminal (Vitale card in), the code is shown on the terminal "
           "display only, never returned, logged or audited.", frozenset({"dmp:read"}),
           obj({"ins": _INS}, ("ins",)),
           obj({"shown": BOOL, "expires_in": INT}, ("shown", "expires_in"))),
    Method("dmp.queue", dmp_queue, "Feeds waiting for the DMP host (all: also delivered and "
           "failed ones); patients masked.", _WRITE, obj({"all": BOOL}),
           obj({"feeds": {"type": "array", "items": obj({
               "queue_id": STR, "patient": STR, "professional": STR, "state": STR,
               "attempts": INT, "last_error": {"type": ["string", "null"]}, "queued_at": STR,
               "size": INT, "document_id": {"type": ["string", "null"]}}, (
               "queue_id", "patient", "professional", "state", "attempts", "last_error",
               "queued_at", "size", "document_id"))}}, ("feeds",))),
]
