"""A LAN host guessing pairing codes over the real API, from several loopback addresses.

Review finding L1 (docs/security.md, "Pairing cannot be held shut from the LAN"): wrong codes
from a few addresses, a fresh client name for each pairing begun, keep pairing locked for
everyone. Loopback sources 127.0.x.y stand for LAN hosts.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import ssl
from collections import Counter
from typing import Any

from websockets.asyncio.client import ClientConnection, connect

from bifente.client.tls import generate_client_key_and_csr

__all__ = ["LanAttacker"]


class LanAttacker:
    """Wrong codes from `sources`, one connection per address, over TLS + WebSocket."""

    def __init__(self, port: int, sources: tuple[str, ...]) -> None:
        self.port = port
        self.sources = sources
        self.answers: Counter[str] = Counter()  # "wrong_code", "locked_out", ...
        self.refused: set[str] = set()  # sources answered locked_out since mark()
        self._names = itertools.count(1)
        self._ids = itertools.count(1)
        self._csr = generate_client_key_and_csr("Bot")[1].decode()
        self._ws: dict[str, ClientConnection] = {}
        self._pending: dict[str, str] = {}  # source -> pairing id

    async def _call(self, source: str, method: str, params: dict[str, Any]) -> dict[str, Any]:
        ws = self._ws.get(source)
        if ws is None:
            context = ssl.create_default_context()
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE  # an attacker pins nothing
            ws = await connect(f"wss://127.0.0.1:{self.port}/", ssl=context,
                               local_addr=(source, 0), open_timeout=10)
            self._ws[source] = ws
        call_id = next(self._ids)
        await ws.send(json.dumps({"jsonrpc": "2.0", "id": call_id, "method": method,
                                  "params": params}))
        while True:
            answer = json.loads(await asyncio.wait_for(ws.recv(), 15))
            if answer.get("id") == call_id:
                return answer

    async def guess(self, source: str) -> str:
        """One wrong code from source (a pairing begun when needed); the daemon's answer."""
        if source not in self._pending:
            begun = await self._call(source, "pair.begin",
                                     {"name": f"Bot {next(self._names)}", "csr": self._csr})
            if "error" in begun:
                return self._count(source, begun)
            self._pending[source] = begun["result"]["pairing_id"]
        # "000000" is right once in a million pairings: the test would then fail, loudly.
        done = await self._call(source, "pair.complete",
                                {"pairing_id": self._pending[source], "code": "000000"})
        assert "error" in done, "the attacker guessed a code"
        data = done["error"].get("data", {})
        if data.get("reason") != "wrong_code" or not data.get("attempts_left"):
            self._pending.pop(source, None)
        return self._count(source, done)

    def _count(self, source: str, answer: dict[str, Any]) -> str:
        reason = str(answer["error"].get("data", {}).get("reason", answer["error"]["message"]))
        self.answers[reason] += 1
        if reason == "locked_out":
            self.refused.add(source)
        return reason

    def mark(self) -> None:
        """Forget which sources were refused so far."""
        self.refused.clear()

    async def until_locked_out(self, limit: int = 40) -> int:
        """Guess round the sources until the daemon answers locked_out; guesses made."""
        for n, source in zip(range(1, limit + 1), itertools.cycle(self.sources), strict=False):
            if await self.guess(source) == "locked_out":
                return n
        raise AssertionError(f"no lockout after {limit} wrong codes: {self.answers}")

    async def flood(self, pause: float = 0.02) -> None:
        """Guess round the sources forever (cancel to stop)."""
        for source in itertools.cycle(self.sources):
            await self.guess(source)
            await asyncio.sleep(pause)

    async def close(self) -> None:
        """Close every connection."""
        for ws in self._ws.values():
            with contextlib.suppress(Exception):
                await ws.close()
        self._ws.clear()
