"""P3's baseline: a bare `websockets` TLS 1.3 server answering each JSON-RPC call at once.

It uses edged's own key, certificate and client CA (so the SDK connects to it unchanged, with
its client certificate and pinned fingerprint) and the same websockets options as edged,
and answers every request with a result shaped like system.info: what the socket, TLS,
websockets and JSON cost without edged's work. It runs in its own process, as edged does.

    python -m bench.bare STATE_DIR      # prints "port N", serves until stdin closes
"""

from __future__ import annotations

import asyncio
import json
import ssl
import sys
from pathlib import Path

from websockets.asyncio.server import ServerConnection, serve

from bifente.edged.api.server import COMPRESSION, _size_tls_read_buffer
from bifente.edged.state.keystore import Keystore
from bifente.edged.state.keywrap import load_key_wrapper

__all__ = ["main"]

# system.info's shape, member for member (edged/api/methods.py), so that both servers encode
# and the clients decode the same JSON.
RESULT = {"protocol": "1.0", "version": "0.0.0", "fingerprint": "0" * 64, "model": "bifente",
          "capabilities": ["vitale", "cps"], "client": "bench", "scopes": ["identity:read"],
          "limits": {"max_message_bytes": 1048576, "rate_per_second": 1000000.0,
                     "rate_burst": 1000000, "max_connections_per_client": 500,
                     "max_in_flight": 8}}


def _context(state: Path) -> ssl.SSLContext:
    # edged's own context: the server key is sealed with the state key (docs/security.md).
    keystore = Keystore(state / "keys", wrapper=load_key_wrapper(state))
    return keystore.server_ssl_context()


async def _answer(ws: ServerConnection) -> None:
    async for raw in ws:
        request = json.loads(raw)
        await ws.send(json.dumps({"jsonrpc": "2.0", "id": request.get("id"), "result": RESULT}))


async def _serve(state: Path) -> None:
    _size_tls_read_buffer()
    async with serve(_answer, "127.0.0.1", 0, ssl=_context(state), compression=COMPRESSION,
                     server_header=None) as server:
        print(f"port {server.sockets[0].getsockname()[1]}", flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)


def main() -> int:
    """Serve until standard input is closed."""
    asyncio.run(_serve(Path(sys.argv[1])))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
