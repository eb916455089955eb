"""The Python client for a bifente terminal's daemon (edged): pair, call, subscribe.

Its own distribution, `bifente-client` (sdk/python/pyproject.toml): a clinic workstation
installs it without the daemon, the card stack or pyscard. The `bifente` command and the
tests use it too.
"""

from bifente.client.client import Client, RemoteError, RequestTooLarge
from bifente.client.credentials import Credentials, pair

__all__ = ["Client", "Credentials", "RemoteError", "RequestTooLarge", "pair"]
