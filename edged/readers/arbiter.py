"""One arbiter per card: operations from many clients run one at a time, fairly, with timeouts.

Each card has one worker thread (pyscard calls block) and one queue per client; the worker
serves clients round robin, so a client sending many requests cannot starve another. A job is
a function given the card's session, which the arbiter opens once for this insertion (the
arbiter lives as long as the insertion); whatever the job does (MSE + PSO HASH + PSO CDS) runs
without another job in between, so multi-step operations are atomic. Removing the card fails
what is queued with CardRemoved and drops the session.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from bifente.apdu.errors import CardRemoved
from bifente.apdu.protocol import CardProtocol
from bifente.apdu.transport import Transport

__all__ = ["CLOSE_GRACE_S", "Busy", "CardArbiter", "OperationTimeout"]

log = logging.getLogger(__name__)
T = TypeVar("T")

# How long close() waits for a running job, then for the card to be closed (the daemon's stop
# is bounded by it: docs/reliability.md).
CLOSE_GRACE_S = 10.0


class Busy(Exception):
    """The card's queue is full for this client."""


class OperationTimeout(Exception):
    """The operation did not get the card, or did not finish, in time."""


@dataclass
class _Job:
    client: str
    fn: Callable[[Any], Any]
    future: asyncio.Future[Any]
    label: str = ""
    started: bool = field(default=False)


class CardArbiter:
    """Serialises access to one card among clients; owns the card's transport."""

    def __init__(self, name: str, opener: Callable[[], Transport], *,
                 session: Callable[[CardProtocol], Any] = lambda protocol: protocol,
                 max_queue_per_client: int = 16) -> None:
        self.name = name
        self._opener = opener
        self._open_session = session
        self._transport: Transport | None = None
        self._protocol: CardProtocol | None = None
        self._session: Any = None  # opened by the first job, kept until the card leaves
        self._queues: dict[str, collections.deque[_Job]] = {}
        self._order: collections.deque[str] = collections.deque()
        self._wakeup = asyncio.Event()
        self._executor = concurrent.futures.ThreadPoolExecutor(max_workers=1,
                                                               thread_name_prefix=f"card-{name}")
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        self._close_reason: BaseException = CardRemoved(f"{name}: the card is gone")
        self.max_queue_per_client = max_queue_per_client
        self.completed = 0

    def start(self) -> None:
        """Start serving (call from the event loop)."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._serve(),
                                                                name=f"arbiter-{self.name}")

    @property
    def pending(self) -> int:
        """Jobs queued, not yet started."""
        return sum(len(q) for q in self._queues.values())

    async def run(self, client: str, fn: Callable[[Any], T], *, timeout: float = 30.0,
                  label: str = "") -> T:
        """Queue fn for this card and wait for its result (or its error); fn gets the session."""
        if self._closed:
            raise CardRemoved(f"{self.name}: the card is gone")
        self.start()
        queue = self._queues.setdefault(client, collections.deque())
        if len(queue) >= self.max_queue_per_client:
            raise Busy(f"too many operations queued for this card ({len(queue)})")
        job = _Job(client, fn, asyncio.get_running_loop().create_future(), label)
        queue.append(job)
        if client not in self._order:
            self._order.append(client)
        self._wakeup.set()
        try:
            return await asyncio.wait_for(asyncio.shield(job.future), timeout)
        except TimeoutError:
            if not job.started:
                queue.remove(job)
                raise OperationTimeout(f"the card stayed busy for {timeout:.0f} s") from None
            # Running: the card finishes the job (keeping it consistent); the caller stops
            # waiting. The next job starts only after this one ends.
            raise OperationTimeout(f"the card did not answer within {timeout:.0f} s") from None
        except asyncio.CancelledError:
            if not job.started and job in queue:
                queue.remove(job)  # the client went away before its turn
            raise

    def _next_job(self) -> _Job | None:
        for _ in range(len(self._order)):
            client = self._order[0]
            self._order.rotate(-1)
            queue = self._queues.get(client)
            while queue:
                job = queue.popleft()
                if not job.future.done():
                    return job
            self._order.remove(client)
            self._queues.pop(client, None)
        return None

    async def _serve(self) -> None:
        loop = asyncio.get_running_loop()
        while not self._closed:
            job = self._next_job()
            if job is None:
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            job.started = True
            try:
                result = await loop.run_in_executor(self._executor, self._call, job.fn)
            except asyncio.CancelledError:
                # close() stopped waiting for this job (the daemon is stopping): its caller
                # hears that the card is gone; the thread ends on its own.
                if not job.future.done():
                    job.future.set_exception(self._close_reason)
                    job.future.exception()  # retrieved: the caller may have gone already
                raise
            except BaseException as exc:  # delivered to the caller, who maps it
                if not job.future.done():
                    job.future.set_exception(exc)
                if isinstance(exc, CardRemoved):
                    self._drop_transport()
            else:
                if not job.future.done():
                    job.future.set_result(result)
            self.completed += 1

    def _call(self, fn: Callable[[Any], T]) -> T:
        if self._protocol is None:
            self._transport = self._opener()
            self._protocol = CardProtocol(self._transport)
        if self._session is None:
            self._session = self._open_session(self._protocol)
        return fn(self._session)

    def _drop_transport(self) -> None:
        transport, self._transport, self._protocol = self._transport, None, None
        self._session = None
        if transport is not None:
            try:
                transport.close()
            except Exception:  # closing a gone card may fail; nothing to keep
                log.debug("closing %s failed", self.name, exc_info=True)

    def fail_pending(self, exc: BaseException) -> int:
        """Fail every queued job with exc (the card was removed); returns how many."""
        count = 0
        for queue in self._queues.values():
            while queue:
                job = queue.popleft()
                if not job.future.done():
                    job.future.set_exception(exc)
                    count += 1
        self._queues.clear()
        self._order.clear()
        return count

    async def close(self, reason: BaseException | None = None, *,
                    grace: float = CLOSE_GRACE_S) -> None:
        """Fail what is queued, wait for the running job, close the transport (idempotent).

        At most `grace` seconds for each: a job still running then (a PIN entry waiting for
        its holder, a reader that stopped answering) has its caller told the card is gone,
        and the transport is closed by the card's thread once that job ends."""
        if self._closed:
            return
        self._closed = True
        self._close_reason = reason or CardRemoved(f"{self.name}: the card is gone")
        self.fail_pending(self._close_reason)
        self._wakeup.set()
        if self._task is not None:
            try:
                await asyncio.wait_for(self._task, grace)
            except (TimeoutError, asyncio.CancelledError):
                self._task.cancel()
        # Queued behind the running job, if any, on the card's own thread.
        drop = asyncio.get_running_loop().run_in_executor(self._executor, self._drop_transport)
        try:
            await asyncio.wait_for(asyncio.shield(drop), grace)
        except TimeoutError:
            log.warning("%s: a card job is still running; the card is closed when it ends",
                        self.name)
        self._executor.shutdown(wait=False)
