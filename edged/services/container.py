"""The optional services the daemon runs beside the socket, each in its own typed field.

Each is built from the service context, or left None when its configuration leaves it off;
each has `async start()` and `async stop()`. The daemon starts them after the secure socket
and stops them, in reverse order, right after it. The API finds a service by its field, not by
scanning.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from bifente.edged.services.context import ServiceContext

if TYPE_CHECKING:
    from bifente.edged.services.dmp import DmpService
    from bifente.edged.services.mail import MailService
    from bifente.edged.services.proxy import ProxyServer

__all__ = ["Extension", "Services"]


class Extension(Protocol):
    """A service with a lifetime."""

    async def start(self) -> None:
        """Begin (listen, connect, deliver...)."""
        ...

    async def stop(self) -> None:
        """End, idempotent."""
        ...


@dataclass(frozen=True)
class Services:
    """Secure mail, the encrypting proxy and the DMP client; None where not configured."""

    mail: MailService | None = None
    proxy: ProxyServer | None = None
    dmp: DmpService | None = None

    @classmethod
    def build(cls, ctx: ServiceContext) -> Services:
        """Every configured service (imported only when the daemon builds them)."""
        from bifente.edged.services.dmp import create_service
        from bifente.edged.services.mail import extension
        from bifente.edged.services.proxy import proxy_extension

        return cls(mail=extension(ctx), proxy=proxy_extension(ctx), dmp=create_service(ctx))

    def running(self) -> list[Extension]:
        """The configured ones, in start order."""
        return [s for s in (self.mail, self.proxy, self.dmp) if s is not None]
