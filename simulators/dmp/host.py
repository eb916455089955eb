"""`DmpHost`: the reference DMP host as an object, for `bifente sim dmp`, tests and benchmarks."""

from __future__ import annotations

import logging
import secrets
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

from bifente.simulators.dmp import pages
from bifente.simulators.dmp.api import DmpService
from bifente.simulators.dmp.auth import CodeSender, OutboxCodeSender
from bifente.simulators.dmp.consent import load_device_key
from bifente.simulators.dmp.directory import DEFAULT_DIRECTORY, Directory
from bifente.simulators.dmp.rules import DEFAULT_POLICY, load_policy
from bifente.simulators.dmp.server import HttpServer, Router
from bifente.simulators.dmp.storage import DB_NAME, Storage
from bifente.simulators.dmp.tls import ROOT_CAFILE, ensure_host_certificate, server_context

__all__ = ["DmpHost"]

log = logging.getLogger("bifente.simulators.dmp")


class DmpHost:
    """The reference DMP host: HTTPS + SQLite under `data_dir`, served from a thread."""

    def __init__(self, data_dir: Path | str, *, port: int = 0, host: str = "127.0.0.1",
                 test_mode: bool = False, clock: Callable[[], float] = time.time,
                 admin_token: str | None = None, code_sender: CodeSender | None = None,
                 policy: Path = DEFAULT_POLICY, directory: Path = DEFAULT_DIRECTORY) -> None:
        self.data_dir = Path(data_dir)
        self.bind = (host, port)
        self.test_mode = test_mode
        self.clock = clock
        self.admin_token = admin_token or secrets.token_urlsafe(24)
        self.code_sender = code_sender or OutboxCodeSender(self.data_dir / "outbox", clock)
        self.policy = load_policy(policy)
        self.directory = Directory.load(directory)
        self.storage: Storage | None = None
        self.service: DmpService | None = None
        self._server: HttpServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def cafile(self) -> Path:
        """The test root certificate clients trust (the host sends its intermediate)."""
        return ROOT_CAFILE

    @property
    def port(self) -> int:
        """The bound port (after start)."""
        if self._server is None:
            raise RuntimeError("the host is not started")
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        """https://127.0.0.1:PORT (or the bound host)."""
        host = self.bind[0] if self.bind[0] not in ("", "0.0.0.0", "::") else "127.0.0.1"  # noqa: S104
        return f"https://{host}:{self.port}"

    def start(self) -> DmpHost:
        """Open the database, make the TLS certificate if needed, serve in a thread."""
        if self._server is not None:
            return self
        self.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        chain, key = ensure_host_certificate(self.data_dir / "tls")
        self.storage = Storage(self.data_dir / DB_NAME)
        self.service = DmpService(self.storage, self.policy, self.directory, clock=self.clock,
                                  admin_token=self.admin_token, code_sender=self.code_sender,
                                  test_mode=self.test_mode)
        router = Router()
        self.service.register(router)
        pages.register(router, self.service.patients)
        try:
            self._server = HttpServer(self.bind, router, server_context(chain, key))
        except BaseException:
            self.storage.close()
            raise
        self._thread = threading.Thread(target=self._server.serve_forever, name="dmp-host",
                                        kwargs={"poll_interval": 0.2}, daemon=True)
        self._thread.start()
        log.info("reference DMP host on %s (test mode: %s)", self.url, self.test_mode)
        return self

    def stop(self) -> None:
        """Stop accepting, end open connections, close the database (idempotent)."""
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.close_all()
            server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        if self.storage is not None:
            self.storage.close()
            self.storage = None

    def enroll_device(self, device: str, public_key_pem: str) -> None:
        """Enroll a terminal's consent-signing key (the Python side of POST /api/admin/devices)."""
        if self.storage is None:
            raise RuntimeError("the host is not started")
        load_device_key(public_key_pem)
        self.storage.enroll_device(device, public_key_pem, self.clock())

    def __enter__(self) -> DmpHost:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
