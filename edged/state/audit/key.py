"""The anchor's MAC key: made once, kept in a 0600 file, sealed with the state key."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from bifente.edged.state.audit.errors import AuditError
from bifente.edged.state.keywrap import KeyWrapper, is_sealed

__all__ = ["ANCHOR_KEY_NAME", "load_or_create_anchor_key", "read_anchor_key"]

ANCHOR_KEY_NAME = "audit.key"


def load_or_create_anchor_key(path: Path, wrapper: KeyWrapper | None = None) -> bytes:
    """The daemon's anchor MAC key: 32 random bytes in a 0600 file, made on first start;
    sealed with the state key when one is given (review M8: not in clear beside the log)."""
    try:
        stored = path.read_bytes()
    except FileNotFoundError:
        stored = None
    if stored is not None:
        if wrapper is None or not is_sealed(stored):
            if wrapper is not None:  # written by an older edged: seal it now
                _write_key_file(path, wrapper.seal("audit/anchor-key", stored), replace=True)
            return stored
        return wrapper.open("audit/anchor-key", stored)
    key = secrets.token_bytes(32)
    _write_key_file(path, wrapper.seal("audit/anchor-key", key) if wrapper else key)
    return key


def read_anchor_key(path: Path, wrapper: KeyWrapper | None) -> bytes:
    """The anchor key as the daemon uses it (opened with the state key when sealed)."""
    stored = path.read_bytes()
    if is_sealed(stored):
        if wrapper is None:
            raise AuditError(f"{path} is sealed with the state key")
        return wrapper.open("audit/anchor-key", stored)
    return stored


def _write_key_file(path: Path, data: bytes, *, replace: bool = False) -> None:
    target = Path(f"{path}.tmp") if replace else path
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if replace else os.O_EXCL),
                 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(data)
        out.flush()
        os.fsync(out.fileno())
    if replace:
        os.replace(target, path)
