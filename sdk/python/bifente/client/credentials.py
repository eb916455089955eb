"""Pairing from the client side, and the credentials kept afterwards (one file per terminal)."""

from __future__ import annotations

import inspect
import json
import os
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from bifente.client.client import Client, RemoteError
from bifente.client.tls import generate_client_key_and_csr

__all__ = ["Credentials", "client_dir", "pair"]


class CredentialsError(ValueError):
    """A stored pairing file that cannot be read."""


def client_dir() -> Path:
    """Where credentials live: $BIFENTE_CLIENT_DIR, else ~/.config/bifente/terminals."""
    env = os.environ.get("BIFENTE_CLIENT_DIR")
    return Path(env) if env else Path.home() / ".config" / "bifente" / "terminals"


@dataclass(frozen=True)
class Credentials:
    """What a paired client keeps: where the terminal is, its pinned fingerprint, our cert."""

    name: str
    host: str
    port: int
    fingerprint: str
    certificate_pem: str
    key_pem: str = field(repr=False)
    ca_pem: str = ""
    scopes: tuple[str, ...] = ()

    async def connect(self, *, timeout: float = 10.0) -> Client:
        """A mutually authenticated connection to the terminal."""
        return await Client.connect(self.host, self.port, self.fingerprint,
                                    cert_pem=self.certificate_pem.encode(),
                                    key_pem=self.key_pem.encode(), timeout=timeout)

    def save(self, directory: Path | None = None) -> Path:
        """Write to <dir>/<fingerprint prefix>.json with mode 0600 (atomic)."""
        folder = directory or client_dir()
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        path = folder / f"{self.fingerprint[:16]}.json"
        tmp = path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            json.dump({**asdict(self), "scopes": list(self.scopes)}, out, indent=2)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
        return path

    def forget(self, directory: Path | None = None) -> Path:
        """Delete the stored file of this pairing (the terminal still knows the client)."""
        path = (directory or client_dir()) / f"{self.fingerprint[:16]}.json"
        path.unlink()
        return path

    @classmethod
    def load_all(cls, directory: Path | None = None) -> list[Credentials]:
        """Every stored pairing."""
        folder = directory or client_dir()
        out = []
        for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
            try:
                data = json.loads(path.read_text())
                data["scopes"] = tuple(data.get("scopes", ()))
                out.append(cls(**data))
            except (ValueError, TypeError, AttributeError) as exc:
                raise CredentialsError(f"{path}: not a bifente credentials file (pair again, "
                                       "or remove it)") from exc
        return out

    @classmethod
    def find(cls, target: str | None = None, directory: Path | None = None) -> Credentials:
        """The pairing for a host, a fingerprint prefix, a paired name, or the only one."""
        found = cls.load_all(directory)
        if target:
            found = [c for c in found if target in (c.host, f"{c.host}:{c.port}")
                     or c.fingerprint.startswith(target.lower())
                     or c.name.casefold() == target.casefold()]
        if not found:
            raise LookupError("not paired with this terminal: run `bifente pair HOST` first")
        if len(found) > 1:
            raise LookupError("several paired terminals: name one (host or fingerprint)")
        return found[0]


async def pair(host: str, port: int, fingerprint: str, name: str, scopes: Sequence[str],
               read_code: Callable[[], str | Awaitable[str]], *,
               on_wrong_code: Callable[[int], None] | None = None) -> Credentials:
    """Pair with a terminal: it shows a code, read_code() returns what the operator typed.

    With on_wrong_code, a wrong code is reported (attempts left) and asked again while the
    terminal allows more attempts; without it, a wrong code raises RemoteError at once.
    """
    key_pem, csr_pem = generate_client_key_and_csr(name)
    async with await Client.connect(host, port, fingerprint) as client:
        begun = await client.call("pair.begin", {"name": name, "csr": csr_pem.decode(),
                                                 "scopes": list(scopes)})
        while True:
            code = read_code()
            if inspect.isawaitable(code):
                code = await code
            try:
                done = await client.call("pair.complete", {"pairing_id": begun["pairing_id"],
                                                           "code": str(code).strip()})
                break
            except RemoteError as exc:
                left = int(exc.data.get("attempts_left", 0) or 0)
                if on_wrong_code is None or exc.reason != "wrong_code" or left <= 0:
                    raise
                on_wrong_code(left)
    return Credentials(name, host, port, fingerprint, done["certificate"], key_pem.decode(),
                       done.get("ca_certificate", ""), tuple(done.get("scopes", ())))
