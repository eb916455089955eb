"""The parts of the protocol contract that are not methods: errors, close codes, events.

docs/protocol.md and docs/openrpc.json are both rendered from these tables and from the
method table (edged/api/methods.py), so the two documents cannot disagree.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bifente.client import codes
from bifente.edged.api import jsonrpc

__all__ = ["CLOSE_CODES", "ERRORS", "EVENTS", "ErrorKind", "all_reasons"]


@dataclass(frozen=True)
class ErrorKind:
    """One error code: what it means and every `data.reason` it can carry."""

    code: int
    meaning: str
    reasons: tuple[str, ...]
    notes: str = ""  # extra data fields, in Markdown
    open_ended: bool = False  # more reasons may come from a remote host (DMP)


ERRORS: tuple[ErrorKind, ...] = (
    ErrorKind(jsonrpc.PARSE_ERROR, "not JSON (id is null)", ("parse_error",)),
    ErrorKind(jsonrpc.INVALID_REQUEST, "not a JSON-RPC 2.0 request object, or an id that is "
              "not a string or an integer (fractions are refused); id is the request's when "
              "it could be read, else null", ("invalid_request", "batch_not_supported")),
    ErrorKind(jsonrpc.METHOD_NOT_FOUND, "unknown method", ("method_not_found",)),
    ErrorKind(jsonrpc.INVALID_PARAMS, "parameters do not match the schema (positional "
              "`params` arrays included: named parameters only), an unknown client name, an "
              "emergency access without a reason", ("invalid_params", "unknown_client",
                                                    "reason_required", "too_many_uploads",
                                                    "unknown_upload", "upload_committed",
                                                    "bad_offset", "upload_incomplete",
                                                    "digest_mismatch")),
    ErrorKind(jsonrpc.INTERNAL_ERROR, "a bug; details are in the daemon's log",
              ("internal_error",)),
    ErrorKind(codes.NOT_PAIRED, "the client must pair first", ("not_paired",)),
    ErrorKind(codes.FORBIDDEN, "the client lacks a scope, or asks what no client may: a "
              "challenge of the DMP host's shape (docs/security.md)",
              ("missing_scope", "challenge_reserved"),
              "`data.scopes` lists the scopes that would be accepted"),
    ErrorKind(codes.REVOKED, "the client's certificate was revoked; the daemon closes the "
              "socket with 4403 (a revocation closes open sockets first, so the error is "
              "seen on the next connection)", ("revoked",)),
    ErrorKind(codes.RATE_LIMITED, "too many calls, too many prompts on the terminal "
              "(docs/security.md), or too many connections for this client (sent with id "
              "null right before the close 1008)",
              ("rate_limited", "too_many_connections", "prompt_pending"),
              "`data.retry_after` (seconds) for `rate_limited`; `prompt_pending`: a prompt "
              "of this client is already waiting on the terminal"),
    ErrorKind(codes.TOO_LARGE, "a message or a decoded parameter larger than its limit "
              "(id is null when the message was too large to be read)", ("too_large",),
              "`data.limit` (bytes)"),
    ErrorKind(codes.STORAGE_FULL, "the terminal's disk is nearly full: new mail, DMP feeds "
              "to queue and uploads are refused before anything is written (what is stored "
              "stays; docs/edged.md, \"Disk space\")", ("disk_full",),
              "`data.free_bytes`, `data.needed_bytes`, `data.reserve_bytes`"),
    ErrorKind(codes.CARD_ERROR, "card problem",
              ("no_card", "card_removed", "card_busy", "timeout", "card_unreadable",
               "card_refused", "reader_error", "other_professional"),
              "`data.sw` for `card_refused`; `other_professional`: the CPS card in the "
              "terminal is not the one of the professional a queued DMP feed is for"),
    ErrorKind(codes.PIN_ERROR, "PIN problem: a signature or decryption needs the PIN first "
              "(cps.verify_pin reports wrong/blocked/cancelled in its result, not as errors)",
              ("wrong_pin", "pin_blocked", "pin_cancelled", "no_pin_pad", "pin_required"),
              "`data.tries_left` for `wrong_pin`"),
    ErrorKind(codes.PAIRING_ERROR, "pairing refused",
              ("invalid_request", "unknown_pairing", "expired", "wrong_code", "locked_out",
               "busy", "duplicate_name"),
              "`data.attempts_left` for `wrong_code`, `data.retry_after` for `locked_out` and "
              "`busy`"),
    ErrorKind(codes.CONSENT_ERROR, "the terminal cannot ask, or the patient did not consent "
              "(DMP), or the holder did not confirm a signature on the terminal",
              ("no_terminal", "consent_refused", "consent_timeout", "vitale_required",
               "ins_not_on_card", "signature_refused", "signature_timeout")),
    ErrorKind(codes.MAIL_ERROR, "secure mail refused",
              ("unknown_recipient", "attachment_too_large", "message_too_large",
               "signature_invalid", "certificate_invalid", "not_for_this_recipient",
               "decryption_failed", "sender_mismatch", "not_encrypted", "not_signed",
               "malformed_message", "unsupported_algorithm", "unsuitable_recipient",
               "signing_failed", "operator_unavailable", "operator_refused",
               "no_such_message", "not_configured", "mail_error"),
              "`data.address` (unknown_recipient); `data.filename`, `size`, `limit` "
              "(attachment_too_large); `data.detail` (signature_invalid, "
              "certificate_invalid: the verification reason, e.g. `digest-mismatch`)"),
    ErrorKind(codes.DMP_ERROR, "the DMP host refused, or cannot be reached",
              ("host_unreachable", "host_untrusted", "dmp_not_configured", "cda_invalid",
               "ins_invalid", "ins_mismatch", "dmp_exists", "dmp_not_found",
               "unknown_document", "outside_access_matrix", "insurer_forbidden",
               "occupational_needs_express_consent", "emergency_opposed",
               "not_regulating_doctor", "consent_forged", "consent_expired",
               "consent_replayed"),
              "other reasons are the host's reason codes (docs/dmp-api.md); `data.status` is "
              "its HTTP status, `data.details` the CDA problems", open_ended=True),
)

# RFC 6455 §7.4: 1000-2999 are the protocol's, 4000-4999 are for applications.
CLOSE_CODES: tuple[tuple[int, str], ...] = (
    (1000, "normal closure (either side)"),
    (1001, "going away: the daemon stops, or the connection stayed idle longer than "
           "`idle_timeout` without an event subscription (reason `idle timeout`)"),
    (1002, "WebSocket protocol error (RFC 6455 §7.4.1)"),
    (1008, "policy violation: too many connections for this client "
           "(`max_connections_per_client`); an error -32003 `too_many_connections` with id "
           "null is sent first"),
    (1009, "a message larger than twice `max_message_bytes` (RFC 6455 §7.4.1); smaller "
           "oversized messages get the error -32004 instead"),
    (1011, "the daemon hit an unexpected condition"),
    (4403, "the client's certificate was revoked"),
)

_TIME = {"type": "number", "description": "Unix time in seconds"}
_SEQ = {"type": "integer", "minimum": 1,
        "description": "increases by one for each event the daemon publishes (all kinds): "
                       "events arrive in seq order; with a subscription to every event, a "
                       "gap means events were missed (`dropped` counts them in any case)"}
_DROPPED = {"type": "integer", "minimum": 1,
            "description": "events this connection lost since the last one it received, "
                           "because it read too slowly"}
_CARD_EVENT = {"slot": {"type": "string"}, "reader": {"type": "string"},
               "kind": {"type": "string", "enum": ["cps", "vitale", "vitale1", "unknown",
                                                   "empty"]}}


def _event(props: dict[str, Any], required: tuple[str, ...]) -> dict[str, Any]:
    return {"type": "object",
            "properties": {**props, "time": _TIME, "seq": _SEQ, "dropped": _DROPPED},
            "required": [*required, "time", "seq"], "additionalProperties": False}


EVENTS: dict[str, tuple[str, dict[str, Any]]] = {
    "card.inserted": ("A card was inserted in a slot.",
                      _event(_CARD_EVENT, ("slot", "reader", "kind"))),
    "card.removed": ("A card was removed from a slot (`kind` is what it was).",
                     _event(_CARD_EVENT, ("slot", "reader", "kind"))),
    "reader.lost": ("A reader failed or went away (pcscd lost, reader unplugged): the card "
                    "it held (`kind`) cannot be reached; calls that need a card of that kind "
                    "get `reader_error`, not `card_removed` or `no_card`, until the reader is "
                    "back or such a card is inserted elsewhere (other kinds: `no_card`). "
                    "`reader.restored` follows when it is back.",
                    _event({**_CARD_EVENT, "reason": {"type": "string"}},
                           ("slot", "reader", "kind", "reason"))),
    "reader.restored": ("A lost reader is back; a card in it is announced by card.inserted.",
                        _event({"slot": {"type": "string"}, "reader": {"type": "string"}},
                               ("slot", "reader"))),
    "pin.state": ("The outcome of a PIN entry, for every subscriber.",
                  _event({"result": {"type": "string",
                                     "enum": ["ok", "wrong", "blocked", "cancelled", "reset"]},
                          "tries_left": {"type": "integer", "minimum": 0}},
                         ("result", "tries_left"))),
    "terminal.cancel": ("Cancel was pressed on the terminal outside a prompt.", _event({}, ())),
    "terminal.lost": ("The daemon lost the link to the terminal (unplugged, reset).",
                      _event({"reason": {"type": "string"}}, ())),
    "terminal.restored": ("The link to the terminal is back.", _event({}, ())),
}


def all_reasons() -> set[str]:
    """Every `data.reason` the table lists."""
    return {r for kind in ERRORS for r in kind.reasons}
