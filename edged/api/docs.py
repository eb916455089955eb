"""Generate docs/protocol.md from the method table (`python -m edged.api.docs [--check]`)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from edged.api import errors, jsonrpc
from edged.api.methods import EVENT_NAMES, METHODS, PROTOCOL_VERSION

__all__ = ["render"]

TARGET = Path(__file__).resolve().parents[2] / "docs" / "protocol.md"

_INTRO = f"""# edged protocol, version {PROTOCOL_VERSION}

Generated from `edged/api/methods.py` by `python -m edged.api.docs`; do not edit by hand.

## Transport
- WebSocket over **TLS 1.3 only** to `wss://HOST:PORT/` (default port 4443). The daemon's
  certificate is self-issued: clients **pin its SHA-256 fingerprint**, published in the mDNS
  TXT record (`fp=sha256:...`, service `_bifente._tcp.local.`) and shown at pairing.
- One JSON-RPC 2.0 request per WebSocket text message, named parameters only (`params` is
  an object), no batches. Responses carry the request's `id`; calls on one connection may
  complete out of order.
- Before pairing a client connects without a certificate and may call only `pair.begin` and
  `pair.complete`. Afterwards it connects with the certificate it received (mutual TLS);
  every method checks the scopes granted at pairing.
- Limits: messages up to `max_message_bytes` (1 MiB by default; beyond twice that the socket
  is closed with 1009), `rate_per_second` calls with bursts of `rate_burst` per client,
  `max_connections_per_client` connections, 8 calls in flight per connection, an idle
  timeout for connections without a subscription.
- **No method takes a PIN.** The PIN is typed on the terminal keypad; the API only learns
  the outcome.

## Errors
Every error has `data.reason`, a stable machine-readable string; some add fields.

| code | meaning | reasons |
|---|---|---|
| {jsonrpc.PARSE_ERROR} | not JSON | `parse_error` |
| {jsonrpc.INVALID_REQUEST} | not a JSON-RPC 2.0 request | `invalid_request`, `batch_not_supported` |
| {jsonrpc.METHOD_NOT_FOUND} | unknown method | `method_not_found` |
| {jsonrpc.INVALID_PARAMS} | parameters do not match the schema | `invalid_params`, `too_large` |
| {jsonrpc.INTERNAL_ERROR} | a bug; details are in the daemon's log | `internal_error` |
| {errors.NOT_PAIRED} | the client must pair first | `not_paired` |
| {errors.FORBIDDEN} | the client lacks a scope (`data.scopes` lists the accepted ones), or asks what no client may (docs/security.md) | `missing_scope`, `challenge_reserved` |
| {errors.REVOKED} | the client's certificate was revoked; the socket closes (4403) | `revoked` |
| {errors.RATE_LIMITED} | too many calls (`data.retry_after` seconds) or connections, or a prompt of this client already waiting on the terminal | `rate_limited`, `too_many_connections`, `prompt_pending` |
| {errors.TOO_LARGE} | message larger than the limit | `too_large` |
| {errors.CARD_ERROR} | card problem | `no_card`, `card_removed`, `card_busy`, `timeout`, `card_unreadable`, `card_refused` (`data.sw`), `reader_error` |
| {errors.PIN_ERROR} | PIN problem | `wrong_pin` (`data.tries_left`), `pin_blocked`, `pin_cancelled`, `no_pin_pad`, `pin_required` |
| {errors.PAIRING_ERROR} | pairing refused | `invalid_request`, `unknown_pairing`, `expired`, `wrong_code` (`data.attempts_left`), `locked_out` (`data.retry_after`) |
| {errors.CONSENT_ERROR} | the terminal cannot ask, or the patient did not consent (DMP), or the holder did not confirm a signature | `no_terminal`, `consent_refused`, `consent_timeout`, `vitale_required`, `ins_not_on_card`, `signature_refused`, `signature_timeout` |
| {errors.MAIL_ERROR} | secure mail refused | `unknown_recipient` (`data.address`), `attachment_too_large` (`data.filename`, `size`, `limit`), `message_too_large`, `signature_invalid` (`data.detail`: the verification reason, e.g. `digest-mismatch`), `certificate_invalid` (`data.detail`), `not_for_this_recipient`, `decryption_failed`, `sender_mismatch`, `not_encrypted`, `not_signed`, `malformed_message`, `unsupported_algorithm`, `unsuitable_recipient`, `signing_failed`, `operator_unavailable`, `operator_refused`, `no_such_message`, `not_configured`, `mail_error` |
| {errors.DMP_ERROR} | the DMP host refused (`data.reason` is the host's reason code, docs/dmp-api.md; `data.status` its HTTP status, `data.details` the CDA problems) | e.g. `cda_invalid`, `ins_invalid`, `ins_mismatch`, `dmp_exists`, `dmp_not_found`, `unknown_document`, `outside_access_matrix`, `insurer_forbidden`, `occupational_needs_express_consent`, `emergency_opposed`, `not_regulating_doctor`, `consent_forged`, `consent_expired`, `consent_replayed`; and edged's `host_unreachable`, `host_untrusted`, `dmp_not_configured` |

## Events
After `events.subscribe`, the daemon sends notifications (no `id`): {", ".join(
    f"`{e}`" for e in sorted(EVENT_NAMES))}. Each carries `time` (Unix seconds) and, when
the client was too slow and events were dropped, `dropped` (a count).

## Methods
"""


def render() -> str:
    """The whole document."""
    parts = [_INTRO]
    for method in sorted(METHODS.values(), key=lambda m: m.name):
        scopes = ("none (before pairing)" if method.unpaired else
                  " or ".join(f"`{s}`" for s in sorted(method.scopes)) or "any paired client")
        parts.append(f"### `{method.name}`\n\n{method.summary}\n\nScope: {scopes}\n\n"
                     "Parameters:\n\n```json\n" + json.dumps(method.params, indent=2)
                     + "\n```\n\nResult:\n\n```json\n"
                     + json.dumps(method.result or {"type": "object"}, indent=2) + "\n```\n")
    return "\n".join(parts)


def main() -> int:
    """Write docs/protocol.md, or with --check fail when it is stale."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true")
    args = parser.parse_args()
    text = render()
    if args.check:
        if not TARGET.exists() or TARGET.read_text() != text:
            print(f"{TARGET} is stale: run python -m edged.api.docs", file=sys.stderr)
            return 1
        return 0
    TARGET.write_text(text)
    print(f"wrote {TARGET}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
