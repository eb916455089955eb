"""What a JSON-RPC method is, and the schema pieces methods share (edged/api/methods.py)."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from bifente.client.codes import TOO_LARGE
from bifente.edged.api.jsonrpc import INVALID_PARAMS, RpcError
from bifente.edged.readers.pcsc import CardKind
from bifente.edged.services import cards

if TYPE_CHECKING:
    from bifente.edged.api.context import ApiContext, Caller

__all__ = ["B64", "BOOL", "INT", "MAX_SIGN_BYTES", "PROTOCOL_VERSION", "STR", "Handler", "Method",
           "b64_param", "obj", "on_card"]

T = TypeVar("T")
PROTOCOL_VERSION = "1.0"
# Data signed in one call: its base64 (4/3) and the request around it fit in the default
# 1 MiB message. Larger documents: sign their CMS signed attributes, or a digest.
MAX_SIGN_BYTES = 760 * 1024

Handler = Callable[["ApiContext", "Caller", dict[str, Any]], Awaitable[Any]]


@dataclass(frozen=True)
class Method:
    """One RPC method."""

    name: str
    handler: Handler
    summary: str
    scopes: frozenset[str] = frozenset()  # any of these; empty: any paired client
    params: dict[str, Any] = field(default_factory=lambda: obj({}))
    result: dict[str, Any] = field(default_factory=dict)
    unpaired: bool = False  # callable before pairing
    # The error codes of this method's own refusals (bifente/client/codes.py), besides the
    # ones every method may answer (edged/api/describe.py): the OpenRPC document lists both.
    errors: tuple[int, ...] = ()
    # Answers at once, never waiting on a card, the terminal, a host or a thread: handled in
    # the connection's read loop, without a task of its own (edged/api/server.py serve()).
    inline: bool = False


def obj(props: dict[str, Any], required: tuple[str, ...] = ()) -> dict[str, Any]:
    """A JSON Schema object with exactly these properties."""
    return {"type": "object", "properties": props, "required": list(required),
            "additionalProperties": False}


STR = {"type": "string"}
INT = {"type": "integer"}
BOOL = {"type": "boolean"}
B64 = {"type": "string", "contentEncoding": "base64",
       "description": f"base64 of at most {MAX_SIGN_BYTES} bytes",
       "maxLength": 4 * -(-MAX_SIGN_BYTES // 3)}
def b64_param(value: str, name: str, limit: int) -> bytes:
    """Decode a base64 parameter, refusing bad encodings and sizes over the limit."""
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise RpcError(INVALID_PARAMS, f"{name} is not valid base64", "invalid_params") from exc
    if len(raw) > limit:
        raise RpcError(TOO_LARGE, f"{name} is larger than {limit} bytes", "too_large",
                       limit=limit)
    return raw


async def on_card(daemon: ApiContext, conn: Caller, kind: CardKind, fn: Callable[[Any], T],
                  label: str, timeout: float | None = None) -> T:
    """Run fn on the session of the card of this kind, in its arbiter's queue."""
    return await cards.on_card(daemon, conn.client_id, kind, fn, label, timeout)
