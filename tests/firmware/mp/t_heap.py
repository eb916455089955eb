"""Heap use of a running terminal: what it holds after boot, its live peak, churn per APDU."""

import gc

gc.collect()
_START = gc.mem_alloc()  # before the firmware and the test harness are loaded

import link  # noqa: E402
from rig import Rig  # noqa: E402

LIVE_LIMIT = 64 * 1024  # the terminal's live heap must stay far under a Pico's ~190 KB


async def test_terminal_heap_high_water():
    gc.collect()
    base = gc.mem_alloc()
    code = base - _START  # firmware + harness modules (bytecode, classes, qstrs)
    rig = Rig()
    gc.collect()
    boot = gc.mem_alloc() - base
    await rig.start()
    live_max = 0
    churn_max = 0
    for i in range(40):
        apdu = bytes.fromhex("00B0000000") if i % 2 else bytes.fromhex("00B0000010")
        gc.collect()
        gc.disable()
        before = gc.mem_alloc()
        rsp = await rig.host.request(link.Transmit(0, apdu))
        churn = gc.mem_alloc() - before
        gc.enable()
        assert rsp.data[-2:] == b"\x90\x00"
        churn_max = max(churn_max, churn)
        gc.collect()
        live_max = max(live_max, gc.mem_alloc() - base)
        rig.port.sent = bytearray()  # the test's own capture must not grow
        rig.host._seen = 0
    await rig.stop()
    print(f"HEAP terminal modules={code} boot={boot} live_max={live_max} "
          f"transmit_alloc_max={churn_max}")
    assert live_max < LIVE_LIMIT, live_max
