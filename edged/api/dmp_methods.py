"""The shared medical record (DMP) methods of the API (registered in edged/api/methods.py).

Each method works in the session of the CPS card in the terminal (edged/services/dmp.py):
create, feed and read (find, get) first ask the patient on the terminal and send the signed
consent record; an emergency access states a reason instead. The host's refusals come back as
DMP_ERROR with `data.reason` = the host's reason code (docs/dmp-api.md, "Refusal reasons"):
they are domain errors (edged/services/dmp_host.py) that edged/api/errors.py maps.

`dmp.create` returns the patient's password once, and also shows it on the terminal display
(the patient, facing the terminal, copies it; it is never audited or logged).
`dmp.patient_code` shows the patient's one-time login code for the patient space on the
display only: the RPC answer has no code.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from bifente.apdu.identity import mask_nir
from bifente.client.codes import CARD_ERROR, CONSENT_ERROR, DMP_ERROR, PIN_ERROR, STORAGE_FULL
from bifente.edged.api import uploads
from bifente.edged.api.jsonrpc import INVALID_PARAMS, RpcError
from bifente.edged.api.method import BOOL, INT, STR, Method, b64_param, obj, on_card
from bifente.edged.readers.pcsc import CardKind
from bifente.edged.readers.ui import CODE_SCREEN_S
from bifente.edged.services import cards
from bifente.edged.services.dmp_host import (
    DmpNotConfigured,
    HostUnreachable,
    HostUntrusted,
    query_string,
)
from bifente.edged.services.errors import ServiceError

if TYPE_CHECKING:
    from bifente.edged.api.context import ApiContext, Caller
    from bifente.edged.services.dmp import DmpService

__all__ = ["MAX_CDA_BYTES", "METHODS"]

MAX_CDA_BYTES = 700 * 1024  # a CDA in one call (the API's message cap is 1 MiB of base64)
_INS = {"type": "string", "pattern": r"^[0-9]{6}[0-9AB][0-9]{8}$",
        "description": "the patient's INS (15 characters: NIR or NIA with its key)"}
_DOC_ID = {"type": "string", "minLength": 1, "maxLength": 64}


def _service(daemon: ApiContext) -> DmpService:
    if daemon.services.dmp is not None:
        return daemon.services.dmp
    raise DmpNotConfigured()


async def _run(daemon: ApiContext, conn: Caller, name: str, ins: str, op: Any,
               found: dict[str, Any] | None = None, **fixed: Any) -> Any:
    """Audit the intent, run op, audit the outcome (INS masked; with what op put in `found`,
    such as the access mode of a read)."""
    # Durable before the host hears of it: an action never happens without a trace (L3).
    await daemon.audit_intent(name, conn, patient=mask_nir(ins), outcome="started", **fixed)

    def audit(**outcome: Any) -> None:
        daemon.audit_event(name, conn, patient=mask_nir(ins), **outcome, **fixed,
                           **(found or {}))

    try:
        result = await op()
    except HostUnreachable as exc:  # host_unreachable, or host_untrusted (its certificate)
        audit(outcome="unreachable", reason=exc.reason)
        raise
    except ServiceError as exc:  # the host refused, consent refused, no card, no terminal...
        audit(outcome="refused", reason=exc.reason)
        raise
    except RpcError as exc:
        audit(outcome="refused", reason=exc.data.get("reason"))
        raise
    except Exception as exc:  # a card or PIN error: the intent has its outcome too (M5)
        audit(outcome="failed", error=type(exc).__name__)
        raise
    audit(outcome="ok")
    return result


async def _consent(daemon: ApiContext, conn: Caller, ins: str, action: str,
                   express: bool = False) -> str:
    """The patient's signed consent for this action (asked on the terminal)."""
    service = _service(daemon)
    session = await service.login(conn)
    return await service.ask_consent(conn, ins=ins, professional=session.national_id,
                                     name=session.display_name, action=action, express=express)


async def _read_access(daemon: ApiContext, conn: Caller, ins: str, express: bool,
                       found: dict[str, Any]) -> str | None:
    """The consent for a read: none under this client's own emergency access, else the
    patient's; the mode goes into the audit of every read (M1)."""
    grant = _service(daemon).emergency_for(conn.client_id, ins)
    if grant is not None:
        found["mode"] = grant.mode
        return None
    found["mode"] = "consent"
    return await _consent(daemon, conn, ins, "read", express)


# -- handlers -------------------------------------------------------------------------------

async def dmp_exists(daemon: ApiContext, conn: Caller, params: dict[str, Any]) -> Any:
    """dmp.exists."""
    ins = params["ins"]

    async def op() -> Any:
        answer = await _service(daemon).exists(conn, ins)
        return {"exists": bool(answer.get("exists")), "status": answer.get("status")}

    return await _run(daemon, conn, "dmp.exists", ins, op)


async def dmp_create(daemon: ApiContext, conn: Caller, params: dict[str, Any]) -> Any:
    """dmp.create: consent, then the record; the patient's password once (and on screen)."""
    ins = params["ins"]

    async def op() -> Any:
        service = _service(daemon)
        consent = await _consent(daemon, conn, ins, "create", bool(params.get("express")))
        oid = params.get("ins_oid")
        if oid is None:  # the INS authority of the Vitale beneficiary
            # Already read for the consent: the insertion's session answers from memory.
            card = await on_card(daemon, conn, CardKind.VITALE, cards.vitale_read, "dmp.create")
            oid = next(b.ins.oid.value for b in card.beneficiaries if b.ins.value == ins)
        answer = await service.create(conn, ins, oid, consent)
        password = str(answer.get("patient_password", ""))
        if daemon.ui is not None and password:
            await daemon.ui.show(["DMP créé", "Mot de passe :", password],
                                 secret_s=CODE_SCREEN_S)
        return {"ins": answer.get("ins", ins), "ins_oid": answer.get("ins_oid", oid),
                "status": answer.get("status"), "patient_password": password,
                "notice": answer.get("notice", "")}

    return await _run(daemon, conn, "dmp.create", ins, op)


async def dmp_feed(daemon: ApiContext, conn: Caller, params: dict[str, Any]) -> Any:
    """dmp.feed: consent, then the CDA; queued durably when the host is unreachable."""
    ins = params["ins"]
    if "upload_id" in params:  # a CDA larger than one message (edged/api/uploads.py)
        cda = bytes(await uploads.claim(daemon, conn, params["upload_id"],
                                        uploads.MAX_UPLOAD))
    elif "cda" in params:
        cda = b64_param(params["cda"], "cda", MAX_CDA_BYTES)
    else:
        raise RpcError(INVALID_PARAMS, "give the CDA as cda (base64) or upload_id",
                       "invalid_params")
    meta = params.get("metadata") or {}
    query = query_string({k: meta.get(k) for k in ("masked_ps", "invisible_patient",
                                                    "invisible_representatives")})
    express = bool(params.get("express", False))

    async def op() -> Any:
        service = _service(daemon)
        try:
            session = await service.login(conn)
            professional, name = session.national_id, session.display_name
        except HostUntrusted:
            raise  # not an outage to queue through: the caller hears of the certificate
        except HostUnreachable:
            card = await service.identify(conn)
            professional, name = card["national_id"], card["display_name"]
            session = None
        header = await service.ask_consent(conn, ins=ins, professional=professional,
                                           name=name, action="feed", express=express)
        if session is not None:
            try:
                answer = await service.feed(conn, ins, query, cda, header)
            except HostUntrusted:
                raise
            except HostUnreachable:
                pass
            else:
                return {"state": "registered", "document": answer.get("document"),
                        "already_registered": bool(answer.get("already_registered"))}
        queue_id = await service.enqueue(ins, professional, query, cda, header)
        daemon.audit_event("dmp.feed.queued", conn, patient=mask_nir(ins), queue_id=queue_id,
                           bytes=len(cda))
        return {"state": "queued", "queue_id": queue_id}

    return await _run(daemon, conn, "dmp.feed", ins, op, bytes=len(cda))


async def dmp_find(daemon: ApiContext, conn: Caller, params: dict[str, Any]) -> Any:
    """dmp.find: the index as this professional may see it."""
    ins = params["ins"]
    query = query_string({"type": params.get("type"), "status": params.get("status"),
                          "limit": params.get("limit"), "offset": params.get("offset")})

    found: dict[str, Any] = {}

    async def op() -> Any:
        service = _service(daemon)
        consent = await _read_access(daemon, conn, ins, bool(params.get("express")), found)
        answer = await service.find(conn, ins, query, consent)
        return {"documents": answer.get("documents", []), "total": answer.get("total", 0),
                "mode": answer.get("mode", "normal")}

    return await _run(daemon, conn, "dmp.find", ins, op, found)


async def dmp_get(daemon: ApiContext, conn: Caller, params: dict[str, Any]) -> Any:
    """dmp.get: one document with its CDA (base64)."""
    ins, document_id = params["ins"], params["document_id"]

    found: dict[str, Any] = {}

    async def op() -> Any:
        service = _service(daemon)
        consent = await _read_access(daemon, conn, ins, bool(params.get("express")), found)
        answer = await service.get(conn, ins, document_id, consent)
        return {"document": answer.get("document"), "cda": answer.get("cda")}

    return await _run(daemon, conn, "dmp.get", ins, op, found, document=document_id)


async def dmp_emergency(daemon: ApiContext, conn: Caller, params: dict[str, Any]) -> Any:
    """dmp.emergency: no patient consent possible; the professional states the reason."""
    ins, mode, reason = params["ins"], params["mode"], params["reason"].strip()
    if not reason:
        raise RpcError(INVALID_PARAMS, "an emergency access needs a reason", "reason_required")

    async def op() -> Any:
        answer = await _service(daemon).emergency(conn, ins, mode, reason)
        return {"mode": answer.get("mode", mode), "reason": answer.get("reason", reason),
                "expires_in": answer["expires_in"]}

    return await _run(daemon, conn, "dmp.emergency", ins, op, mode=mode)


async def dmp_visibility(daemon: ApiContext, conn: Caller, params: dict[str, Any]) -> Any:
    """dmp.visibility: the author changes a document's visibility flags."""
    ins, document_id = params["ins"], params["document_id"]
    flags: dict[str, bool] = {k: params[k] for k in ("masked_ps", "invisible_patient",
                                    "invisible_representatives", "announced") if k in params}
    if not flags:
        raise RpcError(INVALID_PARAMS, "give at least one visibility flag", "invalid_params")

    async def op() -> Any:
        answer = await _service(daemon).visibility(conn, ins, document_id, flags)
        return {"document": answer.get("document")}

    return await _run(daemon, conn, "dmp.visibility", ins, op, document=document_id)


async def dmp_delete(daemon: ApiContext, conn: Caller, params: dict[str, Any]) -> Any:
    """dmp.delete: the author deletes a document the patient asked to delete (D20)."""
    ins, document_id = params["ins"], params["document_id"]

    async def op() -> Any:
        answer = await _service(daemon).delete(conn, ins, document_id)
        return {"document": answer.get("document")}

    return await _run(daemon, conn, "dmp.delete", ins, op, document=document_id)


async def dmp_patient_code(daemon: ApiContext, conn: Caller, params: dict[str, Any]) -> Any:
    """dmp.patient_code: the patient's web login code, shown on the terminal display only."""
    ins = params["ins"]

    async def op() -> Any:
        expires_in = await _service(daemon).show_patient_code(conn, ins)
        return {"shown": True, "expires_in": expires_in}

    return await _run(daemon, conn, "dmp.patient_code", ins, op)


async def dmp_queue(daemon: ApiContext, conn: Caller, params: dict[str, Any]) -> Any:
    """dmp.queue: feeds waiting for the host (and, asked, delivered and failed ones)."""
    service = _service(daemon)  # in a thread: the queue's lock may be held by a commit
    feeds = await asyncio.to_thread(service.queue.list, include_done=bool(params.get("all")))
    return {"feeds": [f.describe() for f in feeds]}


# A DMP call logs in with the CPS (CARD, PIN), asks the patient (CONSENT), asks the host (DMP).
_DMP = (CARD_ERROR, PIN_ERROR, CONSENT_ERROR, DMP_ERROR)
_READ = frozenset({"dmp:read", "dmp:emergency"})
_WRITE = frozenset({"dmp:write"})
_DOCUMENT = {"type": "object", "description": "the host's document JSON (docs/dmp-api.md)"}
_FLAGS = {"masked_ps": BOOL, "invisible_patient": BOOL, "invisible_representatives": BOOL}

METHODS: list[Method] = [
    Method("dmp.exists", dmp_exists, "Does the patient have a DMP (no consent needed).",
           _READ | _WRITE, obj({"ins": _INS}, ("ins",)),
           obj({"exists": BOOL, "status": {"type": ["string", "null"]}}, ("exists", "status")),
           errors=_DMP),
    Method("dmp.create", dmp_create, "Create the patient's DMP: the patient consents on the "
           "terminal (Vitale card in); the answer holds the patient's password once (also "
           "shown on the terminal display).", _WRITE,
           obj({"ins": _INS, "ins_oid": {"type": "string", "maxLength": 64}, "express": BOOL},
               ("ins",)),
           obj({"ins": STR, "ins_oid": STR, "status": STR, "patient_password": STR,
                "notice": STR}, ("ins", "ins_oid", "status", "patient_password", "notice")),
           errors=_DMP),
    Method("dmp.feed", dmp_feed, "Add a CDA R2 document (base64): the patient consents on the "
           "terminal; queued durably (state queued, queue_id) when the host is unreachable, "
           "delivered exactly once later. A CDA larger than one message is sent with "
           "upload.begin / chunk / commit and named by `upload_id` instead of `cda`.", _WRITE,
           {"anyOf": [obj({"ins": _INS, "cda": {"type": "string",
                                                "description": "base64 CDA R2 XML",
                                                "contentEncoding": "base64",
                                                "maxLength": 4 * (MAX_CDA_BYTES // 3 + 1)},
                           "metadata": obj(_FLAGS), "express": BOOL}, ("ins", "cda")),
                      obj({"ins": _INS, "upload_id": uploads.UPLOAD_ID,
                           "metadata": obj(_FLAGS), "express": BOOL}, ("ins", "upload_id"))]},
           obj({"state": {"type": "string", "enum": ["registered", "queued"]},
                "document": _DOCUMENT, "already_registered": BOOL, "queue_id": STR},
               ("state",)), errors=(*_DMP, STORAGE_FULL)),
    Method("dmp.find", dmp_find, "The documents this professional may see (the patient "
           "consents on the terminal, unless an emergency access is open).", _READ,
           obj({"ins": _INS, "type": {"type": "string", "maxLength": 200},
                "status": {"type": "string", "maxLength": 100},
                "limit": {"type": "integer", "minimum": 1, "maximum": 1000},
                "offset": {"type": "integer", "minimum": 0}, "express": BOOL}, ("ins",)),
           obj({"documents": {"type": "array", "items": _DOCUMENT}, "total": INT,
                "mode": STR}, ("documents", "total", "mode")), errors=_DMP),
    Method("dmp.get", dmp_get, "One document and its CDA (base64), with the patient's consent "
           "or an open emergency access.", _READ,
           obj({"ins": _INS, "document_id": _DOC_ID, "express": BOOL}, ("ins", "document_id")),
           obj({"document": _DOCUMENT, "cda": {"type": "string", "contentEncoding": "base64",
                                               "contentMediaType": "application/hl7-v3+xml"}},
               ("document", "cda")), errors=_DMP),
    Method("dmp.emergency", dmp_emergency, "Emergency access without consent: bris_de_glace or "
           "centre_15 (regulating doctors), with the professional's stated reason; then "
           "dmp.find / dmp.get from this client need no consent for this patient while it lasts "
           "(not from other clients; the patient's Cancel on the terminal ends it).",
           frozenset({"dmp:emergency"}),
           obj({"ins": _INS, "mode": {"type": "string", "enum": ["bris_de_glace", "centre_15"]},
                "reason": {"type": "string", "minLength": 1, "maxLength": 500}},
               ("ins", "mode", "reason")),
           obj({"mode": STR, "reason": STR, "expires_in": {"type": "number"}},
               ("mode", "reason", "expires_in")), errors=_DMP),
    Method("dmp.visibility", dmp_visibility, "The author changes a document's visibility "
           "(masked to professionals, hidden from the patient, from representatives, "
           "announced).", _WRITE,
           obj({"ins": _INS, "document_id": _DOC_ID, **_FLAGS, "announced": BOOL},
               ("ins", "document_id")),
           obj({"document": _DOCUMENT}, ("document",)), errors=_DMP),
    Method("dmp.delete", dmp_delete, "The author deletes a document after the patient asked "
           "for it (the entry stays, status deleted, its bytes wiped).", _WRITE,
           obj({"ins": _INS, "document_id": _DOC_ID}, ("ins", "document_id")),
           obj({"document": _DOCUMENT}, ("document",)), errors=_DMP),
    Method("dmp.patient_code", dmp_patient_code, "The patient's one-time code for the DMP "
           "patient space (with the INS and the password from dmp.create): the patient "
           "consents on the terminal (Vitale card in), the code is shown on the terminal "
           "display only, never returned, logged or audited.", frozenset({"dmp:read"}),
           obj({"ins": _INS}, ("ins",)),
           obj({"shown": BOOL, "expires_in": INT}, ("shown", "expires_in")), errors=_DMP),
    Method("dmp.queue", dmp_queue, "Feeds waiting for the DMP host (all: also delivered and "
           "failed ones); patients masked.", _WRITE, obj({"all": BOOL}),
           obj({"feeds": {"type": "array", "items": obj({
               "queue_id": STR, "patient": STR, "professional": STR, "state": STR,
               "attempts": INT, "last_error": {"type": ["string", "null"]}, "queued_at": STR,
               "size": INT, "document_id": {"type": ["string", "null"]}}, (
               "queue_id", "patient", "professional", "state", "attempts", "last_error",
               "queued_at", "size", "document_id"))}}, ("feeds",)), errors=(DMP_ERROR,)),
]
