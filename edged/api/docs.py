"""Generate docs/protocol.md from the method table (`python -m bifente.edged.api.docs [--check]`)."""

from __future__ import annotations

import json
from pathlib import Path

from bifente.edged.api.contract import CLOSE_CODES, ERRORS, EVENTS
from bifente.edged.api.generated import write_or_check
from bifente.edged.api.methods import METHODS, PROTOCOL_VERSION

__all__ = ["render"]

TARGET = Path(__file__).resolve().parents[2] / "docs" / "protocol.md"

_INTRO = """# edged protocol, version {{VERSION}}

Generated from `edged/api/methods.py` and `edged/api/contract.py` by
`python -m bifente.edged.api.docs`; do not edit by hand. The same contract, machine-readable:
[openrpc.json](openrpc.json) (OpenRPC 1.3, also answered by the `rpc.discover` method).

## Transport
- WebSocket over **TLS 1.3 only** to `wss://HOST:PORT/` (default port 4443). The daemon's
  certificate is self-issued: clients **pin its SHA-256 fingerprint**, published in the mDNS
  TXT record (`fp=sha256:...`, service `_bifente._tcp.local.`) and shown at pairing.
- One JSON-RPC 2.0 request per WebSocket text message (a binary message is read as UTF-8
  text), named parameters only (`params` is an object; absent or `null` means `{}`), no
  batches. Calls on one connection may complete out of order.
- **Ids.** A response carries the request's `id` exactly (a string or an integer; fractions
  are refused with -32600). When the id could not be read (not JSON, not an object, a
  message too large to read) the error's `id` is `null` (JSON-RPC 2.0 §5).
- **Notifications.** A request without an `id` member is a notification (JSON-RPC 2.0 §4.1):
  the daemon runs it and **never answers**, not even with an error. Use an id to learn the
  outcome.
- Before pairing a client connects without a certificate and may call only `pair.begin`,
  `pair.complete` and `rpc.discover`. Afterwards it connects with the certificate it
  received (mutual TLS); every method checks the scopes granted at pairing, and
  `system.info` tells a client its own name and scopes.
- Limits: messages up to `max_message_bytes` (1 MiB by default: -32004 `too_large` above
  it, and beyond twice that the socket is closed with 1009), `rate_per_second` calls with
  bursts of `rate_burst` per client, `max_connections_per_client` connections (higher for
  a client named in `[limits."NAME"]`, e.g. a practice server proxying many desks:
  docs/edged.md; `system.info` tells each client its own), 8 calls in
  flight per connection (a 9th call is read only when one of them ends: back-pressure, no
  error; `system.info`, `rpc.discover`, `readers.list` and `events.subscribe` answer at
  once and are not counted), an idle timeout for connections without a subscription
  (counted from the connection's last message). The schema maxima below
  fit in the default message limit.
- **No method takes a PIN.** The PIN is typed on the terminal keypad; the API only learns
  the outcome.

## Errors
{{ERRORS}}
## Events
{{EVENTS}}
## Methods
"""


def _errors() -> str:
    rows = ["Every error has `data.reason`, a stable machine-readable string; some add "
            "fields.\n", "| code | meaning | reasons | data |", "|---|---|---|---|"]
    for kind in ERRORS:
        reasons = ", ".join(f"`{r}`" for r in kind.reasons)
        if kind.open_ended:
            reasons += ", or the host's own reason code"
        rows.append(f"| {kind.code} | {kind.meaning} | {reasons} | {kind.notes} |")
    rows += ["", "WebSocket close codes (RFC 6455 §7.4):", "", "| code | when |", "|---|---|"]
    rows += [f"| {code} | {text} |" for code, text in CLOSE_CODES]
    return "\n".join(rows) + "\n"


def _events() -> str:
    out = ["After `events.subscribe`, the daemon sends notifications (no `id`). Every event "
           "carries `time` (Unix seconds) and `seq` (one counter for the whole daemon, for all "
           "kinds of events: in order, and with a subscription to every event a gap means "
           "missed events); `dropped` counts the events this connection lost, since the last "
           "one it received, because it read too slowly.\n"]
    for name, (summary, schema) in sorted(EVENTS.items()):
        out.append(f"### event `{name}`\n\n{summary}\n\n```json\n"
                   + json.dumps(schema, indent=2) + "\n```\n")
    return "\n".join(out)


def render() -> str:
    """The whole document."""
    intro = (_INTRO.replace("{{VERSION}}", PROTOCOL_VERSION).replace("{{ERRORS}}", _errors())
             .replace("{{EVENTS}}", _events()))
    parts = [intro]
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
    return write_or_check(TARGET, render, "bifente.edged.api.docs", __doc__ or "")


if __name__ == "__main__":
    raise SystemExit(main())
