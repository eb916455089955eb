"""The operator's certificate directory: a recipient's encryption certificate by address."""

from __future__ import annotations

import ssl
import urllib.error
import urllib.parse
import urllib.request

from cryptography import x509

__all__ = ["UnknownRecipient", "directory_certificate"]


class UnknownRecipient(LookupError):
    """The directory has no encryption certificate for this address."""


def directory_certificate(url: str, context: ssl.SSLContext, address: str) -> x509.Certificate:
    """Ask the operator's directory (GET /certificate?address=) for a recipient's certificate."""
    query = urllib.parse.urlencode({"address": address})
    try:
        with urllib.request.urlopen(f"{url}/certificate?{query}",  # noqa: S310 - https only
                                    context=context, timeout=15) as response:
            return x509.load_pem_x509_certificate(response.read(1 << 20))
    except urllib.error.HTTPError as exc:
        if exc.code in (400, 404):
            raise UnknownRecipient(address) from None
        raise OSError(f"directory answered {exc.code}") from None
