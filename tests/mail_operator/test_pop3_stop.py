"""The POP3 server stops cleanly: open sessions end on their own, and a session cancelled by the
loop's teardown is not reported as an error (Python 3.11's streams log a cancelled connection
task as "Exception in callback ... CancelledError")."""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path
from typing import Any

import pytest

from bifente.simulators.mail import MailOperator


async def _session(op: MailOperator) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    context = ssl.create_default_context(cafile=op.info.ca_file)
    reader, writer = await asyncio.open_connection(
        op.host, op.info.domains["cabinet.test"].pop3s, ssl=context)
    assert (await reader.readline()).startswith(b"+OK")
    return reader, writer


def _errors_reported(loop: asyncio.AbstractEventLoop) -> list[dict[str, Any]]:
    reported: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda _loop, context: reported.append(context))
    return reported


@pytest.mark.asyncio
async def test_a_session_cancelled_by_the_loop_is_not_an_error(tmp_path: Path) -> None:
    op = MailOperator(tmp_path / "op")
    await op.start()
    reported = _errors_reported(asyncio.get_running_loop())
    try:
        _, writer = await _session(op)
        (session,) = op._pop3[0]._sessions
        session.cancel()
        await asyncio.wait([session], timeout=10)
        await asyncio.sleep(0)  # the streams' done callback runs after the task
        assert session.done() and not session.cancelled()
        assert reported == []
        writer.close()
    finally:
        await op.stop()


@pytest.mark.asyncio
async def test_stop_ends_open_sessions_without_cancelling_them(tmp_path: Path) -> None:
    op = MailOperator(tmp_path / "op")
    await op.start()
    reported = _errors_reported(asyncio.get_running_loop())
    connections = [await _session(op) for _ in range(3)]
    sessions = set(op._pop3[0]._sessions)
    assert len(sessions) == 3
    await op.stop()
    assert all(task.done() and not task.cancelled() for task in sessions)
    for reader, writer in connections:
        assert await reader.read() == b""  # the server closed it
        writer.close()
    assert reported == []
