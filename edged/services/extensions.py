"""Optional services the daemon runs beside the socket (mail, DMP, proxy): one line each.

An extension is built from the daemon (or None when its configuration leaves it off) and has
`async start()` and `async stop()`; the daemon starts them after the secure socket and stops
them, in reverse order, right after it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from edged.daemon import Daemon

__all__ = ["EXTENSIONS", "Extension"]


class Extension(Protocol):
    """A service with a lifetime."""

    async def start(self) -> None:
        """Begin (listen, connect, deliver...)."""
        ...

    async def stop(self) -> None:
        """End, idempotent."""
        ...


# Factories: each returns an Extension, or None when not configured.
def _mail(daemon: Daemon) -> Any:
    from edged.services.mail import extension

    return extension(daemon)


EXTENSIONS: list[Callable[[Daemon], Any]] = [_mail]


def _proxy(daemon: Daemon) -> Any:
    from edged.services.proxy import proxy_extension

    return proxy_extension(daemon)


EXTENSIONS.append(_proxy)  # the encrypting proxy (M8)


def _dmp(daemon: Daemon) -> Any:
    from edged.services.dmp import create_service

    return create_service(daemon)


EXTENSIONS.append(_dmp)  # the shared medical record (DMP, issue 6)
