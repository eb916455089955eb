"""Card benchmarks through the real PC/SC stack (pyscard -> pcscd -> vpcd -> simulated cards)."""

from __future__ import annotations

import os

from smartcard.System import readers

from bench.table import Row, fmt_time, goal, interleaved, median, sample
from bifente.apdu.command import CommandApdu
from bifente.apdu.cps import CpsSession
from bifente.apdu.cps_spec import CPS_AID
from bifente.apdu.pcsc import PcscTransport
from bifente.apdu.protocol import CardProtocol
from bifente.apdu.sha256 import split, split_reference
from bifente.apdu.vitale import VitaleSession
from bifente.simulators.slots import CPS_SLOT, VITALE_SLOT
from bifente.simulators.world import CardsOn, SimulatedWorld

__all__ = ["run"]


def split_hash(quick: bool = False) -> list[Row]:
    """H: the host side of the card's split SHA-256 over 1 MB (MAX_SIGN_BYTES), libcrypto."""
    data = os.urandom(1 << 20)
    fast = median(sample(lambda: split(data), 5 if quick else 20))
    # The pure-Python oracle on 64 KiB, scaled to 1 MiB (it is linear: 2.9 s would be long).
    slow = median(sample(lambda: split_reference(data[:1 << 16]), 1 if quick else 3)) * 16
    return [
        Row("split hash of 1 MiB, pure Python (64 KiB x 16)", fmt_time(slow),
            "bifente.apdu.sha256.split_reference: the tests' oracle, the fallback"),
        goal("H", "split hash of 1 MiB (state for PSO HASH)", fmt_time(fast), fast * 1e3, 20,
             at_least=False, unit=" ms", detail="libcrypto SHA256_Update through ctypes"),
    ]


def run(quick: bool = False) -> list[Row]:
    """APDU round trip vs raw pyscard; Vitale family and CPS identity read time and APDU count."""
    rounds, block, reads = (5, 50, 10) if quick else (20, 100, 50)
    rows: list[Row] = split_hash(quick)
    with SimulatedWorld("gp", "family", cards=CardsOn.PCSC, mail=False, dmp=False) as world:
        slots = world.slots
        assert slots is not None
        select = CommandApdu(0x00, 0xA4, 0x04, 0x0C, CPS_AID)
        raw_bytes = list(select.to_bytes())
        reader = next(r for r in readers() if str(r) == slots.reader(CPS_SLOT))
        raw = reader.createConnection()
        raw.connect()
        with PcscTransport(slots.reader(CPS_SLOT)) as transport:
            protocol = CardProtocol(transport)

            def ours() -> None:
                assert protocol.send(select).sw == 0x9000

            def theirs() -> None:
                _data, sw1, sw2 = raw.transmit(raw_bytes)
                assert (sw1, sw2) == (0x90, 0x00)

            s_ours, s_raw = interleaved(ours, theirs, rounds=rounds, block=block)
            m_ours, m_raw = median(s_ours), median(s_raw)
            rows.append(Row("APDU round trip, raw pyscard transmit", fmt_time(m_raw),
                            f"n={len(s_raw)}", "1.00 (baseline)"))
            rows.append(Row("APDU round trip, bifente protocol layer", fmt_time(m_ours),
                            f"n={len(s_ours)}", f"{m_ours / m_raw:.2f} (target <= 1.10)"))

            session = CpsSession(protocol)
            before = protocol.apdu_count
            session.identity()
            count = protocol.apdu_count - before
            times = sample(lambda: CpsSession(protocol).identity(), reads)
            rows.append(Row("CPS identity read (fresh session)", fmt_time(median(times)),
                            f"{count} APDUs"))
        raw.disconnect()
        raw.release()  # before pcscd stops, or pyscard complains at exit
        with PcscTransport(slots.reader(VITALE_SLOT)) as transport:
            protocol = CardProtocol(transport)
            VitaleSession(protocol).read()
            count = protocol.apdu_count
            times = sample(lambda: VitaleSession(protocol).read(), reads)
            rows.append(Row("Vitale 'family' read (4 beneficiaries)", fmt_time(median(times)),
                            f"{count} APDUs"))
    return rows
