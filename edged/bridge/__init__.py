"""`bifente bridge`: the local companion through which web pages use the terminal.

It holds the pairing (mutual TLS to edged) and serves a loopback WebSocket to the web
origins on its allow-list, each with its own token and scopes (docs/integrators.md).
"""

from bifente.edged.bridge.allowlist import AllowList, normalize_origin
from bifente.edged.bridge.server import DEFAULT_PORT, Bridge

__all__ = ["DEFAULT_PORT", "AllowList", "Bridge", "normalize_origin"]
