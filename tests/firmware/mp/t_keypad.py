"""Keypad: matrix scan with debounce, ghosting, idle routing, the bounded queue."""

import machine
import pinmap
from keypad import ABORT, DEBOUNCE_SCANS, KeyQueue, MatrixKeypad


class Matrix:
    """Fake wiring: a column reads low when its pressed key's row is driven low."""

    def __init__(self):
        self.rows = [machine.Pin(p, machine.Pin.OPEN_DRAIN, value=1) for p in pinmap.KEYPAD_ROWS]
        self.cols = [machine.Pin(p, machine.Pin.IN, machine.Pin.PULL_UP)
                     for p in pinmap.KEYPAD_COLS]
        self.pressed = set()
        for ci in range(len(self.cols)):
            self.cols[ci].reader = self._reader(ci)

    def _reader(self, ci):
        def read():
            for ri, cj in self.pressed:
                if cj == ci and self.rows[ri].value() == 0:
                    return 0
            return 1

        return read

    def press(self, key):
        """Close the switch of a key by name."""
        for ri in range(4):
            for ci in range(4):
                if pinmap.KEYMAP[ri][ci] == key:
                    self.pressed.add((ri, ci))

    def release(self):
        """Open every switch."""
        self.pressed = set()


def make():
    """Queue (claimed, as during a prompt), wiring, scanner."""
    q = KeyQueue()
    q.claim()
    m = Matrix()
    return q, m, MatrixKeypad(m.rows, m.cols, pinmap.KEYMAP, q)


def test_press_reported_once_after_debounce():
    q, m, kp = make()
    m.press("5")
    results = [kp.poll() for _ in range(DEBOUNCE_SCANS + 3)]
    assert results.count("5") == 1 and results[DEBOUNCE_SCANS - 1] == "5"
    assert q.pop() == "5" and q.pop() is None
    m.release()
    for _ in range(DEBOUNCE_SCANS):
        kp.poll()
    m.press("5")
    assert [kp.poll() for _ in range(DEBOUNCE_SCANS)][-1] == "5"


def test_every_key_of_the_map():
    q, m, kp = make()
    for row in pinmap.KEYMAP:
        for key in row:
            m.release()
            for _ in range(DEBOUNCE_SCANS):
                kp.poll()
            m.press(key)
            for _ in range(DEBOUNCE_SCANS):
                kp.poll()
            assert q.pop() == key, key


def test_bounce_is_ignored():
    q, m, kp = make()
    for _ in range(4):
        m.press("OK")
        kp.poll()
        m.release()
        kp.poll()
    assert q.pop() is None


def test_two_keys_at_once_are_ignored():
    q, m, kp = make()
    m.press("1")
    m.press("2")
    for _ in range(DEBOUNCE_SCANS + 1):
        kp.poll()
    assert q.pop() is None
    assert all(r.value() == 1 for r in m.rows)  # every row released after a scan


def test_idle_keys_go_to_the_handler_not_the_queue():
    q = KeyQueue()
    seen = []
    q.on_idle_key = seen.append
    q.push("7")
    q.push("CANCEL")
    q.push(ABORT)  # an abort with no prompt is nothing
    assert seen == ["7", "CANCEL"] and q.pop() is None


def test_queue_is_bounded():
    q = KeyQueue(4)
    q.claim()
    for k in "123456":
        q.push(k)
    assert [q.pop() for _ in range(5)] == ["3", "4", "5", "6", None]


async def test_get_times_out():
    q = KeyQueue()
    q.claim()
    assert await q.get(20) is None
    q.push("9")
    assert await q.get(20) == "9"
