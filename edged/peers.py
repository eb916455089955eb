"""The unit per-peer caps count: an address prefix (edged/api/gate.py, the audit budget)."""

from __future__ import annotations

import ipaddress

__all__ = ["prefix_of"]


def prefix_of(address: str) -> str:
    """The unit the per-peer caps count: an IPv4 /24 or an IPv6 /64."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    bits = 24 if ip.version == 4 else 64
    return str(ipaddress.ip_network(f"{ip}/{bits}", strict=False))
