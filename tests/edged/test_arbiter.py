"""The card arbiter: one job at a time per card, round robin between clients, clean failures."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from bifente.apdu.command import CommandApdu
from bifente.apdu.cps import CpsSession
from bifente.apdu.errors import CardRemoved
from bifente.apdu.protocol import CardProtocol
from bifente.apdu.transport import InProcessTransport
from bifente.edged.readers.arbiter import Busy, CardArbiter, OperationTimeout
from bifente.simulators.cps3 import Cps3Card


def arbiter_for(card: Cps3Card) -> CardArbiter:
    card.power_on()
    return CardArbiter("test", lambda: InProcessTransport(card))


@pytest.mark.asyncio
async def test_jobs_never_overlap_and_all_complete() -> None:
    arbiter = arbiter_for(Cps3Card("gp"))
    active = 0
    peak = 0
    lock = threading.Lock()

    def job(protocol: CardProtocol) -> str:
        nonlocal active, peak
        with lock:
            active += 1
            peak = max(peak, active)
        time.sleep(0.002)
        serial = CpsSession(protocol).serial()
        with lock:
            active -= 1
        return serial

    results = await asyncio.gather(*(arbiter.run(f"client{i % 5}", job) for i in range(40)))
    assert peak == 1
    assert set(results) == {"80250000010000000101"}
    await arbiter.close()


@pytest.mark.asyncio
async def test_round_robin_between_clients() -> None:
    arbiter = arbiter_for(Cps3Card("gp"))
    order: list[str] = []
    gate = threading.Event()

    def blocker(protocol: CardProtocol) -> None:
        gate.wait(5)

    def tagged(name: str):
        def job(protocol: CardProtocol) -> None:
            order.append(name)
        return job

    first = asyncio.ensure_future(arbiter.run("greedy", blocker))
    await asyncio.sleep(0.05)
    # The greedy client queues 5 jobs before the polite one queues 2.
    greedy = [asyncio.ensure_future(arbiter.run("greedy", tagged("g"))) for _ in range(5)]
    await asyncio.sleep(0)
    polite = [asyncio.ensure_future(arbiter.run("polite", tagged("p"))) for _ in range(2)]
    await asyncio.sleep(0.01)
    gate.set()
    await asyncio.gather(first, *greedy, *polite)
    # The polite client's jobs are not stuck behind all of the greedy client's jobs.
    assert order.index("p") <= 2 and order.count("p") == 2
    assert order[:4] in (["g", "p", "g", "p"], ["p", "g", "p", "g"])
    await arbiter.close()


@pytest.mark.asyncio
async def test_multi_step_operation_is_atomic() -> None:
    """Another client's MSE cannot land between a signer's MSE and PSO CDS."""
    card = Cps3Card("gp")
    arbiter = arbiter_for(card)
    await arbiter.run("a", lambda p: CpsSession(p).verify_pin(lambda r: bytearray(b"1234")))

    def sign(protocol: CardProtocol) -> bytes:
        return CpsSession(protocol).sign(b"report")

    def reset_env(protocol: CardProtocol) -> None:
        protocol.send(CommandApdu(0x00, 0x22, 0xF3, 0x00))  # MSE RESTORE clears templates

    jobs = []
    for i in range(10):
        jobs.append(arbiter.run("signer", sign))
        jobs.append(arbiter.run(f"other{i}", reset_env))
    results = await asyncio.gather(*jobs)
    assert all(len(r) == 256 for r in results[::2])
    await arbiter.close()


@pytest.mark.asyncio
async def test_queue_timeout_and_running_timeout() -> None:
    arbiter = arbiter_for(Cps3Card("gp"))
    gate = threading.Event()
    running = asyncio.ensure_future(arbiter.run("a", lambda p: gate.wait(5)))
    await asyncio.sleep(0.05)
    with pytest.raises(OperationTimeout, match="busy"):
        await arbiter.run("b", lambda p: None, timeout=0.1)
    assert arbiter.pending == 0  # the timed-out job left the queue
    gate.set()
    await running
    slow = threading.Event()
    with pytest.raises(OperationTimeout, match="did not answer"):
        await arbiter.run("c", lambda p: slow.wait(0.3), timeout=0.05)
    # The card finishes the slow job, then serves the next one normally.
    assert await arbiter.run("c", lambda p: CpsSession(p).serial()) == "80250000010000000101"
    await arbiter.close()


@pytest.mark.asyncio
async def test_removal_fails_pending_jobs_and_later_calls() -> None:
    arbiter = arbiter_for(Cps3Card("gp"))
    gate = threading.Event()
    running = asyncio.ensure_future(arbiter.run("a", lambda p: gate.wait(5)))
    await asyncio.sleep(0.05)
    queued = [asyncio.ensure_future(arbiter.run("b", lambda p: None)) for _ in range(3)]
    await asyncio.sleep(0.01)
    closing = asyncio.ensure_future(arbiter.close(CardRemoved("pulled")))
    await asyncio.sleep(0.01)
    for job in queued:
        with pytest.raises(CardRemoved, match="pulled"):
            await job
    gate.set()
    await running
    await closing
    with pytest.raises(CardRemoved):
        await arbiter.run("a", lambda p: None)


@pytest.mark.asyncio
async def test_cancelled_caller_leaves_the_queue() -> None:
    arbiter = arbiter_for(Cps3Card("gp"))
    gate = threading.Event()
    ran: list[str] = []
    running = asyncio.ensure_future(arbiter.run("a", lambda p: gate.wait(5)))
    await asyncio.sleep(0.05)
    gone = asyncio.ensure_future(arbiter.run("b", lambda p: ran.append("b")))
    await asyncio.sleep(0.01)
    gone.cancel()
    await asyncio.sleep(0.01)
    gate.set()
    await running
    assert await arbiter.run("c", lambda p: "after") == "after"
    assert ran == []  # a client that disconnected never got its job run
    await arbiter.close()


@pytest.mark.asyncio
async def test_per_client_queue_cap() -> None:
    arbiter = arbiter_for(Cps3Card("gp"))
    arbiter.max_queue_per_client = 2
    gate = threading.Event()
    first = asyncio.ensure_future(arbiter.run("a", lambda p: gate.wait(5)))
    await asyncio.sleep(0.05)
    queued = [asyncio.ensure_future(arbiter.run("a", lambda p: None)) for _ in range(2)]
    await asyncio.sleep(0.01)
    with pytest.raises(Busy):
        await arbiter.run("a", lambda p: None)
    gate.set()
    await asyncio.gather(first, *queued)
    await arbiter.close()


@pytest.mark.asyncio
async def test_close_gives_a_stuck_job_its_grace_then_tells_its_caller(
        caplog: pytest.LogCaptureFixture) -> None:
    """A job that does not end (a PIN entry nobody answers) holds close() for `grace` only:
    its caller hears CardRemoved, and the card is closed by its thread once the job ends."""
    card = Cps3Card("gp")
    arbiter = arbiter_for(card)
    release, closed, opened = threading.Event(), threading.Event(), threading.Event()

    def opener() -> InProcessTransport:
        transport = InProcessTransport(card)
        original = transport.close
        transport.close = lambda: (original(), closed.set())  # type: ignore[method-assign]
        opened.set()
        return transport

    arbiter._opener = opener
    caller = asyncio.ensure_future(arbiter.run("holder", lambda p: release.wait(30),
                                               timeout=60))
    assert await asyncio.to_thread(opened.wait, 5)  # the card's thread opened it: the job runs
    await arbiter.close(CardRemoved("the daemon is stopping"), grace=0.2)
    with pytest.raises(CardRemoved, match="stopping"):
        await asyncio.wait_for(caller, 1)
    assert not closed.is_set()  # the job still runs: its card is not pulled from under it
    release.set()
    assert await asyncio.to_thread(closed.wait, 5)
    assert "never retrieved" not in caplog.text
