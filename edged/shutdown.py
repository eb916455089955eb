"""A hard bound on the time from SIGTERM to the end of the process (docs/reliability.md).

Daemon.stop bounds each of its steps and writes its durable records (the audit's daemon.stop)
within its own budget. What it cannot bound is a thread still blocked in I/O when it returns:
an HTTPS call to the DMP host within its http_timeout, an SMTP submission, a card exchange on
a reader that stopped answering. The interpreter waits for every such thread before it exits.
Their work is durable already: a feed or a message being sent stays `sending` in SQLite and is
resent at the next start, where the host answers `already_registered` and the operator drops
the duplicate Message-ID (the same path as after a SIGKILL). So once the bound passes, the
process leaves without them, naming them in the log, well before systemd's TimeoutStopSec
(90 s by default) would kill it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import threading
import time
from collections.abc import Callable

__all__ = ["EXIT_BOUND_S", "ExitGuard"]

log = logging.getLogger(__name__)

EXIT_BOUND_S = 30.0


class ExitGuard:
    """Armed at the first stop signal; ends the process if it is still there `bound` seconds
    later: status 0 when the daemon's stop had completed, 1 when it had not."""

    def __init__(self, bound: float = EXIT_BOUND_S,
                 leave: Callable[[int], None] = os._exit) -> None:
        self.bound = bound
        self._leave = leave
        self._armed = threading.Event()
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None

    def arm(self) -> None:
        """Start counting (idempotent): called from the signal handler, on the loop."""
        if self._armed.is_set():
            return
        self._armed.set()
        # A daemon thread: it runs while the interpreter waits for the others at exit.
        self._thread = threading.Thread(target=self._watch, name="exit-guard", daemon=True)
        self._thread.start()

    def stopped(self) -> None:
        """The daemon's stop has completed (its durable records are written)."""
        self._stopped.set()

    def _watch(self) -> None:
        time.sleep(self.bound)  # a normal exit ends this thread with the process
        lingering = [t.name for t in threading.enumerate()
                     if t is not threading.current_thread() and t.is_alive()
                     and not t.daemon]
        code = 0 if self._stopped.is_set() else 1
        log.warning("still running %.0f s after the stop signal (%s): leaving without them",
                    self.bound, ", ".join(lingering) or "no other thread")
        # A broken log or a closed pipe: nothing more can be done, the exit matters more.
        for flushable in (*logging.getLogger().handlers, sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                flushable.flush()
        self._leave(code)
