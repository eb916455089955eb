"""What unpaired peers may cost the audit log: one record per peer and event a minute.

Review M6: every refused pairing attempt was one fsynced record, so 100 addresses wrote 2,695
records in 10 s and stalled the event loop. Unpaired peers are anyone on the LAN, so their
records are aggregated: the first of a kind (event, /24 or /64 prefix) in a window is written
in full; the others are counted and written as one `audit.aggregated` record when the window
ends. A global token bucket bounds the records unpaired peers cause in total (a new prefix
every second is free with IPv6); beyond it, events are only counted, and the counts go into
one `audit.suppressed` record a window. Nothing is dropped silently: every event is either
written or counted in a written record.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from bifente.edged.peers import prefix_of

__all__ = ["AuditBudget"]

Writer = Callable[..., Any]  # writer(event, actor=..., **fields)


@dataclass
class _Window:
    started: float
    count: int = 0
    reasons: dict[str, int] = field(default_factory=dict)


class AuditBudget:
    """Aggregates unpaired peers' audit records; thread-safe, `flush` at least every window."""

    def __init__(self, write: Writer, *, window: float = 60.0, per_second: float = 1.0,
                 burst: int = 30, max_windows: int = 512,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._write = write
        self.window, self.per_second, self.burst = window, per_second, burst
        self.max_windows = max_windows
        self.clock = clock
        self._lock = threading.Lock()
        self._windows: dict[tuple[str, str], _Window] = {}
        self._tokens = float(burst)
        self._refilled = clock()
        self._suppressed: dict[str, int] = {}
        self._suppressed_since: float | None = None

    def record(self, event: str, peer: str, /, **fields: Any) -> None:
        """One unpaired peer's event: written, or counted into a later record."""
        prefix = prefix_of(peer)
        key = (event, prefix)
        now = self.clock()
        self.flush(now)
        with self._lock:
            window = self._windows.get(key)
            if window is not None:
                window.count += 1
                reason = str(fields.get("reason", ""))[:32]
                window.reasons[reason] = window.reasons.get(reason, 0) + 1
                return
            if len(self._windows) >= self.max_windows or not self._take(now):
                self._suppressed[event] = self._suppressed.get(event, 0) + 1
                if self._suppressed_since is None:
                    self._suppressed_since = now
                return
            self._windows[key] = _Window(now)
        self._write(event, actor=f"unpaired@{prefix}", **fields)

    def flush(self, now: float | None = None, *, everything: bool = False) -> None:
        """Write the counts of the windows that ended (all of them with `everything`)."""
        now = self.clock() if now is None else now
        due: list[tuple[tuple[str, str], _Window]] = []
        suppressed: dict[str, int] = {}
        with self._lock:
            for key, window in list(self._windows.items()):
                if everything or now - window.started >= self.window:
                    del self._windows[key]
                    if window.count:
                        due.append((key, window))
            since = self._suppressed_since
            if self._suppressed and since is not None and (everything or
                                                           now - since >= self.window):
                suppressed, self._suppressed, self._suppressed_since = self._suppressed, {}, None
        for (event, prefix), window in due:
            self._write("audit.aggregated", actor=f"unpaired@{prefix}", event=event,
                        count=window.count,
                        reasons=[[r, n] for r, n in sorted(window.reasons.items())],
                        seconds=round(now - window.started, 1))
        if suppressed:
            self._write("audit.suppressed", actor="edged",
                        counts=[[e, n] for e, n in sorted(suppressed.items())],
                        seconds=round(now - (since or now), 1),
                        why="unpaired peers over the audit budget")

    def _take(self, now: float) -> bool:
        self._tokens = min(self.burst, self._tokens + (now - self._refilled) * self.per_second)
        self._refilled = now
        if self._tokens >= 1:
            self._tokens -= 1
            return True
        return False
