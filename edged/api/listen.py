"""The daemon's listening socket, bound without importing the server (edged/early.py)."""

from __future__ import annotations

import socket

__all__ = ["LISTEN_BACKLOG", "listen"]

LISTEN_BACKLOG = 256


def listen(host: str, port: int) -> socket.socket:
    """The listening socket (IPv6 "::" also takes IPv4, where the system allows it)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    return socket.create_server((host, port), family=family, backlog=LISTEN_BACKLOG,
                                dualstack_ipv6=host == "::" and socket.has_dualstack_ipv6())
