"""What edged announces on mDNS (DNS-SD `_bifente._tcp`): the advert, its TXT record and
the names it may use, checked against RFC 6763 before anything is sent."""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import ifaddr
from zeroconf import InterfaceChoice, IPVersion

from bifente.client.identity import fingerprint_of
from bifente.contracts.mdns import FINGERPRINT_PREFIX, PROTOCOL_VERSION

# Where to listen and send: None for all interfaces, or IP addresses (IPv6 also by index).
Interfaces = InterfaceChoice | Sequence[str | int] | None

# The advert's names are a contract with every client: contracts/mdns.py.
FP_HEX = re.compile(r"[0-9a-f]{64}")
_CAPABILITY = re.compile(r"[a-z0-9][a-z0-9._-]{0,31}")
TXT_STRING_MAX = 255  # RFC 6763 §6.1: one length byte per key=value string
_TXT_TOTAL_MAX = 1300  # RFC 6763 §6.2: the whole TXT record should fit one packet
INSTANCE_MAX = 63  # RFC 6763 §4.1.1: instance name <= 63 UTF-8 octets
_RENAME_ROOM = 4  # python-zeroconf renames a taken "name" to "name-2", "name-3"...
MAX_CAPS = 32
MAX_TEXT = 64  # longest version / capability token we accept from the network


def format_fingerprint(fingerprint: str) -> str:
    """A fingerprint in 4-digit groups for people to compare ("ab12 cd34 ...")."""
    return " ".join(fingerprint[i:i + 4] for i in range(0, len(fingerprint), 4))


def default_name() -> str:
    """The default instance name, `bifente-<hostname>`, short enough to leave room for a rename."""
    host = socket.gethostname().split(".")[0] or "edged"
    name = f"bifente-{host}"
    limit = INSTANCE_MAX - _RENAME_ROOM
    return name.encode()[:limit].decode(errors="ignore")


def host_addresses(ip_version: IPVersion = IPVersion.All) -> tuple[str, ...]:
    """This host's addresses worth announcing: no loopback, no IPv6 link-local (it needs a zone)."""
    found: list[str] = []
    for adapter in ifaddr.get_adapters():
        for ip in adapter.ips:
            text = ip.ip if isinstance(ip.ip, str) else ip.ip[0]
            addr = ipaddress.ip_address(text)
            if addr.is_loopback or (addr.version == 6 and addr.is_link_local):
                continue
            if (ip_version is IPVersion.V4Only and addr.version != 4) or (
                    ip_version is IPVersion.V6Only and addr.version != 6):
                continue
            if str(addr) not in found:
                found.append(str(addr))
    return tuple(sorted(found, key=lambda a: (ipaddress.ip_address(a).version, a)))


def _check_instance_name(name: str) -> None:
    size = len(name.encode())
    if not name or size > INSTANCE_MAX - _RENAME_ROOM:
        raise ValueError(f"instance name must be 1 to {INSTANCE_MAX - _RENAME_ROOM} UTF-8 bytes "
                         f"(RFC 6763 §4.1.1, with room for a '-N' rename), got {size}")
    if not name.isprintable():
        raise ValueError(f"instance name {name!r} has control characters")


def _check_txt(txt: Mapping[str, str]) -> None:
    total = 0
    for key, value in txt.items():
        size = len(f"{key}={value}".encode())
        if size > TXT_STRING_MAX:
            raise ValueError(f"TXT entry {key!r} is {size} bytes; RFC 6763 §6.1 allows "
                             f"{TXT_STRING_MAX} for key=value")
        total += 1 + size
    if total > _TXT_TOTAL_MAX:
        raise ValueError(f"TXT record is {total} bytes; keep it under {_TXT_TOTAL_MAX} "
                         "(RFC 6763 §6.2)")


@dataclass(frozen=True, kw_only=True)
class Advert:
    """What edged announces: where to connect and which certificate to pin, no personal data."""

    name: str
    port: int
    addresses: tuple[str, ...] = field(default_factory=host_addresses)
    fingerprint: str
    capabilities: tuple[str, ...] = ()
    model: str

    def __post_init__(self) -> None:
        object.__setattr__(self, "addresses", tuple(str(ipaddress.ip_address(a))
                                                    for a in self.addresses))
        object.__setattr__(self, "capabilities", tuple(self.capabilities))
        _check_instance_name(self.name)
        if not 1 <= self.port <= 0xFFFF:
            raise ValueError(f"port must be 1 to 65535, got {self.port}")
        if not FP_HEX.fullmatch(self.fingerprint):
            raise ValueError("fingerprint must be 64 lower-case hex digits (SHA-256 of the "
                             "certificate DER)")
        for cap in self.capabilities:
            if not _CAPABILITY.fullmatch(cap):
                raise ValueError(f"capability {cap!r} must match {_CAPABILITY.pattern}")
        if not self.model or not self.model.isascii() or not self.model.isprintable():
            raise ValueError(f"model {self.model!r} must be printable ASCII")
        _check_txt(self.txt())

    @classmethod
    def for_certificate(cls, certificate_der: bytes, **fields: Any) -> Advert:
        """An advert pinning this DER certificate; other fields by keyword."""
        return cls(fingerprint=fingerprint_of(certificate_der), **fields)

    def txt(self) -> dict[str, str]:
        """The TXT record, exactly the keys in TXT_KEYS."""
        return {"v": PROTOCOL_VERSION, "fp": FINGERPRINT_PREFIX + self.fingerprint,
                "caps": ",".join(self.capabilities), "model": self.model}


