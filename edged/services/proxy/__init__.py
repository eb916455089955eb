"""The encrypting proxy (M8, docs/messaging.md): ordinary mail clients in, signed + encrypted out.

A structure's staff send from their usual mail client to an SMTP submission listener in
edged (STARTTLS, then AUTH with their local account); each message carries a one-time
emission code (RFC 6238 TOTP) in its Subject. docs/messaging.md has the whole flow.

One module per job:
  totp        RFC 4226 / RFC 6238 codes and where they travel (the Subject)
  codes       checking a user's code: single use, failures lock out
  settings    the [proxy] table, checked
  seal        the structure's seal key, encrypted under the state key
  directory   recipients' certificates from the operator's directory
  message     7-bit content before signing
  server      the SMTP listener: check, protect, relay, audit
The users live in the state: edged/state/proxy_users.py.

Files under `<state_dir>/proxy/` (0600, directory 0700):
  users.db        local users: e-mail, salted SHA-256 of the SMTP password, the TOTP secret
                  (sealed with the state key), last used time step, failure count, lockout
  seal.key.pem    the seal key, PKCS#8 ENCRYPTED PRIVATE KEY (PBES2, AES-256-CBC), its
                  passphrase derived from the state key (or [proxy] seal_secret_file)
  seal.crt.pem    the seal certificate, then its chain (intermediates)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from bifente.edged.services.proxy.codes import CodeCheck, check_code
from bifente.edged.services.proxy.seal import SealError, import_seal, load_seal
from bifente.edged.services.proxy.server import ProxyServer, server_tls_context
from bifente.edged.services.proxy.settings import ProxyConfigError, ProxySettings
from bifente.edged.services.proxy.totp import CODE_PATTERN, extract_code, hotp, otpauth_uri, totp
from bifente.edged.state.proxy_users import UserStore

if TYPE_CHECKING:
    from bifente.edged.services.context import ServiceContext

__all__ = [
    "CODE_PATTERN",
    "CodeCheck",
    "ProxyConfigError",
    "ProxyServer",
    "ProxySettings",
    "SealError",
    "UserStore",
    "check_code",
    "extract_code",
    "hotp",
    "import_seal",
    "load_seal",
    "otpauth_uri",
    "proxy_extension",
    "totp",
]


def proxy_extension(ctx: ServiceContext) -> ProxyServer | None:
    """The service: None unless [proxy] is set (and not `enabled = false`)."""
    table = dict(ctx.config.proxy)
    if not table or table.get("enabled", True) is False:
        return None
    settings = ProxySettings.from_table(table)
    ctx.keystore.server_certificate  # noqa: B018 - issues server.pem/server.key if needed
    return ProxyServer(settings, ctx.config.state_dir,
                       server_tls_context(ctx.keystore), ctx.key_wrapper,
                       audit=ctx.audit.append)
