"""JSON-RPC 2.0 messages (jsonrpc.org/specification): parse requests, build responses.

Every error the API returns has a stable numeric code and a machine-readable `data.reason`.
"""

from __future__ import annotations

import json
import logging
from typing import Any, NamedTuple

__all__ = [
    "INTERNAL_ERROR",
    "INVALID_PARAMS",
    "INVALID_REQUEST",
    "METHOD_NOT_FOUND",
    "PARSE_ERROR",
    "Request",
    "RpcError",
    "error_response",
    "notification",
    "parse_message",
    "peek_id",
    "result_response",
]

_log = logging.getLogger(__name__)

# JSON-RPC 2.0 §5.1 reserved codes.
PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603


class RpcError(Exception):
    """An error to send back: code, message, and data with at least a `reason`.

    `request_id` is the id read from a request that was refused while parsing (JSON-RPC 2.0
    §5: the id is null only when it could not be read); `notification` is True when the
    request was a readable notification, which is never answered (§4.1).
    """

    def __init__(self, code: int, message: str, reason: str, **data: Any) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.data = {"reason": reason, **data}
        self.request_id: int | str | None = None
        self.notification = False


class Request(NamedTuple):
    """One call (an `id` member, possibly null) or notification (no `id` member, §4.1).

    A named tuple: one is built per incoming message, at a third of a frozen dataclass's cost.
    """

    method: str
    params: dict[str, Any]
    id: int | str | None = None
    is_notification: bool = False


def parse_message(text: str | bytes) -> Request:
    """Parse one JSON-RPC request; batches are not supported (one call per message)."""
    try:
        message = json.loads(text)
    except RecursionError as exc:
        # ~1000 nested arrays/objects exhaust the decoder's stack: still a message we cannot
        # take (JSON-RPC 2.0 §5.1, -32700), noted in one line rather than a traceback.
        _log.info("JSON-RPC message of %d bytes nested too deep: parse error", len(text))
        raise RpcError(PARSE_ERROR, "parse error: the message is nested too deep",
                       "parse_error") from exc
    except (ValueError, UnicodeDecodeError) as exc:
        raise RpcError(PARSE_ERROR, "parse error: the message is not JSON", "parse_error") \
            from exc
    if isinstance(message, list):
        raise RpcError(INVALID_REQUEST, "batches are not supported", "batch_not_supported")
    if not isinstance(message, dict):
        raise RpcError(INVALID_REQUEST, "not a JSON-RPC 2.0 request", "invalid_request")
    has_id = "id" in message
    request_id = message.get("id")
    id_ok = request_id is None or (isinstance(request_id, int | str)
                                   and not isinstance(request_id, bool))

    def refuse(code: int, text: str, reason: str) -> RpcError:
        error = RpcError(code, text, reason)
        error.request_id = request_id if id_ok else None
        return error

    if message.get("jsonrpc") != "2.0":
        raise refuse(INVALID_REQUEST, "not a JSON-RPC 2.0 request", "invalid_request")
    if not id_ok:
        raise refuse(INVALID_REQUEST, "id must be a string or an integer", "invalid_request")
    method = message.get("method")
    if not isinstance(method, str) or not method:
        raise refuse(INVALID_REQUEST, "method must be a non-empty string", "invalid_request")
    params = message.get("params", {})
    if params is None:
        params = {}
    if not isinstance(params, dict):
        error = refuse(INVALID_PARAMS, "params must be an object (named parameters)",
                       "invalid_params")
        error.notification = not has_id
        raise error
    return Request(method, params, request_id, is_notification=not has_id)


def peek_id(text: str | bytes) -> int | str | None:
    """The id of a message refused before parsing (too large), when it can be read."""
    try:
        message = json.loads(text)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None
    request_id = message.get("id") if isinstance(message, dict) else None
    if isinstance(request_id, bool) or not isinstance(request_id, int | str):
        return None
    return request_id


# One encoder for every message: json.dumps builds a new one per call when given options.
_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))


def _dump(obj: dict[str, Any]) -> str:
    return _ENCODER.encode(obj)


def result_response(request_id: int | str | None, result: Any) -> str:
    """A success response."""
    return _dump({"jsonrpc": "2.0", "id": request_id, "result": result})


def error_response(request_id: int | str | None, error: RpcError) -> str:
    """An error response."""
    return _dump({"jsonrpc": "2.0", "id": request_id,
                  "error": {"code": error.code, "message": error.message, "data": error.data}})


def notification(method: str, params: dict[str, Any]) -> str:
    """A server-to-client notification (events)."""
    return _dump({"jsonrpc": "2.0", "method": method, "params": params})
