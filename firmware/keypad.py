"""Keypad: a key queue that prompts claim, and a debounced 4x4 matrix scanner feeding it."""
# Keys are strings from pinmap.KEYMAP: "0".."9", "*", "#", "OK", "CANCEL", "CORR", "F1".
# Keys pressed while no prompt holds the queue are not stored (no stale digit can reach the
# next PIN prompt); an idle CANCEL is reported to the terminal as an event instead.

import asyncio

from micropython import const

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable, Optional

ABORT = "ABORT"  # pseudo key: the host aborted the prompt (link ABORT request)
_QUEUE = const(16)
DEBOUNCE_SCANS = const(3)  # a key must read the same for 3 scans (30 ms at 10 ms) to count
SCAN_PERIOD_MS = const(10)


class KeyQueue:
    """Bounded key FIFO: push() from the scanner or a simulator, get() from the prompt holding it."""

    def __init__(self, size: int = _QUEUE) -> None:
        self._keys = [""] * size  # type: list
        self._head = 0
        self._count = 0
        self._event = asyncio.Event()
        self._claimed = False
        self.prompts = 0  # prompts started so far (a simulator waits for the next one)
        self.on_idle_key = None  # type: Optional[Callable[[str], None]]

    def push(self, key: str) -> None:
        """Deliver one key (sync: callable from a scan loop, never from an IRQ)."""
        if not self._claimed:
            if key == ABORT:
                return
            handler = self.on_idle_key
            if handler is not None:
                handler(key)
            return
        size = len(self._keys)
        if self._count == size:  # full: drop the oldest
            self._head = (self._head + 1) % size
            self._count -= 1
        self._keys[(self._head + self._count) % size] = key
        self._count += 1
        self._event.set()

    def abort(self) -> None:
        """End the current prompt as if the host had aborted it."""
        self.push(ABORT)

    def claim(self) -> None:
        """A prompt starts: keys are queued for it from now on."""
        self.clear()
        self._claimed = True
        self.prompts += 1

    def release(self) -> None:
        """The prompt ends: drop queued keys and go back to idle routing."""
        self._claimed = False
        self.clear()

    @property
    def claimed(self) -> bool:
        """True while a prompt holds the queue."""
        return self._claimed

    def clear(self) -> None:
        """Forget queued keys."""
        for i in range(len(self._keys)):
            self._keys[i] = ""
        self._head = 0
        self._count = 0
        self._event.clear()

    def pop(self) -> "Optional[str]":
        """Next queued key or None."""
        if not self._count:
            self._event.clear()
            return None
        key = self._keys[self._head]
        self._keys[self._head] = ""
        self._head = (self._head + 1) % len(self._keys)
        self._count -= 1
        if not self._count:
            self._event.clear()
        return key

    async def get(self, timeout_ms: int) -> "Optional[str]":
        """Wait up to timeout_ms for a key; None on timeout."""
        key = self.pop()
        if key is not None:
            return key
        if timeout_ms <= 0:
            return None
        try:
            await asyncio.wait_for_ms(self._event.wait(), timeout_ms)
        except asyncio.TimeoutError:
            return None
        return self.pop()


class MatrixKeypad:
    """Scan rows driven low one at a time (open drain) against pulled-up columns; debounce."""

    def __init__(self, rows: "list", cols: "list", keymap: "Any", queue: KeyQueue) -> None:
        self.rows = rows  # Pin objects, OPEN_DRAIN: value(0) drives low, value(1) releases
        self.cols = cols  # Pin objects, IN with pull-up: 0 = key closed on the driven row
        self.keymap = keymap
        self.queue = queue
        self._stable = ""
        self._candidate = ""
        self._count = 0
        for r in rows:
            r.value(1)

    def read_raw(self) -> str:
        """The single key closed now, "" for none or for two or more (ghosting is ignored)."""
        found = ""
        for ri in range(len(self.rows)):
            row = self.rows[ri]
            row.value(0)
            for ci in range(len(self.cols)):
                if not self.cols[ci].value():
                    if found:
                        row.value(1)
                        return ""
                    found = self.keymap[ri][ci]
            row.value(1)
        return found

    def poll(self) -> "Optional[str]":
        """One scan; returns (and queues) a key on its debounced press edge."""
        raw = self.read_raw()
        if raw == self._candidate:
            if self._count < DEBOUNCE_SCANS:
                self._count += 1
        else:
            self._candidate = raw
            self._count = 1
        if self._count >= DEBOUNCE_SCANS and raw != self._stable:
            self._stable = raw
            if raw:
                self.queue.push(raw)
                return raw
        return None

    async def run(self, period_ms: int = SCAN_PERIOD_MS) -> None:
        """Scan forever."""
        while True:
            self.poll()
            await asyncio.sleep_ms(period_ms)
