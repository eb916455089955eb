"""The exit guard: the bound from the stop signal to the end of the process."""

from __future__ import annotations

import threading

from bifente.edged.shutdown import ExitGuard


def _guard(bound: float) -> tuple[ExitGuard, list[int], threading.Event]:
    codes: list[int] = []
    left = threading.Event()

    def leave(code: int) -> None:
        codes.append(code)
        left.set()

    return ExitGuard(bound, leave=leave), codes, left


def test_a_stop_that_never_completes_ends_the_process_with_status_1() -> None:
    guard, codes, left = _guard(0.05)
    guard.arm()
    guard.arm()  # a second signal does not start a second count
    assert left.wait(5)
    assert codes == [1]


def test_lingering_threads_after_a_completed_stop_leave_with_status_0() -> None:
    guard, codes, left = _guard(0.05)
    guard.arm()
    guard.stopped()
    assert left.wait(5)
    assert codes == [0]


def test_nothing_happens_until_armed() -> None:
    _, codes, left = _guard(0.01)
    assert not left.wait(0.2)
    assert codes == []
