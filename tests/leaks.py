"""The autouse leak guard's parts: which threads and asyncio tasks a test may leave behind.

tests/conftest.py snapshots the threads before each test and, once every fixture of the test
is torn down, fails the test for any new thread still alive or asyncio task still pending when
its loop closed. A thread may be long-lived only if it is listed here with the reason.
"""

from __future__ import annotations

import asyncio
import asyncio.runners
import re
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

# Thread names that outlive a test by design, and why.
LONG_LIVED: tuple[tuple[re.Pattern[str], str], ...] = (
    # pyscard's CardMonitor/ReaderMonitor run one polling thread per process for its life
    # and have no way to stop it (smartcard/CardMonitoring.py); edged's watchers use them.
    (re.compile(r"^(CardMonitoringThread|ReaderMonitoringThread)"), "pyscard's monitor"),
    # tests/conftest.py's session-scoped pcscd (vpcd serving our simulated cards, and the
    # reaper that waits for pcscd's exit) lives for the whole session, started by whichever
    # test first needs a card.
    (re.compile(r"^(vpcd|reap-\d+)"), "the session's pcscd and vpcd"),
    # A keep-alive connection to a DMP host shared by many tests (tests/dmp_host/conftest.py
    # `world`: one host and one client for the session); it ends when either side closes.
    (re.compile(r"^dmp-host-conn "), "a shared DMP host's keep-alive connection"),
)

# How long a thread told to stop in teardown may take to notice (it polls its port or socket
# at 50 ms in edged and the simulators); not a test of speed: a leak waits this once.
GRACE_S = 2.0

leaked_tasks: list[str] = []


def long_lived(thread: threading.Thread) -> bool:
    """True for a thread LONG_LIVED allows past the end of a test."""
    return any(pattern.match(thread.name) for pattern, _ in LONG_LIVED)


def new_threads(before: Iterable[threading.Thread]) -> list[threading.Thread]:
    """Threads started since `before` that are still alive after the grace period."""
    known = set(before)
    fresh = [t for t in threading.enumerate() if t not in known and not long_lived(t)]
    deadline = time.monotonic() + GRACE_S
    for thread in fresh:
        thread.join(max(0.0, deadline - time.monotonic()))
    return [t for t in fresh if t.is_alive()]


def watch_tasks() -> Callable[[], None]:
    """Record tasks still pending when an asyncio.Runner (pytest-asyncio's loop) closes.

    Runner.close() cancels them silently (asyncio.runners._cancel_all_tasks); the wrapper
    notes them first. Returns the function that undoes the wrapping.
    """
    original = asyncio.runners._cancel_all_tasks  # type: ignore[attr-defined]

    def noting(loop: asyncio.AbstractEventLoop) -> Any:
        for task in asyncio.all_tasks(loop):
            if not task.done():
                leaked_tasks.append(_describe(task))
        return original(loop)

    asyncio.runners._cancel_all_tasks = noting  # type: ignore[attr-defined]

    def undo() -> None:
        asyncio.runners._cancel_all_tasks = original  # type: ignore[attr-defined]

    return undo


def _describe(task: asyncio.Task[Any]) -> str:
    coro = task.get_coro()
    name = getattr(coro, "__qualname__", None) or repr(coro)
    return f"{task.get_name()} ({name})"
