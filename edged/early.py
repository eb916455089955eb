"""Probe for the mDNS name while the daemon is still importing and starting (docs/benchmarks.md P7).

RFC 6762 §8.1 makes claiming a name take 0-250 ms of random delay, three probes 250 ms apart
and 250 ms of silence: about 0.9 s that a start in sequence adds after the imports and the
state. Here the listening socket is bound first (a client that finds us early waits in its
backlog until the server accepts, docs/discovery.md) and the name is probed from the event
loop while `bifente.edged.daemon` is imported in a thread. Whatever fails here is left to the normal
start, which reports it with its own messages.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from dataclasses import dataclass
from typing import Any

from bifente.edged.config import Config

__all__ = ["EarlyAdvert", "begin", "capabilities"]

log = logging.getLogger(__name__)


def capabilities(has_terminal: bool) -> list[str]:
    """What this terminal can do (also in the mDNS TXT record)."""
    caps = ["vitale", "cps", "sign"]
    if has_terminal:
        caps += ["pinpad", "consent"]
    return caps


@dataclass
class EarlyAdvert:
    """The bound listening socket and the announcer probing for our name."""

    sock: socket.socket
    announcer: Any  # bifente.edged.discovery.Announcer
    probing: asyncio.Task[None]

    async def cancel(self) -> None:
        """The daemon did not start: stop probing, close the socket."""
        self.probing.cancel()
        with contextlib.suppress(BaseException):
            await self.probing
        await self.announcer.close()
        self.sock.close()


async def begin(config: Config) -> EarlyAdvert | None:
    """Bind the socket and start probing; None when anything is off (the daemon then does it)."""
    if not config.mdns:
        return None
    sock: socket.socket | None = None
    try:
        from bifente.edged.api.listen import listen
        from bifente.edged.discovery import Advert, Announcer, default_name
        from bifente.edged.state.keystore import Keystore
        from bifente.edged.state.keywrap import load_key_wrapper

        state = config.state_dir
        state.mkdir(parents=True, exist_ok=True, mode=0o700)
        keystore = Keystore(state / "keys", hostname=socket.gethostname(),
                            wrapper=load_key_wrapper(state, config.state_key_file))
        sock = listen(config.host, config.port)
        advert = Advert(name=config.name or default_name(), port=sock.getsockname()[1],
                        fingerprint=keystore.fingerprint,
                        capabilities=tuple(capabilities(bool(config.terminal))),
                        model=config.model)
        interfaces = list(config.mdns_interfaces) or None
        if interfaces:  # announce only the addresses we were told to use
            import dataclasses

            advert = dataclasses.replace(advert, addresses=tuple(interfaces))
        announcer = Announcer(advert, interfaces=interfaces)
    except Exception as exc:  # the daemon's start reports it in its own words
        log.debug("no early mDNS start: %s", exc)
        if sock is not None:
            sock.close()
        return None
    return EarlyAdvert(sock, announcer, asyncio.create_task(announcer.start()))
