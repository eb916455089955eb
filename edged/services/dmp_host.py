"""What edged exchanges with the DMP host (docs/dmp-api.md), apart from the service's state.

The `[dmp]` settings, the host's refusals and outages as exceptions, its paths, headers and
query strings. edged/services/dmp.py holds the service that uses them. The exceptions are
domain errors of the DMP family (edged/services/errors.py): the API gives them DMP_ERROR with
their reason by the same table lookup as every service error.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

from bifente.contracts.consent import CONSENT_HEADER
from bifente.edged.config import ConfigError
from bifente.edged.services.errors import Family, ServiceError

__all__ = ["OUTAGE_STATUSES", "DmpError", "DmpNotConfigured", "DmpSettings", "HostUnreachable",
           "HostUntrusted",
           "consent_headers", "feed_headers", "host_path", "query_string"]


class DmpError(ServiceError):
    """The host refused: its reason code, message, HTTP status (`data.status`) and details
    (`data.details`, when it sent some)."""

    def __init__(self, reason: str, message: str, status: int = 0,
                 details: list[Any] | None = None) -> None:
        details = details or []
        super().__init__(Family.DMP, reason, message, status=status,
                         **({"details": details} if details else {}))
        self.status, self.details = status, details


# The host (or the gateway in front of it) is not serving now: retry later (RFC 9110 §15.6).
# Any other answer, a 500 with the host's JSON error included, is the host's verdict on this
# request: retrying the same document would get the same answer (D3 of the review).
OUTAGE_STATUSES = frozenset({502, 503, 504})


class HostUnreachable(ServiceError):
    """No answer from the host (network down, refused, timed out, 5xx)."""

    def __init__(self, message: str) -> None:
        super().__init__(Family.DMP, "host_unreachable", message)


class DmpNotConfigured(ServiceError):
    """The daemon has no [dmp] table: there is no host to ask."""

    def __init__(self) -> None:
        super().__init__(Family.DMP, "dmp_not_configured",
                         "the DMP is not configured on this terminal ([dmp])")


class HostUntrusted(HostUnreachable):
    """The server's certificate is not the host's (not from the configured CA): nothing was
    sent. For the offline queue an outage like any other, retried until the genuine host
    answers (a misconfigured proxy, an expired certificate, someone in the middle), never a
    refusal of the document; for a caller, an error that names the certificate."""

    def __init__(self, message: str) -> None:
        ServiceError.__init__(self, Family.DMP, "host_untrusted", message)


@dataclass(frozen=True)
class DmpSettings:
    """The [dmp] table, checked."""

    url: str
    ca_file: Path
    admin_token: str | None = None
    consent_ttl: int = 900
    feed_consent_ttl: int = 86400
    consent_timeout: float = 60.0
    http_timeout: float = 15.0
    retry_base: float = 2.0
    retry_max: float = 300.0

    @classmethod
    def from_table(cls, table: dict[str, Any]) -> DmpSettings | None:
        """None for an empty table (DMP off); ConfigError naming the bad key."""
        if not table:
            return None
        known = set(cls.__dataclass_fields__)
        for key in table:
            if key not in known:
                raise ConfigError(f"unknown setting dmp.{key}")
        url = table.get("url")
        if not isinstance(url, str) or urlsplit(url).scheme != "https" \
                or not urlsplit(url).hostname:
            raise ConfigError("dmp.url must be an https:// URL")
        ca = table.get("ca_file")
        if not isinstance(ca, str) or not ca:
            raise ConfigError("dmp.ca_file must be the path of the CA certificate to trust")
        if not Path(ca).is_file():
            raise ConfigError(f"dmp.ca_file: no file {ca}")
        token = table.get("admin_token")
        if token is not None and (not isinstance(token, str) or not token):
            raise ConfigError("dmp.admin_token must be a non-empty string")
        values: dict[str, Any] = {}
        limits = {"consent_ttl": (10, 86400), "feed_consent_ttl": (10, 86400),
                  "consent_timeout": (5, 60), "http_timeout": (1, 300),
                  "retry_base": (0.05, 3600), "retry_max": (0.1, 86400)}
        for key, (low, high) in limits.items():
            if key not in table:
                continue
            value = table[key]
            if isinstance(value, bool) or not isinstance(value, int | float) \
                    or not low <= value <= high:
                raise ConfigError(f"dmp.{key} must be a number in {low}..{high}")
            values[key] = int(value) if key.endswith("ttl") else float(value)
        return cls(url=url.rstrip("/"), ca_file=Path(ca), admin_token=token, **values)


def host_path(ins: str, *rest: str) -> str:
    """/api/dmp/{ins}/... with every segment quoted."""
    return "/api/dmp/" + quote(ins, safe="") + "".join("/" + quote(r, safe="") for r in rest)


def consent_headers(consent: str | None) -> dict[str, str]:
    """The consent header, or none under an emergency access."""
    return {} if consent is None else {CONSENT_HEADER: consent}


def feed_headers(consent: str) -> dict[str, str]:
    """A CDA R2 document's type and the patient's signed consent."""
    return {"Content-Type": "application/hl7-v3+xml", CONSENT_HEADER: consent}


def query_string(params: dict[str, Any]) -> str:
    """`?a=b&...` for the given non-None parameters (booleans as true/false)."""
    clean = {k: ("true" if v is True else "false" if v is False else v)
             for k, v in params.items() if v is not None}
    return ("?" + urlencode(clean)) if clean else ""
