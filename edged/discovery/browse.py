"""Browsing for terminals: what a client sees of an advert, checked before it is trusted, and
the `host:port#fingerprint` form for a terminal given by hand."""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from zeroconf import (
    DNSQuestionType,
    InterfaceChoice,
    IPVersion,
    ServiceStateChange,
    Zeroconf,
)
from zeroconf.asyncio import AsyncServiceBrowser, AsyncServiceInfo, AsyncZeroconf

from bifente.contracts.mdns import FINGERPRINT_PREFIX, SERVICE_TYPE
from bifente.edged.discovery.advert import (
    FP_HEX,
    INSTANCE_MAX,
    MAX_CAPS,
    MAX_TEXT,
    TXT_STRING_MAX,
    Interfaces,
)

log = logging.getLogger("bifente.edged.discovery")  # one logger for the package's warnings

_MAX_TERMINALS = 1024  # a hospital runs hundreds; a flood of fake adverts stops here
_RESOLVE_GRACE = 1.0  # s a browse waits after its window for resolutions under way
_MAX_BROWSE = 60.0  # s

class MalformedAdvert(ValueError):
    """A service of our type whose records cannot describe a terminal (it is skipped)."""

@dataclass(frozen=True, kw_only=True)
class Terminal:
    """A terminal found by mDNS or given as a static address; `fingerprint` is what to pin."""

    name: str
    host: str
    addresses: tuple[str, ...]
    port: int
    fingerprint: str
    version: str = ""
    capabilities: tuple[str, ...] = ()
    model: str = ""
    source: str = "mdns"

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict; the fingerprint in the `sha256:<hex>` form of TXT and --static."""
        return {"name": self.name, "host": self.host, "addresses": list(self.addresses),
                "port": self.port, "fingerprint": FINGERPRINT_PREFIX + self.fingerprint,
                "version": self.version, "capabilities": list(self.capabilities),
                "model": self.model, "source": self.source}

def _parse_fingerprint(text: str) -> str | None:
    if text[:len(FINGERPRINT_PREFIX)].lower() != FINGERPRINT_PREFIX:
        return None
    digits = text[len(FINGERPRINT_PREFIX):].lower()
    return digits if FP_HEX.fullmatch(digits) else None

def _decode_txt(properties: Mapping[bytes, bytes | None]) -> dict[str, str | None]:
    txt: dict[str, str | None] = {}
    for raw_key, raw_value in properties.items():
        try:
            key = raw_key.decode("ascii").lower()  # RFC 6763 §6.4: keys are case-insensitive
            value = None if raw_value is None else raw_value.decode("utf-8")
        except UnicodeDecodeError:
            raise MalformedAdvert("TXT entry is not text") from None
        txt.setdefault(key, value)
    return txt

def _printable(text: str, what: str, limit: int) -> str:
    if len(text) > limit or not text.isprintable():
        raise MalformedAdvert(f"{what} is not printable text of at most {limit} characters")
    return text

def _terminal_from_info(info: AsyncServiceInfo) -> Terminal:
    """Check the records of one resolved service (peer-controlled) and make a Terminal."""
    txt = _decode_txt(info.properties)
    version = txt.get("v")
    if not version:
        raise MalformedAdvert("no protocol version (v)")
    raw_fp = txt.get("fp")
    if raw_fp is None:
        raise MalformedAdvert("no certificate fingerprint (fp)")
    fingerprint = _parse_fingerprint(raw_fp)
    if fingerprint is None:
        raise MalformedAdvert(f"fingerprint is not sha256:<64 hex digits> ({len(raw_fp)} "
                              "characters)")
    caps = tuple(c for c in (txt.get("caps") or "").split(",") if c)
    if len(caps) > MAX_CAPS:
        raise MalformedAdvert(f"more than {MAX_CAPS} capabilities")
    for cap in caps:
        _printable(cap, "a capability", MAX_TEXT)
    if info.port is None or not info.server:
        raise MalformedAdvert("no SRV record")
    return Terminal(
        name=_printable(info.get_name(), "the instance name", INSTANCE_MAX),
        host=_printable(info.server, "the host name", 255),
        addresses=tuple(info.parsed_scoped_addresses()),
        port=info.port,
        fingerprint=fingerprint,
        version=_printable(version, "the protocol version", MAX_TEXT),
        capabilities=caps,
        model=_printable(txt.get("model") or "", "the model", TXT_STRING_MAX),
    )

async def browse(timeout: float = 3.0, *, interfaces: Interfaces = None,
                 ip_version: IPVersion | None = None) -> list[Terminal]:
    """Terminals that answer within `timeout` s, by name; malformed adverts skipped, logged."""
    if not 0 < timeout <= _MAX_BROWSE:
        raise ValueError(f"browse timeout must be more than 0 and at most {_MAX_BROWSE:.0f} s")
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    present: set[str] = set()
    found: dict[str, Terminal] = {}
    resolving: dict[str, asyncio.Task[None]] = {}
    aiozc = AsyncZeroconf(interfaces=InterfaceChoice.All if interfaces is None else interfaces,
                          ip_version=ip_version)

    async def resolve(name: str) -> None:
        info = AsyncServiceInfo(SERVICE_TYPE, name)
        wait_ms = max(deadline + _RESOLVE_GRACE - loop.time(), 0.1) * 1000
        try:
            # QM: answers by multicast reach us even when another mDNS stack shares port 5353
            if not await info.async_request(aiozc.zeroconf, wait_ms,
                                            question_type=DNSQuestionType.QM):
                log.warning("skipping %r: it did not answer with its records", name)
                return
            terminal = _terminal_from_info(info)
        except MalformedAdvert as exc:
            log.warning("skipping %r: %s", name, exc)
            return
        except Exception as exc:  # a peer's records must never crash a browse
            log.warning("skipping %r: %s: %s", name, type(exc).__name__, exc)
            return
        if name in present:
            found[name] = terminal

    def on_change(zeroconf: Zeroconf, service_type: str, name: str,
                  state_change: ServiceStateChange) -> None:
        if state_change is ServiceStateChange.Removed:
            present.discard(name)
            found.pop(name, None)
            return
        if name not in present and len(present) >= _MAX_TERMINALS:
            log.warning("more than %d terminals answered; ignoring %r", _MAX_TERMINALS, name)
            return
        present.add(name)
        task = resolving.get(name)
        if task is None or task.done():
            resolving[name] = loop.create_task(resolve(name))

    try:
        browser = AsyncServiceBrowser(aiozc.zeroconf, SERVICE_TYPE, handlers=[on_change],
                                      question_type=DNSQuestionType.QM)
        try:
            await asyncio.sleep(timeout)
        finally:
            await browser.async_cancel()
        pending = [t for t in resolving.values() if not t.done()]
        if pending:
            await asyncio.wait(pending, timeout=_RESOLVE_GRACE)
    finally:
        for task in resolving.values():
            task.cancel()
        if resolving:
            await asyncio.wait(list(resolving.values()))
        await aiozc.async_close()
    return sorted((found[n] for n in present if n in found),
                  key=lambda t: (t.name.lower(), t.name, t.host, t.port))

_STATIC = re.compile(r"(?P<host>\[[^\]]*\]|[^\[\]:#]+):(?P<port>[^#]*)#(?P<fp>.*)")
_HOSTNAME = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)(\.(?!-)[A-Za-z0-9-]{1,63}(?<!-))*\.?")

def parse_static(address: str) -> Terminal:
    """A Terminal to pin from `HOST:PORT#sha256:FINGERPRINT`; ValueError names what is wrong."""
    # HOST: IPv4, host name or [IPv6]; the 64 hex digits may be grouped with ':' or spaces,
    # as `openssl x509 -fingerprint -sha256` and `bifente discover` print them.
    def bad(problem: str) -> ValueError:
        return ValueError(f"static address {address!r}: {problem}; expected "
                          "HOST:PORT#sha256:FINGERPRINT (64 hex digits)")

    if "#" not in address:
        raise bad("no certificate fingerprint to pin")
    endpoint = address.split("#", 1)[0]
    if endpoint.count(":") > 1 and not endpoint.startswith("["):
        raise bad("put an IPv6 address in brackets, [ADDRESS]:PORT")
    match = _STATIC.fullmatch(address.strip())
    if match is None:
        raise bad("no HOST:PORT before '#'")
    host, port_text = match["host"], match["port"]
    addresses: tuple[str, ...] = ()  # a host name is resolved by the client
    if host.startswith("["):
        try:
            ip = ipaddress.IPv6Address(host[1:-1])
        except ValueError:
            raise bad(f"{host} is not an IPv6 address") from None
        host, addresses = str(ip), (str(ip),)
    else:
        try:
            host = str(ipaddress.IPv4Address(host))
            addresses = (host,)
        except ValueError:
            if not _HOSTNAME.fullmatch(host) or len(host) > 253:
                raise bad(f"{host!r} is not an IPv4 address or a host name") from None
    if not port_text.isdigit() or not 1 <= int(port_text) <= 0xFFFF:
        raise bad(f"port {port_text!r} is not 1 to 65535")
    prefix, digits = match["fp"][:len(FINGERPRINT_PREFIX)], match["fp"][len(FINGERPRINT_PREFIX):]
    fingerprint = _parse_fingerprint(prefix + re.sub(r"[\s:]", "", digits))
    if fingerprint is None:
        raise bad("the fingerprint is not sha256: followed by 64 hex digits")
    port = int(port_text)
    name = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    return Terminal(name=name, host=host, addresses=addresses, port=port,
                    fingerprint=fingerprint, source="static")

