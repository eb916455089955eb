"""Every JSON-RPC method: its scopes, its parameter and result schemas, and its handler.

The table below is the single source: the server enforces it and docs/protocol.md is
generated from it (`python -m edged.api.docs`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from edged.api import audit_methods, dmp_methods, mail_methods
from edged.api.errors import FORBIDDEN, NOT_PAIRED, TerminalUnavailable
from edged.api.jsonrpc import METHOD_NOT_FOUND, RpcError
from edged.api.method import B64 as _B64
from edged.api.method import BOOL as _BOOL
from edged.api.method import INT as _INT
from edged.api.method import MAX_SIGN_BYTES, PROTOCOL_VERSION, Method, b64_param, obj, on_card
from edged.api.method import STR as _STR
from edged.readers.ui import fit_lines
from edged.services import cards

if TYPE_CHECKING:
    from edged.api.server import Connection
    from edged.daemon import Daemon

__all__ = ["METHODS", "PROTOCOL_VERSION", "Method", "dispatch"]

_PIN_RESULT = obj({"result": {"type": "string", "enum": ["ok", "wrong", "blocked",
                                                           "cancelled"]},
                    "tries_left": _INT}, ("result", "tries_left"))
_SIGNATURE = obj({"algorithm": _STR, "signature": {**_STR, "description": "base64"},
                   "certificate": {**_STR, "description": "base64 DER X.509"}},
                  ("algorithm", "signature", "certificate"))
_SLOT = obj({"slot": _STR, "reader": _STR, "source": {"type": "string",
                                                         "enum": ["pcsc", "terminal"]},
              "present": _BOOL, "kind": {"type": "string",
                                         "enum": ["cps", "vitale", "vitale1", "unknown",
                                                  "empty"]},
              "atr": _STR, "pin_pad": _BOOL})
_BENEFICIARY = obj({
    "quality": _INT, "quality_name": _STR, "name": _STR, "birth_name": _STR, "first_name": _STR,
    "birth_date": {**_STR, "description": "YYYYMMDD, possibly lunar"},
    "lunar_birth_date": _BOOL, "birth_rank": _INT, "nationality": _STR, "nir": _STR,
    "temporary": _BOOL, "ins": obj({"value": _STR, "oid": _STR, "kind": _STR}),
    "ins_c": {"type": ["string", "null"]},
    "rights": {"type": "array", "items": obj({"start": _STR, "end": _STR})},
})



# -- handlers -------------------------------------------------------------------------------

async def system_info(daemon: Daemon, conn: Connection, params: dict[str, Any]) -> Any:
    """system.info."""
    return daemon.info()


async def readers_list(daemon: Daemon, conn: Connection, params: dict[str, Any]) -> Any:
    """readers.list."""
    return {"slots": [s.describe() for s in sorted(daemon.slots.slots.values(),
                                                    key=lambda s: s.slot_id)]}


async def vitale_read(daemon: Daemon, conn: Connection, params: dict[str, Any]) -> Any:
    """vitale.read."""
    result = await on_card(daemon, conn, "vitale", cards.vitale_read, "vitale.read")
    daemon.audit_event("vitale.read", conn, beneficiaries=len(result["beneficiaries"]))
    return result


async def cps_info(daemon: Daemon, conn: Connection, params: dict[str, Any]) -> Any:
    """cps.info."""
    result = await on_card(daemon, conn, "cps", cards.cps_info, "cps.info")
    daemon.audit_event("cps.info", conn)
    return result


async def cps_pin_status(daemon: Daemon, conn: Connection, params: dict[str, Any]) -> Any:
    """cps.pin_status."""
    return await on_card(daemon, conn, "cps", cards.pin_status, "cps.pin_status")


async def cps_verify_pin(daemon: Daemon, conn: Connection, params: dict[str, Any]) -> Any:
    """cps.verify_pin: typed on the terminal keypad; never retried automatically."""
    timeout = float(params.get("timeout", daemon.config.pin_timeout))
    # Intent durable before the keypad prompt, outcome after, errors included (review M5).
    await daemon.audit_intent("pin.verify", conn, outcome="asked", via="cps.verify_pin")
    try:
        result = await on_card(daemon, conn, "cps",
                                lambda p: cards.verify_pin(p, timeout), "cps.verify_pin",
                                timeout=timeout + daemon.config.card_timeout)
    except Exception as exc:
        daemon.audit_event("pin.verify", conn, outcome="error", error=type(exc).__name__,
                           via="cps.verify_pin")
        raise
    daemon.audit_event("pin.verify", conn, outcome=result["result"],
                       tries_left=result["tries_left"], via="cps.verify_pin")
    daemon.bus.publish("pin.state", result=result["result"], tries_left=result["tries_left"])
    return result


async def cps_sign(daemon: Daemon, conn: Connection, params: dict[str, Any]) -> Any:
    """cps.sign."""
    data = b64_param(params["data"], "data", MAX_SIGN_BYTES)
    key = params.get("key", "signature")
    result = await on_card(daemon, conn, "cps", lambda p: cards.sign(p, data, key), "cps.sign")
    daemon.audit_event("cps.sign", conn, certificate=key, bytes=len(data))
    return result


async def cps_authenticate(daemon: Daemon, conn: Connection, params: dict[str, Any]) -> Any:
    """cps.authenticate."""
    challenge = b64_param(params["challenge"], "challenge", 1024)
    result = await on_card(daemon, conn, "cps", lambda p: cards.authenticate(p, challenge),
                            "cps.authenticate")
    daemon.audit_event("cps.authenticate", conn)
    return result


async def consent_ask(daemon: Daemon, conn: Connection, params: dict[str, Any]) -> Any:
    """consent.ask: a question on the terminal display, answered with OK or Cancel."""
    if daemon.ui is None:
        raise TerminalUnavailable("no terminal display and keys to ask the patient")
    timeout = float(params.get("timeout", 60))
    answer = await daemon.ui.confirm("\n".join(fit_lines(params["text"])), timeout=timeout)
    daemon.audit_event("consent.answer", conn, answer=answer)
    return {"answer": answer}


async def events_subscribe(daemon: Daemon, conn: Connection, params: dict[str, Any]) -> Any:
    """events.subscribe: notifications follow on this connection."""
    names = params.get("events")
    conn.subscribe(frozenset(names) if names else None)
    return {"subscribed": sorted(names) if names else sorted(EVENT_NAMES)}


async def pair_begin(daemon: Daemon, conn: Connection, params: dict[str, Any]) -> Any:
    """pair.begin."""
    key = params["csr"].encode()
    pending = await daemon.pairing.begin(params["name"], key, params.get("scopes") or [],
                                         conn.peer)
    return {"pairing_id": pending.pairing_id, "expires_in": pending.expires_in,
            "fingerprint": daemon.keystore.fingerprint}


async def pair_complete(daemon: Daemon, conn: Connection, params: dict[str, Any]) -> Any:
    """pair.complete."""
    result = await daemon.pairing.complete(params["pairing_id"], params["code"], conn.peer)
    return {"certificate": result.client_certificate_pem,
            "ca_certificate": result.ca_certificate_pem,
            "fingerprint": result.server_fingerprint, "scopes": list(result.scopes)}


async def clients_list(daemon: Daemon, conn: Connection, params: dict[str, Any]) -> Any:
    """clients.list."""
    def iso(value: Any) -> str | None:
        return value.isoformat() if value is not None else None

    return {"clients": [
        {"name": c.name, "fingerprint": c.fingerprint, "scopes": list(c.scopes),
         "paired_at": iso(c.paired_at), "last_seen": iso(c.last_seen),
         "revoked_at": iso(c.revoked_at), "revoked_by": c.revoked_by}
        for c in daemon.clients.list(include_revoked=bool(params.get("include_revoked")))]}


async def clients_revoke(daemon: Daemon, conn: Connection, params: dict[str, Any]) -> Any:
    """clients.revoke: the certificate is refused at once, open connections are closed."""
    client = daemon.clients.revoke(params["name"], by=conn.client_name or "")
    daemon.audit_event("client.revoke", conn, client=client.name)
    # The caller may revoke itself: its own connection closes after this answer is sent.
    closed = await daemon.server.disconnect_fingerprint(client.fingerprint, keep=conn)
    return {"revoked": client.name, "connections_closed": closed}


EVENT_NAMES = frozenset({"card.inserted", "card.removed", "pin.state", "terminal.cancel"})
_NAME = {"type": "string", "pattern": r"[A-Za-z0-9 ._-]{1,64}"}
_SCOPE = {"type": "string", "enum": ["identity:read", "cps:sign", "mail:send", "dmp:read",
                                      "dmp:write", "dmp:emergency", "admin"]}
_READ = frozenset({"identity:read"})
_SIGN = frozenset({"cps:sign"})

_CORE = [
    Method("system.info", system_info, "Protocol version, daemon version, certificate "
           "fingerprint, terminal model and capabilities.",
           result=obj({"protocol": _STR, "version": _STR, "fingerprint": _STR, "model": _STR,
                        "capabilities": {"type": "array", "items": _STR}, "client": _STR,
                        "scopes": {"type": "array", "items": _STR}})),
    Method("readers.list", readers_list, "Slots and what is in them.", _READ,
           result=obj({"slots": {"type": "array", "items": _SLOT}})),
    Method("vitale.read", vitale_read, "Read the Vitale card: the insured person, every "
           "beneficiary with NIR, INS (with OID) and INS-C, rights.", _READ,
           result=obj({"card": {"type": "object"}, "insured": {"type": "object"},
                        "beneficiaries": {"type": "array", "items": _BENEFICIARY}})),
    Method("cps.info", cps_info, "The professional on the CPS card and the PIN tries left "
           "(no PIN needed).", _READ, result={"type": "object"}),
    Method("cps.pin_status", cps_pin_status, "PIN try counters.", _READ,
           result=obj({"tries_left": _INT, "max_tries": _INT, "blocked": _BOOL})),
    Method("cps.verify_pin", cps_verify_pin, "The holder types the PIN on the terminal keypad; "
           "the result says ok, wrong (tries left), blocked or cancelled. No method takes a PIN.",
           _SIGN, obj({"timeout": {"type": "number", "minimum": 5, "maximum": 120}}),
           _PIN_RESULT),
    Method("cps.sign", cps_sign, "Sign data with the CPS card (SHA-256, RSA PKCS#1 v1.5, "
           "split hash); needs the PIN verified.", _SIGN,
           obj({"data": _B64, "key": {"type": "string",
                                       "enum": ["signature", "authentication"]}}, ("data",)),
           _SIGNATURE),
    Method("cps.authenticate", cps_authenticate, "INTERNAL AUTHENTICATE of SHA-256(challenge)"
           " with the authentication key; needs the PIN verified.", _SIGN,
           obj({"challenge": {"type": "string", "maxLength": 1400}}, ("challenge",)),
           _SIGNATURE),
    Method("consent.ask", consent_ask, "Show a question on the terminal; the patient answers "
           "OK or Cancel.", frozenset({"dmp:read", "dmp:write", "dmp:emergency"}),
           obj({"text": {"type": "string", "minLength": 1, "maxLength": 200},
                 "timeout": {"type": "number", "minimum": 5, "maximum": 300}}, ("text",)),
           obj({"answer": {"type": "string", "enum": ["ok", "cancel", "timeout"]}})),
    Method("events.subscribe", events_subscribe, "Receive card.inserted, card.removed, "
           "pin.state and terminal.cancel (Cancel pressed outside a prompt) notifications on "
           "this connection.", _READ,
           obj({"events": {"type": "array", "maxItems": 8,
                            "items": {"type": "string", "enum": sorted(EVENT_NAMES)}}}),
           obj({"subscribed": {"type": "array", "items": _STR}})),
    Method("pair.begin", pair_begin, "Start pairing: the terminal shows a 6-digit code.",
           params=obj({"name": _NAME, "csr": {"type": "string", "maxLength": 8192,
                                                "description": "PEM CSR or public key"},
                        "scopes": {"type": "array", "maxItems": 7, "items": _SCOPE}},
                       ("name", "csr")),
           result=obj({"pairing_id": _STR, "expires_in": {"type": "number"},
                        "fingerprint": _STR}), unpaired=True),
    Method("pair.complete", pair_complete, "Finish pairing with the code read on the terminal; "
           "returns the client certificate.",
           params=obj({"pairing_id": {"type": "string", "maxLength": 64},
                        "code": {"type": "string", "pattern": r"\d{6}"}},
                       ("pairing_id", "code")),
           result=obj({"certificate": _STR, "ca_certificate": _STR, "fingerprint": _STR,
                        "scopes": {"type": "array", "items": _STR}}), unpaired=True),
    Method("clients.list", clients_list, "Paired clients.", frozenset({"admin"}),
           obj({"include_revoked": _BOOL}), obj({"clients": {"type": "array"}})),
    Method("clients.revoke", clients_revoke, "Revoke a client: refused at once.",
           frozenset({"admin"}), obj({"name": _NAME}, ("name",)),
           obj({"revoked": _STR, "connections_closed": _INT})),
]

# Mail and DMP methods live in their own modules (edged/api/mail_methods.py, dmp_methods.py).
METHODS: dict[str, Method] = {m.name: m for m in [*_CORE, *mail_methods.METHODS,
                                                  *dmp_methods.METHODS,
                                                  *audit_methods.METHODS]}


async def dispatch(daemon: Daemon, conn: Connection, name: str, params: dict[str, Any]) -> Any:
    """Check pairing, scope and parameters, then run the method."""
    from edged.api.schema import validate

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
    validate(params, method.params)
    return await method.handler(daemon, conn, params)
