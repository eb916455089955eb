"""The autouse leak guard (tests/conftest.py, tests/leaks.py) sees what it is meant to see."""

from __future__ import annotations

import asyncio
import threading

import pytest

from tests import leaks


def test_a_thread_left_running_is_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(leaks, "GRACE_S", 0.0)
    before = threading.enumerate()
    release = threading.Event()
    thread = threading.Thread(target=release.wait, name="left-behind")
    thread.start()
    try:
        assert leaks.new_threads(before) == [thread]
    finally:
        release.set()
        thread.join()
    assert leaks.new_threads(before) == []


def test_a_long_lived_thread_is_allowed() -> None:
    assert leaks.long_lived(threading.Thread(name="CardMonitoringThread"))
    assert not leaks.long_lived(threading.Thread(name="terminal-rx /dev/pts/3"))


def test_a_task_pending_when_its_loop_closes_is_reported() -> None:
    async def forever() -> None:
        await asyncio.Event().wait()

    async def start() -> None:
        asyncio.get_running_loop().create_task(forever(), name="orphan")

    with asyncio.Runner() as runner:
        runner.run(start())
    found = [t for t in leaks.leaked_tasks if t.startswith("orphan")]
    leaks.leaked_tasks.clear()  # this test's own orphan is not a leak of the test
    assert found == ["orphan (test_a_task_pending_when_its_loop_closes_is_reported."
                     "<locals>.forever)"]
