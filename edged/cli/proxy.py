"""`bifente proxy ...`: local users and the seal key of the encrypting proxy (M8).

Runs on the Pi itself, on the daemon's state directory (`--state-dir`, else the config file's
[state] state_dir, else BIFENTE_STATE_DIR, else /var/lib/bifente). Nothing goes over the
network.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bifente.edged.config import Config
    from bifente.edged.state.keywrap import KeyWrapper
    from bifente.edged.state.proxy_users import UserStore

__all__ = ["add_parsers"]

ISSUER = "bifente proxy"


def _config(args: argparse.Namespace) -> Config:
    from bifente.edged.config import DEFAULT_PATH, load_config

    config_path = args.config or (DEFAULT_PATH if DEFAULT_PATH.exists() else None)
    return load_config(Path(config_path) if config_path else None)


def _state_dir(args: argparse.Namespace) -> Path:
    return Path(args.state_dir) if args.state_dir else _config(args).state_dir


def _state(args: argparse.Namespace) -> tuple[Path, KeyWrapper]:
    """The state directory and its state key, found as edged finds them (docs/security.md)."""
    from bifente.edged.state.keywrap import load_key_wrapper

    config = _config(args)
    state_dir = Path(args.state_dir) if args.state_dir else config.state_dir
    return state_dir, load_key_wrapper(state_dir, config.state_key_file)


def _users(args: argparse.Namespace) -> UserStore:
    from bifente.edged.state.proxy_users import UserStore

    return UserStore(*_state(args))


def _user_add(args: argparse.Namespace) -> int:
    from bifente.edged.services.proxy.totp import otpauth_uri

    store = _users(args)
    try:
        password, secret = store.add(args.name, args.email)
    finally:
        store.close()
    print(f"user {args.name} <{args.email.lower()}> added.")
    print("Shown once, never again: give them to the user, then clear this screen.")
    print(f"  SMTP login:    {args.name}   (or {args.email.lower()})")
    print(f"  SMTP password: {password}")
    print("  TOTP (scan or paste into an authenticator app):")
    print(f"  {otpauth_uri(secret, args.name, ISSUER)}")
    print("Each message needs a fresh code at the start of its Subject: [code:123456] ...")
    return 0


def _user_list(args: argparse.Namespace) -> int:
    if not (_state_dir(args) / "proxy" / "users.db").exists():  # a listing creates nothing
        print("no proxy users")
        return 0
    store = _users(args)
    try:
        for name, email, locked in store.list():
            print(f"{name}\t{email}\t{'LOCKED' if locked else 'ok'}")
    finally:
        store.close()
    return 0


def _change_user(args: argparse.Namespace, action: str) -> int:
    store = _users(args)
    try:
        if not getattr(store, action)(args.name):
            raise ValueError(f"no proxy user {args.name!r}")
    finally:
        store.close()
    print(f"user {args.name} {'removed' if action == 'remove' else 'unlocked'}")
    return 0


def _user_remove(args: argparse.Namespace) -> int:
    return _change_user(args, "remove")


def _user_unlock(args: argparse.Namespace) -> int:
    return _change_user(args, "unlock")


def _seal_import(args: argparse.Namespace) -> int:
    from bifente.edged.services.proxy.seal import import_seal

    state_dir, wrapper = _state(args)
    path = import_seal(state_dir, Path(args.cert), Path(args.key), [Path(p) for p in args.chain],
                       wrapper=wrapper,
                       secret_file=Path(args.secret_file) if args.secret_file else None)
    print(f"seal key stored encrypted in {path}; the plain key file {args.key} can now be "
          "removed (shred it)")
    return 0


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register `bifente proxy user add|list|remove|unlock` and `bifente proxy seal import`."""
    parser = sub.add_parser("proxy", help="the encrypting mail proxy's users and seal key "
                                          "(docs/messaging.md)")
    parser.add_argument("--state-dir", help="the daemon's state directory")
    parser.add_argument("--config", help="edged's config file (for its state_dir)")
    what = parser.add_subparsers(dest="proxy_command", required=True, metavar="WHAT")

    user = what.add_parser("user", help="local users of the proxy")
    actions = user.add_subparsers(dest="user_command", required=True, metavar="ACTION")
    add = actions.add_parser("add", help="add a user; prints the password and TOTP URI once")
    add.add_argument("name")
    add.add_argument("--email", required=True, help="the address the user sends from")
    add.set_defaults(func=_user_add)
    actions.add_parser("list", help="list users").set_defaults(func=_user_list)
    remove = actions.add_parser("remove", help="remove a user")
    remove.add_argument("name")
    remove.set_defaults(func=_user_remove)
    unlock = actions.add_parser("unlock", help="end a lockout after too many bad codes")
    unlock.add_argument("name")
    unlock.set_defaults(func=_user_unlock)

    seal = what.add_parser("seal", help="the structure's seal certificate and key")
    seal_actions = seal.add_subparsers(dest="seal_command", required=True, metavar="ACTION")
    imp = seal_actions.add_parser("import", help="store the seal key encrypted at rest")
    imp.add_argument("--cert", required=True, help="the seal certificate (PEM)")
    imp.add_argument("--key", required=True, help="its private key (PEM, unencrypted)")
    imp.add_argument("--chain", action="append", default=[],
                     help="an intermediate CA certificate (PEM); repeatable")
    imp.add_argument("--secret-file", help="a passphrase file kept elsewhere (default: a "
                     "passphrase derived from the state key, docs/security.md)")
    imp.set_defaults(func=_seal_import)
