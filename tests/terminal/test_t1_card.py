"""A T=1-only card in slot 0 of the virtual terminal: the firmware speaks T=1 (ISO 7816-3 §11).

The card is a CPS3 card behind a T=1-only ATR (`t1_card`, simulators/terminal/card_io.py): IFSC 32,
so every command longer than 32 bytes goes out chained; a signature makes the card ask for a
waiting time extension. The firmware runs on MicroPython with the 192K heap, as elsewhere.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
from cryptography.hazmat.primitives.asymmetric.padding import PKCS1v15
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey
from cryptography.hazmat.primitives.hashes import SHA256

from bifente.apdu.cps import CpsSession
from bifente.apdu.cps_spec import KeyRef
from bifente.apdu.protocol import CardProtocol
from bifente.edged.readers.link import ErrorCode, SlotState
from bifente.edged.readers.terminal import TerminalError, TerminalLink, TerminalTransport
from bifente.simulators.terminal import VirtualTerminal
from bifente.simulators.terminal.card_io import ATR_CPS3_T1, t1_card

PIN = "1234"


@pytest.fixture(scope="module")
def vt_t1(firmware_tools: None) -> Iterator[VirtualTerminal]:
    with VirtualTerminal(t1_card("gp"), "family") as terminal:
        yield terminal


def test_t1_only_card_reads_identity_and_signs(vt_t1: VirtualTerminal) -> None:
    vt = vt_t1
    with TerminalLink(vt.pty_path) as link, TerminalTransport(link, 0) as cps:
        assert cps.atr == ATR_CPS3_T1
        session = CpsSession(CardProtocol(cps))
        identity = session.identity()
        assert identity.serial == "80250000010000000101"
        assert (identity.holder.name, identity.holder.first_name) == ("MARTIN", "Claire")
        with ThreadPoolExecutor(1) as pool:
            typed = pool.submit(vt.press, PIN, "OK", wait=15)
            session.verify_pin(None, timeout=20)
            typed.result(timeout=30)
        vt.wire_stats(0, reset=True)
        vt.heap(probe=True, reset=True)
        try:
            data = b"ordonnance du 12 mars: amoxicilline 1 g x 3 / jour"
            signature = session.sign(data)
            heap = vt.heap()
        finally:
            vt.heap(probe=False)
        stats = vt.wire_stats(0)
        key = session.certificate(KeyRef.SIGNATURE).public_key()
    assert isinstance(key, RSAPublicKey) and len(signature) == 256
    key.verify(signature, data, PKCS1v15(), SHA256())
    assert vt.engines[0].t1  # the engine spoke T=1
    assert stats.blocks >= 2 * stats.headers > 0  # every APDU went as blocks, none as T=0
    assert stats.chained_in >= 1  # the signature's command is longer than IFSC 32
    assert stats.wtx >= 1  # the card asked for more time while it signed
    total = int(heap["alloc"]) + int(heap["free"])  # type: ignore[call-overload]
    assert total <= 192 * 1024  # the T=1 path fits the Pico's heap as T=0 does
    assert int(heap["peak"]) < total - 16 * 1024  # type: ignore[call-overload]
    assert stats.nulls == 0 and stats.procedure_bytes == 0 and stats.framing_errors == 0


def test_t1_card_gone_mute_times_out_at_bwt(vt_t1: VirtualTerminal) -> None:
    vt = vt_t1
    select_mf = bytes.fromhex("00A4000C023F00")
    with TerminalLink(vt.pty_path) as link:
        transport = TerminalTransport(link, 0)
        assert transport.transmit(select_mf)[-2:] == b"\x90\x00"
        vt.mute(0)
        started = time.monotonic()
        with pytest.raises(TerminalError) as failed:
            transport.transmit(select_mf)
        waited = time.monotonic() - started
        assert failed.value.code == ErrorCode.CARD_MUTE
        # BWT = (11 + 16 x 960) x 372 / 3.90625 MHz = 1.46 s; the block, 3 R-blocks, 3 RESYNCH.
        assert 7 * 1.46 < waited < 14.0, waited
        assert link.slot_status()[0] == SlotState.ERROR
        vt.mute(0, False)
        with TerminalTransport(link, 0) as again:
            assert again.atr == ATR_CPS3_T1
            assert again.transmit(select_mf)[-2:] == b"\x90\x00"
