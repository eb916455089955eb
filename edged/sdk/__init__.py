"""The Python client for edged: discover, pair, call, subscribe (used by the CLI and tests)."""

from edged.sdk.client import Client, RemoteError, RequestTooLarge
from edged.sdk.credentials import Credentials, pair

__all__ = ["Client", "Credentials", "RemoteError", "RequestTooLarge", "pair"]
