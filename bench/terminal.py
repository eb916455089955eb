"""Terminal benchmarks: the link against PC/SC, time on the card wire, the firmware's heap.

- APDU round trip: the same SELECT on the same simulated CPS card, through pyscard -> pcscd
  -> vpcd and through pyserial -> pty -> the firmware on MicroPython -> its T=0 line ->
  the card engine; interleaved in one run, medians and their ratio.
- Card wire time, modelled: the characters the card engine really exchanged (ATR, PPS,
  headers, procedure bytes, data, SW, GET RESPONSEs) x 12 etu (10 etu + 2 etu guard time,
  ISO 7816-3 §7.2) + 4 etu at each change of direction (16 etu between opposite
  characters, §10.2); etu = F / (D x f) with f from the pin map. Once at the default
  372/1 (no PPS: about 10 500 bit/s, the "9600 baud" class) and once at the speed PPS reached.
- Heap: the firmware's live heap high-water mark (gc.collect + gc.mem_alloc sampled at every
  card character batch, frame and screen) on the unix port under -X heapsize=192K.
"""

from __future__ import annotations

import importlib.util
import threading
import time
from pathlib import Path
from typing import Any

from smartcard.Exceptions import NoCardException
from smartcard.System import readers

from bench.table import Row, fmt_time, goal, interleaved, median, sample
from bifente.apdu.command import CommandApdu
from bifente.apdu.cps import CpsSession
from bifente.apdu.cps_spec import CPS_AID
from bifente.apdu.protocol import CardProtocol
from bifente.apdu.vitale import VitaleSession
from bifente.edged.readers.terminal import TerminalLink, TerminalTransport
from bifente.simulators.slots import CPS_SLOT
from bifente.simulators.terminal import VirtualTerminal, WireStats
from bifente.simulators.terminal.card_io import CHAR_ETU
from bifente.simulators.world import CardsOn, SimulatedWorld

__all__ = ["run"]

ROOT = Path(__file__).resolve().parents[1]
DEFAULT = (372, 1)


def card_clock_hz() -> int:
    """f from the hardware pin map (firmware/pinmap.py, the only copy)."""
    spec = importlib.util.spec_from_file_location("pinmap", ROOT / "firmware" / "pinmap.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return int(module.CARD_CLK_HZ)


def _wire_rows(name: str, stats: WireStats, apdus: int, f: int) -> list[Row]:
    # Without PPS the request and its echo are not sent at all.
    no_pps = stats.seconds(f, at=DEFAULT) - stats.pps_chars * CHAR_ETU * DEFAULT[0] / f
    reached = stats.seconds(f)
    speeds = sorted(t for t in stats.chars if t != DEFAULT)
    speed = "/".join(f"Fi {fi} Di {di}" for fi, di in speeds) or "372/1: the card offers no TA1"
    detail = (f"{stats.total_chars} chars ({stats.atr_chars} ATR, {stats.pps_chars} PPS, "
              f"{stats.procedure_bytes} procedure incl. {stats.nulls} NULL, "
              f"{stats.get_responses} GET RESPONSE, {stats.wrong_le} 6Cxx), {apdus} APDUs")
    return [
        Row(f"{name}, card wire at 372/1 (no PPS)", fmt_time(no_pps), detail, "1.00 (baseline)"),
        Row(f"{name}, card wire after PPS ({speed})", fmt_time(reached), "",
            f"{reached / no_pps:.2f}"),
    ]


def _connect(connection: Any, timeout: float = 10.0) -> None:
    """Connect once vpcd has shown the card to pcscd (just after start it may not have yet)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            connection.connect()
            return
        except NoCardException:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def _host_row(name: str, host: float, stats: WireStats, f: int) -> Row:
    # The virtual terminal answers at once: the whole operation's wall time here is what the
    # host, the link and the firmware add; on a real card it comes on top of the wire time.
    wire = stats.seconds(f)
    return goal("P4h", f"{name}, host overhead / card wire time", fmt_time(host), host / wire,
                0.1, at_least=False,
                detail=f"wall time over the virtual terminal vs {fmt_time(wire)} on the wire "
                       "after PPS (firmware on x86, not the RP2040)")


def _press_later(vt: VirtualTerminal, *keys: str) -> threading.Thread:
    t = threading.Thread(target=vt.press, args=keys, kwargs={"wait": 15}, daemon=True)
    t.start()
    return t


def _pty(world: SimulatedWorld) -> str:
    """The started world's terminal pty."""
    assert world.terminal is not None
    return world.terminal.pty_path


def run(quick: bool = False) -> list[Row]:
    """Round trip terminal vs PC/SC; modelled wire time of a Vitale read and a CPS signature."""
    rounds, block = (5, 40) if quick else (20, 100)
    f = card_clock_hz()
    rows: list[Row] = []
    select = CommandApdu(0x00, 0xA4, 0x04, 0x0C, CPS_AID)
    raw_select = list(select.to_bytes())
    # The same CPS in a vpcd reader and in the virtual terminal: two worlds side by side.
    in_pcscd = SimulatedWorld("gp", None, cards=CardsOn.PCSC, mail=False, dmp=False)
    in_terminal = SimulatedWorld("gp", "family", cards=CardsOn.TERMINAL, mail=False, dmp=False)
    with in_pcscd, in_terminal, TerminalLink(_pty(in_terminal)) as link:
        slots, vt = in_pcscd.slots, in_terminal.terminal
        assert slots is not None and vt is not None
        reader = next(r for r in readers() if str(r) == slots.reader(CPS_SLOT))
        pcsc = reader.createConnection()
        _connect(pcsc)
        try:
            with TerminalTransport(link, 0) as terminal_cps:
                terminal = CardProtocol(terminal_cps)

                def over_pcsc() -> None:
                    _data, sw1, sw2 = pcsc.transmit(raw_select)
                    assert (sw1, sw2) == (0x90, 0x00)

                def over_terminal() -> None:
                    assert terminal.send(select).sw == 0x9000

                s_term, s_pcsc = interleaved(over_terminal, over_pcsc, rounds=rounds,
                                             block=block)
        finally:
            pcsc.disconnect()
            pcsc.release()  # before pcscd stops
        m_term, m_pcsc = median(s_term), median(s_pcsc)
        rows.append(Row("APDU round trip, PC/SC (pyscard -> pcscd -> vpcd)", fmt_time(m_pcsc),
                        f"n={len(s_pcsc)}", "1.00 (baseline)"))
        rows.append(Row("APDU round trip, terminal (pty -> MicroPython -> T=0 line)",
                        fmt_time(m_term), f"n={len(s_term)}", f"{m_term / m_pcsc:.2f}"))

        vt.heap(probe=True, reset=True)
        vt.wire_stats(1, reset=True)
        with TerminalTransport(link, 1) as vitale:
            protocol = CardProtocol(vitale)
            VitaleSession(protocol).read()
            # reset=True detaches this read's count: the sampled reads below must not add to it.
            stats = vt.wire_stats(1, reset=True)
            apdus = protocol.apdu_count
            # The median of a few reads: a single one swung from 0.08 to 0.14 of the wire time.
            host = median(sample(lambda: VitaleSession(protocol).read(), 5))
        rows += _wire_rows("Vitale 'family' read", stats, apdus, f)
        rows.append(_host_row("Vitale 'family' read", host, stats, f))

        with TerminalTransport(link, 0) as cps:
            protocol = CardProtocol(cps)
            session = CpsSession(protocol)
            typist = _press_later(vt, "1234", "OK")
            session.verify_pin(None, timeout=20)
            typist.join()
            vt.wire_stats(0, reset=True)
            before = protocol.apdu_count
            start = time.perf_counter()
            session.sign(b"bench: one signature, hashed on both sides")
            host = time.perf_counter() - start
            stats = vt.wire_stats(0, reset=True)
            rows += _wire_rows("CPS signature (MSE, PSO HASH, PSO CDS)", stats,
                               protocol.apdu_count - before, f)
            rows.append(_host_row("CPS signature", host, stats, f))
        heap = vt.heap(probe=False)
        size = int(heap["alloc"]) + int(heap["free"])  # type: ignore[call-overload]
        rows.append(Row(f"Firmware live heap high-water (unix port, heap {size // 1024} KB)",
                        f"{int(heap['peak']) / 1024:.1f} KB",  # type: ignore[call-overload]
                        f"after boot {int(heap['boot']) / 1024:.1f} KB, "  # type: ignore[call-overload]
                        f"{heap['samples']} samples during the two runs above",
                        f"{int(heap['peak']) / size:.0%} of the heap"))  # type: ignore[call-overload]
    return rows
