"""ISO/IEC 7816-3 constants shared by the host's ATR parser and the simulated card line.

The firmware keeps its own copy (it runs on MicroPython and imports no host package);
tests/test_contracts.py checks that copy against this one.
"""

from __future__ import annotations

__all__ = ["DI_TABLE", "FI_TABLE", "FMAX_HZ", "t1_edc"]

# ISO 7816-3 Table 7: Fi by FI, and f(max) in Hz; 0 marks RFU.
FI_TABLE = (372, 372, 558, 744, 1116, 1488, 1860, 0, 0, 512, 768, 1024, 1536, 2048, 0, 0)
FMAX_HZ = (4_000_000, 5_000_000, 6_000_000, 8_000_000, 12_000_000, 16_000_000, 20_000_000,
           0, 0, 5_000_000, 7_500_000, 10_000_000, 15_000_000, 20_000_000, 0, 0)
# ISO 7816-3 Table 8: Di by DI; 0 marks RFU.
DI_TABLE = (0, 1, 2, 4, 8, 16, 32, 64, 12, 20, 0, 0, 0, 0, 0, 0)


def t1_edc(block: bytes, crc: bool = False) -> bytes:
    """T=1 epilogue (§11.4.4): LRC, or CRC (ISO/IEC 13239: reflected 8408, preset FFFF)."""
    if not crc:
        x = 0
        for b in block:
            x ^= b
        return bytes((x,))
    c = 0xFFFF
    for b in block:
        c ^= b
        for _ in range(8):
            c = (c >> 1) ^ 0x8408 if c & 1 else c >> 1
    return bytes((c >> 8, c & 0xFF))
