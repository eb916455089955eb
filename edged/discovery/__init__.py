"""mDNS / DNS-SD discovery: edged announces `_bifente._tcp`, clients browse and pin fingerprints.

Three modules, one job each: `advert` (what is announced, checked against RFC 6763),
`announce` (probing, announcing, defending the name, goodbyes: RFC 6762) and `browse` (what a
client sees of an advert, checked before it is trusted). The names every client relies on
are in contracts/mdns.py.
"""

from __future__ import annotations

from bifente.contracts.mdns import PROTOCOL_VERSION, SERVICE_TYPE, TXT_KEYS
from bifente.edged.discovery.advert import (
    Advert,
    Interfaces,
    default_name,
    format_fingerprint,
    host_addresses,
)
from bifente.edged.discovery.announce import (
    PROBE_DELAY_MS,
    PROBE_INTERVAL_MS,
    Announcer,
    AnnouncerState,
)
from bifente.edged.discovery.browse import MalformedAdvert, Terminal, browse, parse_static

__all__ = [
    "PROBE_DELAY_MS",
    "PROBE_INTERVAL_MS",
    "PROTOCOL_VERSION",
    "SERVICE_TYPE",
    "TXT_KEYS",
    "Advert",
    "Announcer",
    "AnnouncerState",
    "Interfaces",
    "MalformedAdvert",
    "Terminal",
    "browse",
    "default_name",
    "format_fingerprint",
    "host_addresses",
    "parse_static",
]
