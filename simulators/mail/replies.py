"""The SMTP replies of the trust space (RFC 5321 codes, RFC 3463 enhanced status codes).

These texts are part of the simulator's contract (simulators/mail/README.md): clients and
tests may match on them.
"""

from __future__ import annotations

__all__ = [
    "BAD_ADDRESS",
    "CLEAR_MAIL_REFUSED",
    "DELIVERED",
    "NOT_YOUR_ADDRESS",
    "NO_ROUTE",
    "OK_RCPT",
    "OK_SENDER",
    "OUTSIDE_TRUST_SPACE",
    "RELAY_DENIED",
    "RELAY_FAILED",
    "RELAY_NEEDS_OPERATOR",
    "RELAY_WRONG_OPERATOR",
    "TOO_BIG",
    "TOO_MANY_RECIPIENTS",
    "UNKNOWN_MAILBOX",
]

OK_SENDER = "250 2.1.0 sender ok"
OK_RCPT = "250 2.1.5 recipient ok"
DELIVERED = "250 2.0.0 delivered ({count} mailbox(es), {relayed} relayed)"
BAD_ADDRESS = "501 5.1.3 bad address syntax: {reason}"
OUTSIDE_TRUST_SPACE = "550 5.7.1 {domain} is outside the health trust space"
NOT_YOUR_ADDRESS = "553 5.7.1 {sender} is not an address of the authenticated account"
UNKNOWN_MAILBOX = "550 5.1.1 {address}: no such mailbox"
NO_ROUTE = "550 5.4.4 no route to the operator of {domain}"
TOO_MANY_RECIPIENTS = "452 4.5.3 too many recipients (at most {limit} per message)"
TOO_BIG = "552 5.3.4 message too big for the operator (limit {limit} bytes)"
CLEAR_MAIL_REFUSED = ("554 5.7.0 clear mail refused: the trust space carries only signed and "
                      "encrypted mail")
RELAY_NEEDS_OPERATOR = ("530 5.7.0 relay needs a trust-space operator certificate "
                        "(TLS client authentication)")
RELAY_WRONG_OPERATOR = "550 5.7.1 operator {peer} may not relay mail from {domain}"
RELAY_DENIED = "550 5.7.1 relay denied: this server delivers {domain} only"
RELAY_FAILED = "451 4.4.1 relay to {domain} failed ({reason}); try again later"
