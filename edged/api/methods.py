"""Every JSON-RPC method: its scopes, its parameter and result schemas, and its handler.

The table below is the single source: the server enforces it and docs/protocol.md is
generated from it (`python -m bifente.edged.api.docs`).
"""

from __future__ import annotations

import functools
import hashlib
from typing import TYPE_CHECKING, Any

from bifente.apdu.cps_spec import KeyRef
from bifente.client.codes import (
    CARD_ERROR,
    CONSENT_ERROR,
    FORBIDDEN,
    NOT_PAIRED,
    PAIRING_ERROR,
    PIN_ERROR,
)
from bifente.edged.api import audit_methods, cps_methods, dmp_methods, mail_methods, render, uploads
from bifente.edged.api.contract import EVENTS
from bifente.edged.api.describe import build
from bifente.edged.api.jsonrpc import METHOD_NOT_FOUND, RpcError
from bifente.edged.api.method import B64 as _B64
from bifente.edged.api.method import BOOL as _BOOL
from bifente.edged.api.method import (
    MAX_SIGN_BYTES,
    PROTOCOL_VERSION,
    Method,
    b64_param,
    obj,
    on_card,
)
from bifente.edged.api.method import STR as _STR
from bifente.edged.readers.pcsc import CardKind
from bifente.edged.readers.ui import Answer, fit_lines
from bifente.edged.services import cards
from bifente.edged.services.errors import Family, ServiceError, TerminalUnavailable
from bifente.edged.services.prompts import MAX_PROMPT_S, one_prompt
from bifente.edged.services.signing import DIGEST_DIGITS
from bifente.edged.state.clients import SCOPES

if TYPE_CHECKING:
    from bifente.edged.api.context import ApiContext, Caller

__all__ = ["METHODS", "PROTOCOL_VERSION", "Method", "dispatch", "inline"]

_COUNT = {"type": "integer", "minimum": 0}
_PIN_RESULT = obj({"result": {"type": "string", "enum": ["ok", "wrong", "blocked",
                                                           "cancelled"]},
                    "tries_left": _COUNT}, ("result", "tries_left"))
_B64_OUT = {"type": "string", "contentEncoding": "base64"}
_SIGNATURE = obj({"algorithm": {"type": "string", "enum": ["sha256WithRSAEncryption"]},
                   "signature": {**_B64_OUT, "description": "RSA PKCS#1 v1.5 signature"},
                   "certificate": {**_B64_OUT, "contentMediaType": "application/pkix-cert",
                                   "description": "the key's X.509 certificate (DER)"}},
                  ("algorithm", "signature", "certificate"))
_SLOT = obj({"slot": _STR, "reader": _STR, "source": {"type": "string",
                                                         "enum": ["pcsc", "terminal"]},
              "present": _BOOL, "kind": {"type": "string",
                                         "enum": ["cps", "vitale", "vitale1", "unknown",
                                                  "empty"]},
              "atr": {"type": "string", "pattern": "^([0-9a-f]{2})*$",
                      "description": "hex, empty when no card"},
              "pin_pad": _BOOL}, ("slot", "reader", "source", "present", "kind", "atr",
                                  "pin_pad"))
_DATE8 = {"type": "string", "pattern": "^[0-9]{8}$", "description": "YYYYMMDD"}
_NIR = {"type": "string", "pattern": "^[0-9]{6}[0-9AB][0-9]{8}$",
        "description": "13 characters and the 2-digit key"}
_BENEFICIARY = obj({
    "quality": {**_COUNT, "description": "0 insured, 1 ascendant/other, 2 spouse, 6 child, "
                "... (quality_name says it in words)"},
    "quality_name": _STR, "name": _STR, "birth_name": _STR, "first_name": _STR,
    "birth_date": {**_DATE8, "description": "YYYYMMDD; a lunar date has a day or month out "
                   "of range (lunar_birth_date)"},
    "lunar_birth_date": _BOOL, "birth_rank": _COUNT, "nationality": _STR, "nir": _NIR,
    "temporary": {**_BOOL, "description": "a temporary number (NIA): no INS-C"},
    "ins": obj({"value": {**_NIR, "description": "the INS: the beneficiary's own NIR (or "
                          "NIA), which may differ from the insured's nir"},
                "oid": {"type": "string", "pattern": "^[0-9]+(\\.[0-9]+)*$"},
                "kind": {"type": "string", "enum": ["NIR", "NIA"]}}, ("value", "oid", "kind")),
    "ins_c": {"type": ["string", "null"], "pattern": "^[0-9]{22}$",
              "description": "the historical INS-C (22 digits), null for a NIA"},
    "rights": {"type": "array", "items": obj({"start": _DATE8, "end": _DATE8},
                                             ("start", "end"))},
}, ("quality", "quality_name", "name", "birth_name", "first_name", "birth_date",
    "lunar_birth_date", "birth_rank", "nationality", "nir", "temporary", "ins", "ins_c",
    "rights"))
_VITALE_CARD = obj({"type": _STR, "serial": _STR, "test_card": _BOOL,
                    "validity_start": _DATE8, "end_of_validity": _DATE8},
                   ("type", "serial", "test_card", "validity_start", "end_of_validity"))
_INSURED = obj({"nir": _NIR, "regime": _STR, "caisse": _STR, "centre": _STR},
               ("nir", "regime", "caisse", "centre"))
_PIN_STATUS = obj({"tries_left": _COUNT, "max_tries": _COUNT, "blocked": _BOOL},
                  ("tries_left", "max_tries", "blocked"))
_CPS_INFO = obj({"serial": _STR, "card_type": _COUNT, "card_type_name": _STR,
                 "id_type": _COUNT, "national_id": _STR, "name": _STR, "first_name": _STR,
                 "display_name": _STR, "profession": _STR,
                 "specialty": {"type": ["string", "null"]}, "pin": _PIN_STATUS,
                 "certificates": {**cps_methods.METHODS[0].result,
                                  "description": "only when asked (certificates: true)"}},
                ("serial", "card_type", "card_type_name", "id_type", "national_id", "name",
                 "first_name", "display_name", "profession", "specialty", "pin"))
_ISO_TIME = {"type": ["string", "null"], "format": "date-time"}
_CLIENT = obj({"name": _STR, "fingerprint": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
               "scopes": {"type": "array", "items": _STR}, "paired_at": _ISO_TIME,
               "last_seen": _ISO_TIME, "revoked_at": _ISO_TIME,
               "revoked_by": {"type": ["string", "null"]}},
              ("name", "fingerprint", "scopes", "paired_at", "last_seen", "revoked_at",
               "revoked_by"))
_PEM = {"type": "string", "contentMediaType": "application/x-pem-file"}
_FP = {"type": "string", "pattern": "^[0-9a-f]{64}$",
       "description": "SHA-256 of the certificate's DER, lower-case hex"}



# -- handlers -------------------------------------------------------------------------------

async def system_info(daemon: ApiContext, conn: Caller, params: dict[str, Any]) -> Any:
    """system.info."""
    from bifente.edged.limits import MAX_IN_FLIGHT, limits_for

    mine = limits_for(daemon.config, conn.client_name)
    return {**daemon.info(), "client": conn.client_name or "", "scopes": sorted(conn.scopes),
            "limits": {"max_message_bytes": daemon.config.max_message_bytes,
                       "rate_per_second": mine.rate_per_second, "rate_burst": mine.rate_burst,
                       "max_connections_per_client": mine.max_connections,
                       "max_in_flight": MAX_IN_FLIGHT}}


@functools.cache
def _discovery() -> dict[str, Any]:
    # Built on the first call and kept: the method table and the version are fixed for the
    # life of the process, and anyone may ask before pairing, so a call costs no rebuild.
    return build(METHODS.values(), PROTOCOL_VERSION)


async def rpc_discover(daemon: ApiContext, conn: Caller, params: dict[str, Any]) -> Any:
    """rpc.discover: the OpenRPC document (docs/openrpc.json), built once."""
    return _discovery()


async def readers_list(daemon: ApiContext, conn: Caller, params: dict[str, Any]) -> Any:
    """readers.list."""
    return {"slots": [s.describe() for s in sorted(daemon.slots.slots.values(),
                                                    key=lambda s: s.slot_id)]}


async def vitale_read(daemon: ApiContext, conn: Caller, params: dict[str, Any]) -> Any:
    """vitale.read."""
    card = await on_card(daemon, conn, CardKind.VITALE, cards.vitale_read, "vitale.read")
    daemon.audit_event("vitale.read", conn, beneficiaries=len(card.beneficiaries))
    return render.vitale_card(card)


async def cps_info(daemon: ApiContext, conn: Caller, params: dict[str, Any]) -> Any:
    """cps.info."""
    info = await on_card(daemon, conn, CardKind.CPS, cards.cps_info, "cps.info")
    result = render.cps_info(info)
    if params.get("certificates"):
        result["certificates"] = await cps_methods.cps_certificates(daemon, conn, {})
    daemon.audit_event("cps.info", conn)
    return result


async def cps_pin_status(daemon: ApiContext, conn: Caller, params: dict[str, Any]) -> Any:
    """cps.pin_status."""
    return render.pin_status(await on_card(daemon, conn, CardKind.CPS, cards.pin_status,
                                           "cps.pin_status"))


async def cps_verify_pin(daemon: ApiContext, conn: Caller, params: dict[str, Any]) -> Any:
    """cps.verify_pin: typed on the terminal keypad; never retried automatically."""
    timeout = min(float(params.get("timeout", daemon.config.pin_timeout)), MAX_PROMPT_S)
    # Intent durable before the keypad prompt, outcome after, errors included (review M5).
    await daemon.audit_intent("pin.verify", conn, outcome="asked", via="cps.verify_pin")
    try:
        async with one_prompt(daemon, conn):
            outcome = await on_card(daemon, conn, CardKind.CPS,
                                    lambda s: cards.verify_pin(s, timeout, conn.client_id),
                                    "cps.verify_pin",
                                    timeout=timeout + daemon.config.card_timeout)
    except Exception as exc:
        daemon.audit_event("pin.verify", conn, outcome="error", error=type(exc).__name__,
                           via="cps.verify_pin")
        raise
    result = render.pin_outcome(outcome)
    daemon.audit_event("pin.verify", conn, outcome=result["result"],
                       tries_left=result["tries_left"], via="cps.verify_pin")
    daemon.bus.publish("pin.state", result=result["result"], tries_left=result["tries_left"])
    return result


def _require(conn: Caller, scope: str, what: str) -> None:
    if scope not in conn.scopes:
        raise ServiceError(Family.FORBIDDEN, "missing_scope", f"{what} needs the scope {scope}",
                           scopes=[scope])


async def cps_sign(daemon: ApiContext, conn: Caller, params: dict[str, Any]) -> Any:
    """cps.sign: the signature key only after the holder's OK on the terminal."""
    data = b64_param(params["data"], "data", MAX_SIGN_BYTES)
    key = params.get("key", "signature")
    title = params.get("title", "")
    digest = hashlib.sha256(data).digest()
    batch: bool | None = None
    if key == "signature":
        _require(conn, "cps:sign", "a signature with the signature key")
        insertion = cards.arbiter_for(daemon, CardKind.CPS)  # nothing to confirm without
        approval = await daemon.signatures.approve(
            daemon.ui, conn.client_id, conn.client_name or "?", title, digest,
            insertion=insertion, gate=lambda: one_prompt(daemon, conn))
        batch = approval.batch
        ref = KeyRef.SIGNATURE
    else:
        # The authentication key over raw data is the same RSA signature as INTERNAL
        # AUTHENTICATE: the same scope and the same rule as cps.authenticate.
        _require(conn, "cps:authenticate", "a signature with the authentication key")
        cards.check_not_host_challenge(data)
        ref = KeyRef.AUTHENTICATION
    signature = await on_card(daemon, conn, CardKind.CPS,
                              lambda s: cards.sign(s, conn.client_id, data, ref), "cps.sign")
    daemon.audit_event("cps.sign", conn, certificate=key, bytes=len(data),
                       digest=digest.hex()[:DIGEST_DIGITS], batch=batch)
    return render.signature(signature)


async def cps_authenticate(daemon: ApiContext, conn: Caller, params: dict[str, Any]) -> Any:
    """cps.authenticate: never a DMP host challenge (only the daemon logs in there)."""
    challenge = b64_param(params["challenge"], "challenge", 1024)
    cards.check_not_host_challenge(challenge)
    signature = await on_card(daemon, conn, CardKind.CPS,
                              lambda s: cards.authenticate(s, conn.client_id, challenge),
                              "cps.authenticate")
    daemon.audit_event("cps.authenticate", conn)
    return render.signature(signature)


async def consent_ask(daemon: ApiContext, conn: Caller, params: dict[str, Any]) -> Any:
    """consent.ask: a question on the terminal display, answered with OK or Cancel."""
    if daemon.ui is None:
        raise TerminalUnavailable("no terminal display and keys to ask the patient")
    timeout = min(float(params.get("timeout", MAX_PROMPT_S)), MAX_PROMPT_S)
    async with one_prompt(daemon, conn):
        answer = Answer(await daemon.ui.confirm("\n".join(fit_lines(params["text"])),
                                                timeout=timeout))
    daemon.audit_event("consent.answer", conn, answer=answer)
    return {"answer": answer}


async def events_subscribe(daemon: ApiContext, conn: Caller, params: dict[str, Any]) -> Any:
    """events.subscribe: notifications follow on this connection."""
    names = params.get("events")
    conn.subscribe(frozenset(names) if names else None)
    return {"subscribed": sorted(names) if names else sorted(EVENT_NAMES)}


async def pair_begin(daemon: ApiContext, conn: Caller, params: dict[str, Any]) -> Any:
    """pair.begin."""
    key = params["csr"].encode()
    pending = await daemon.pairing.begin(params["name"], key, params.get("scopes") or [],
                                         conn.peer)
    return {"pairing_id": pending.pairing_id, "expires_in": pending.expires_in,
            "fingerprint": daemon.keystore.fingerprint}


async def pair_complete(daemon: ApiContext, conn: Caller, params: dict[str, Any]) -> Any:
    """pair.complete."""
    result = await daemon.pairing.complete(params["pairing_id"], params["code"], conn.peer)
    return {"certificate": result.client_certificate_pem,
            "ca_certificate": result.ca_certificate_pem,
            "fingerprint": result.server_fingerprint, "scopes": list(result.scopes)}


async def clients_list(daemon: ApiContext, conn: Caller, params: dict[str, Any]) -> Any:
    """clients.list."""
    def iso(value: Any) -> str | None:
        return value.isoformat() if value is not None else None

    return {"clients": [
        {"name": c.name, "fingerprint": c.fingerprint, "scopes": list(c.scopes),
         "paired_at": iso(c.paired_at), "last_seen": iso(c.last_seen),
         "revoked_at": iso(c.revoked_at), "revoked_by": c.revoked_by}
        for c in daemon.clients.list(include_revoked=bool(params.get("include_revoked")))]}


async def clients_revoke(daemon: ApiContext, conn: Caller, params: dict[str, Any]) -> Any:
    """clients.revoke: the certificate is refused at once, open connections are closed."""
    client = daemon.clients.revoke(params["name"], by=conn.client_name or "")
    daemon.audit_event("client.revoke", conn, client=client.name)
    # The caller may revoke itself: its own connection closes after this answer is sent.
    closed = await daemon.server.disconnect_fingerprint(client.fingerprint, keep=conn)
    return {"revoked": client.name, "connections_closed": closed}


EVENT_NAMES = frozenset(EVENTS)  # edged/api/contract.py: every event and its params
_NAME = {"type": "string", "pattern": r"^[A-Za-z0-9 ._-]{1,64}$"}
_SCOPE = {"type": "string", "enum": list(SCOPES)}  # edged/state/clients.py
_READ = frozenset({"identity:read"})
_SIGN = frozenset({"cps:sign"})
_AUTHENTICATE = frozenset({"cps:authenticate"})
# The PIN is typed for the client that asks; it then works for that client's scopes only.
_PIN = _SIGN | _AUTHENTICATE | frozenset({"mail:send", "mail:read"})

_CARD = (CARD_ERROR, PIN_ERROR)  # a CPS card method's own refusals

_CORE = [
    Method("system.info", system_info, "Protocol version, daemon version, certificate "
           "fingerprint, terminal model and capabilities; the caller's own name and scopes; "
           "the limits that apply to it.",
           result=obj({"protocol": _STR, "version": _STR, "fingerprint": _FP, "model": _STR,
                        "capabilities": {"type": "array", "items": _STR},
                        "client": {**_STR, "description": "the caller's paired name"},
                        "scopes": {"type": "array", "items": _STR,
                                   "description": "the scopes the caller was granted"},
                        "limits": obj({"max_message_bytes": _COUNT, "rate_per_second":
                                       {"type": "number"}, "rate_burst": _COUNT,
                                       "max_connections_per_client": _COUNT,
                                       "max_in_flight": _COUNT},
                                      ("max_message_bytes", "rate_per_second", "rate_burst",
                                       "max_connections_per_client", "max_in_flight"))},
                       ("protocol", "version", "fingerprint", "model", "capabilities",
                        "client", "scopes", "limits")), inline=True),
    Method("rpc.discover", rpc_discover, "The OpenRPC document of this API "
           "(docs/openrpc.json): every method with its parameter, result and error schemas.",
           result={"type": "object", "required": ["openrpc", "info", "methods"],
                   "properties": {"openrpc": _STR, "info": {"type": "object"},
                                  "methods": {"type": "array"}}}, unpaired=True,
           inline=True),
    Method("readers.list", readers_list, "Slots and what is in them.", _READ,
           result=obj({"slots": {"type": "array", "items": _SLOT}}, ("slots",)), inline=True),
    Method("vitale.read", vitale_read, "Read the Vitale card: the insured person, every "
           "beneficiary with NIR, INS (with OID) and INS-C, rights.", _READ,
           result=obj({"card": _VITALE_CARD, "insured": _INSURED,
                        "beneficiaries": {"type": "array", "minItems": 1,
                                          "items": _BENEFICIARY}},
                       ("card", "insured", "beneficiaries")), errors=(CARD_ERROR,)),
    Method("cps.info", cps_info, "The professional on the CPS card and the PIN tries left "
           "(no PIN needed); with certificates: true, both certificates and their validity.",
           _READ, obj({"certificates": _BOOL}), _CPS_INFO, errors=_CARD),
    Method("cps.pin_status", cps_pin_status, "PIN try counters.", _READ,
           result=_PIN_STATUS, errors=_CARD),
    Method("cps.verify_pin", cps_verify_pin, "The holder types the PIN on the terminal keypad; "
           "the result says ok, wrong (tries left), blocked or cancelled. No method takes a PIN. "
           "The verified PIN serves this client only: another client's call resets it "
           "(docs/security.md).", _PIN,
           obj({"timeout": {"type": "number", "minimum": 5, "maximum": MAX_PROMPT_S}}),
           _PIN_RESULT, errors=_CARD),
    Method("cps.sign", cps_sign, "Sign data with the CPS card (SHA-256, RSA PKCS#1 v1.5, "
           "split hash); needs the PIN verified for this client. The signature key (cps:sign) "
           "signs after the holder's OK on the terminal, which shows the client, the title and "
           "the digest's first hex digits; the authentication key needs cps:authenticate.",
           _SIGN | _AUTHENTICATE,
           obj({"data": _B64, "key": {"type": "string",
                                       "enum": ["signature", "authentication"]},
                "title": {"type": "string", "maxLength": 64,
                          "description": "what is signed, shown on the terminal"}},
               ("data",)),
           _SIGNATURE, errors=(*_CARD, CONSENT_ERROR)),
    Method("cps.authenticate", cps_authenticate, "INTERNAL AUTHENTICATE of SHA-256(challenge)"
           " with the authentication key; needs the PIN verified for this client. A 32-byte "
           "challenge (the DMP host's shape) is refused: only the daemon logs in there.",
           _AUTHENTICATE,
           obj({"challenge": {"type": "string", "contentEncoding": "base64", "maxLength": 1368,
                               "description": "base64 of at most 1024 bytes"}},
               ("challenge",)),
           _SIGNATURE, errors=_CARD),
    Method("consent.ask", consent_ask, "Show a question on the terminal; the patient answers "
           "OK or Cancel.", frozenset({"terminal:display", "dmp:read", "dmp:write",
                                      "dmp:emergency"}),
           obj({"text": {"type": "string", "minLength": 1, "maxLength": 200},
                 "timeout": {"type": "number", "minimum": 5, "maximum": MAX_PROMPT_S}},
               ("text",)),
           obj({"answer": {"type": "string", "enum": [str(a) for a in Answer]}}, ("answer",)),
           errors=(CONSENT_ERROR,)),
    Method("events.subscribe", events_subscribe, "Receive event notifications on this "
           "connection (all, or the ones named): card.inserted, card.removed, reader.lost "
           "(a reader failed: not a card removal), reader.restored, pin.state, "
           "terminal.cancel (Cancel pressed outside a prompt), terminal.lost, "
           "terminal.restored. Replaces an earlier subscription.", _READ,
           obj({"events": {"type": "array", "maxItems": 16,
                            "items": {"type": "string", "enum": sorted(EVENT_NAMES)}}}),
           obj({"subscribed": {"type": "array", "items": {"type": "string",
                                                          "enum": sorted(EVENT_NAMES)}}},
               ("subscribed",)), inline=True),
    Method("pair.begin", pair_begin, "Start pairing: the terminal shows a 6-digit code.",
           params=obj({"name": _NAME, "csr": {"type": "string", "maxLength": 8192,
                                                "description": "PEM CSR or public key"},
                        "scopes": {"type": "array", "maxItems": len(SCOPES), "items": _SCOPE}},
                       ("name", "csr")),
           result=obj({"pairing_id": _STR, "expires_in": {"type": "number", "minimum": 0,
                                                           "description": "seconds"},
                        "fingerprint": _FP}, ("pairing_id", "expires_in", "fingerprint")),
           unpaired=True, errors=(PAIRING_ERROR,)),
    Method("pair.complete", pair_complete, "Finish pairing with the code read on the terminal; "
           "returns the client certificate.",
           params=obj({"pairing_id": {"type": "string", "maxLength": 64},
                        "code": {"type": "string", "pattern": r"^[0-9]{6}$"}},
                       ("pairing_id", "code")),
           result=obj({"certificate": {**_PEM, "description": "the client certificate"},
                        "ca_certificate": {**_PEM, "description": "the daemon's CA"},
                        "fingerprint": {**_FP, "description": "the daemon's certificate"},
                        "scopes": {"type": "array", "items": _STR}},
                       ("certificate", "ca_certificate", "fingerprint", "scopes")),
           unpaired=True, errors=(PAIRING_ERROR,)),
    Method("clients.list", clients_list, "Paired clients.", frozenset({"admin"}),
           obj({"include_revoked": _BOOL}),
           obj({"clients": {"type": "array", "items": _CLIENT}}, ("clients",))),
    Method("clients.revoke", clients_revoke, "Revoke a client: refused at once.",
           frozenset({"admin"}), obj({"name": _NAME}, ("name",)),
           obj({"revoked": _STR, "connections_closed": _COUNT},
               ("revoked", "connections_closed"))),
]

# Mail and DMP methods live in their own modules (edged/api/mail_methods.py, dmp_methods.py).
METHODS: dict[str, Method] = {m.name: m for m in [*_CORE, *cps_methods.METHODS,
                                                  *mail_methods.METHODS,
                                                  *dmp_methods.METHODS, *uploads.METHODS,
                                                  *audit_methods.METHODS]}


def inline(name: str) -> bool:
    """Whether a call is answered at once, in the connection's read loop: a method marked
    so, or an unknown one (refused at once)."""
    method = METHODS.get(name)
    return method is None or method.inline


async def dispatch(daemon: ApiContext, conn: Caller, name: str, params: dict[str, Any]) -> Any:
    """Check pairing, scope and parameters, then run the method."""
    from bifente.edged.api.schema import empty_matches, validate

    method = METHODS.get(name)
    if method is None:
        raise RpcError(METHOD_NOT_FOUND, f"no method {name!r}", "method_not_found")
    if not method.unpaired:
        if not conn.paired:
            raise RpcError(NOT_PAIRED, "pair this client first (pair.begin / pair.complete)",
                           "not_paired")
        if method.scopes and not method.scopes & conn.scopes:
            raise RpcError(FORBIDDEN, f"{name} needs the scope "
                           f"{' or '.join(sorted(method.scopes))}", "missing_scope",
                           scopes=sorted(method.scopes))
    if params or not empty_matches(method.params):
        validate(params, method.params)
    return await method.handler(daemon, conn, params)
