"""The DNS-SD advert of a terminal daemon: service type and TXT keys (docs/discovery.md).

edged announces it (edged/discovery/announce.py, Announcer) and clients browse for it
(edged/discovery/browse.py, used by `bifente discover`), so both sides read the names from
here.
"""

from __future__ import annotations

__all__ = ["FINGERPRINT_PREFIX", "PROTOCOL_VERSION", "SERVICE_TYPE", "TXT_CAPS",
           "TXT_FINGERPRINT", "TXT_KEYS", "TXT_MODEL", "TXT_VERSION"]

SERVICE_TYPE = "_bifente._tcp.local."  # RFC 6763 §7: _<service>._tcp
PROTOCOL_VERSION = "1"  # the value of TXT `v`

TXT_VERSION = "v"  # advert protocol version (PROTOCOL_VERSION)
TXT_FINGERPRINT = "fp"  # FINGERPRINT_PREFIX + SHA-256 of the daemon's DER certificate
TXT_CAPS = "caps"  # comma-separated capability tokens
TXT_MODEL = "model"  # the terminal's model, printable text
# The only TXT keys published, in this order.
TXT_KEYS = (TXT_VERSION, TXT_FINGERPRINT, TXT_CAPS, TXT_MODEL)
FINGERPRINT_PREFIX = "sha256:"
