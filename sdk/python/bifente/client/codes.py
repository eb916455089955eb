"""The daemon's application error codes: what an error answer's `code` means (docs/protocol.md).

JSON-RPC 2.0 §5.1 leaves -32000..-32099 to the implementation. The daemon answers with these
and a client reads them, so both take them from here; the reasons that refine each code are
in the error table of docs/openrpc.json (`x-errors`).
"""

from __future__ import annotations

__all__ = [
    "CARD_ERROR",
    "CONSENT_ERROR",
    "DMP_ERROR",
    "FORBIDDEN",
    "MAIL_ERROR",
    "NOT_PAIRED",
    "PAIRING_ERROR",
    "PIN_ERROR",
    "RATE_LIMITED",
    "REVOKED",
    "STORAGE_FULL",
    "TOO_LARGE",
]

NOT_PAIRED = -32000
FORBIDDEN = -32001
REVOKED = -32002
RATE_LIMITED = -32003
TOO_LARGE = -32004
STORAGE_FULL = -32005  # the state's disk is nearly full: new durable work refused
CARD_ERROR = -32010
PIN_ERROR = -32020
PAIRING_ERROR = -32030
CONSENT_ERROR = -32040
MAIL_ERROR = -32050
DMP_ERROR = -32060  # the DMP host refused: data.reason is the host's reason code
