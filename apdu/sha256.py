"""SHA-256 with an exportable intermediate state, for the IAS-ECC split hash (FIPS 180-4 §6.2).

hashlib cannot export its chaining value, so the host-side "all blocks but the last" and the
card-side "finish from a state" are computed here. The host side (up to 1 MB, MAX_SIGN_BYTES)
runs libcrypto's SHA256_Update through ctypes and reads the chaining value out of its
SHA256_CTX; the pure-Python compression below is the fallback where libcrypto cannot be loaded
and the oracle the tests compare it with. Callers use hashlib wherever the state is not needed.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import struct
from typing import Any

__all__ = ["BLOCK", "IV", "finish", "split", "split_reference"]

BLOCK = 64
_MASK = 0xFFFFFFFF
# FIPS 180-4 §5.3.3 initial hash value and §4.2.2 constants.
IV = (0x6A09E667, 0xBB67AE85, 0x3C6EF372, 0xA54FF53A,
      0x510E527F, 0x9B05688C, 0x1F83D9AB, 0x5BE0CD19)
_K = (
    0x428A2F98, 0x71374491, 0xB5C0FBCF, 0xE9B5DBA5, 0x3956C25B, 0x59F111F1, 0x923F82A4,
    0xAB1C5ED5, 0xD807AA98, 0x12835B01, 0x243185BE, 0x550C7DC3, 0x72BE5D74, 0x80DEB1FE,
    0x9BDC06A7, 0xC19BF174, 0xE49B69C1, 0xEFBE4786, 0x0FC19DC6, 0x240CA1CC, 0x2DE92C6F,
    0x4A7484AA, 0x5CB0A9DC, 0x76F988DA, 0x983E5152, 0xA831C66D, 0xB00327C8, 0xBF597FC7,
    0xC6E00BF3, 0xD5A79147, 0x06CA6351, 0x14292967, 0x27B70A85, 0x2E1B2138, 0x4D2C6DFC,
    0x53380D13, 0x650A7354, 0x766A0ABB, 0x81C2C92E, 0x92722C85, 0xA2BFE8A1, 0xA81A664B,
    0xC24B8B70, 0xC76C51A3, 0xD192E819, 0xD6990624, 0xF40E3585, 0x106AA070, 0x19A4C116,
    0x1E376C08, 0x2748774C, 0x34B0BCB5, 0x391C0CB3, 0x4ED8AA4A, 0x5B9CCA4F, 0x682E6FF3,
    0x748F82EE, 0x78A5636F, 0x84C87814, 0x8CC70208, 0x90BEFFFA, 0xA4506CEB, 0xBEF9A3F7,
    0xC67178F2,
)


def _rotr(x: int, n: int) -> int:
    return ((x >> n) | (x << (32 - n))) & _MASK


def _compress(state: tuple[int, ...], block: bytes) -> tuple[int, ...]:
    w = list(struct.unpack(">16I", block))
    for i in range(16, 64):
        s0 = _rotr(w[i - 15], 7) ^ _rotr(w[i - 15], 18) ^ (w[i - 15] >> 3)
        s1 = _rotr(w[i - 2], 17) ^ _rotr(w[i - 2], 19) ^ (w[i - 2] >> 10)
        w.append((w[i - 16] + s0 + w[i - 7] + s1) & _MASK)
    a, b, c, d, e, f, g, h = state
    for i in range(64):
        t1 = (h + (_rotr(e, 6) ^ _rotr(e, 11) ^ _rotr(e, 25)) + ((e & f) ^ (~e & g))
              + _K[i] + w[i]) & _MASK
        t2 = ((_rotr(a, 2) ^ _rotr(a, 13) ^ _rotr(a, 22)) + ((a & b) ^ (a & c) ^ (b & c))) & _MASK
        a, b, c, d, e, f, g, h = (t1 + t2) & _MASK, a, b, c, (d + t1) & _MASK, e, f, g
    return tuple((x + y) & _MASK for x, y in zip(state, (a, b, c, d, e, f, g, h), strict=True))


class _Sha256Ctx(ctypes.Structure):
    # OpenSSL's SHA256_CTX (include/openssl/sha.h, unchanged since 0.9.8): h[8] is the
    # FIPS 180-4 chaining value H(i) as native 32-bit words, then Nl, Nh, data[16], num, md_len.
    _fields_ = [("h", ctypes.c_uint32 * 8), ("nl", ctypes.c_uint32), ("nh", ctypes.c_uint32),
                ("data", ctypes.c_uint32 * 16), ("num", ctypes.c_uint), ("md_len", ctypes.c_uint)]


def _load_libcrypto() -> tuple[Any, Any] | None:
    """libcrypto's SHA256_Init and SHA256_Update, or None where it is missing."""
    name = ctypes.util.find_library("crypto")
    try:
        lib = ctypes.CDLL(name or "libcrypto.so.3")
        init, update = lib.SHA256_Init, lib.SHA256_Update
    except (OSError, AttributeError):
        return None
    init.argtypes = [ctypes.POINTER(_Sha256Ctx)]
    init.restype = ctypes.c_int
    update.argtypes = [ctypes.POINTER(_Sha256Ctx), ctypes.c_char_p, ctypes.c_size_t]
    update.restype = ctypes.c_int
    return init, update


_LIBCRYPTO = _load_libcrypto()


def _blocks_libcrypto(data: bytes, length: int) -> tuple[int, ...] | None:
    """The chaining value after the first `length` bytes (whole blocks) of data, or None."""
    if _LIBCRYPTO is None:
        return None
    init, update = _LIBCRYPTO
    ctx = _Sha256Ctx()
    # No copy: ctypes passes a pointer into the bytes object; length stops at the cut.
    if not init(ctypes.byref(ctx)) or not update(ctypes.byref(ctx), data, length):
        return None
    return tuple(ctx.h)


def _cut(message: bytes) -> int:
    # Every whole block is hashed on the host; the partial one, 0..63 bytes, goes to the card
    # (OpenSC card-iasecc.c iasecc_qsign_data_sha256 cuts the same way).
    return len(message) // BLOCK * BLOCK


def split(message: bytes) -> tuple[bytes, int, bytes]:
    """Hash every whole block: (32-byte state, bits processed, remaining 0..63 bytes).

    IAS-ECC PSO HASH sends the state with its bit count and the remainder to the card. The
    cut is OpenSC's (card-iasecc.c `iasecc_qsign_data_sha256`: all that OpenSSL hashed, the
    partial block left), the form known to sign on a real CPS3.
    """
    cut = _cut(message)
    state = _blocks_libcrypto(bytes(message), cut) if cut else IV
    if state is None:
        return split_reference(message)
    return struct.pack(">8I", *state), cut * 8, message[cut:]


def split_reference(message: bytes) -> tuple[bytes, int, bytes]:
    """split() in pure Python (FIPS 180-4 §6.2.2): the fallback and the tests' oracle."""
    cut = _cut(message)
    state: tuple[int, ...] = IV
    for i in range(0, cut, BLOCK):
        state = _compress(state, message[i:i + BLOCK])
    return struct.pack(">8I", *state), cut * 8, message[cut:]


def finish(state: bytes, bits_done: int, rest: bytes) -> bytes:
    """Complete SHA-256 from an intermediate state (what the card does for PSO HASH)."""
    total_bits = bits_done + len(rest) * 8
    # A negative or >= 2**64 bit count (8 bytes from the card's peer) must not reach struct.pack.
    if (len(state) != 32 or bits_done < 0 or bits_done % 512 or len(rest) > BLOCK
            or total_bits >= 1 << 64):
        raise ValueError("bad split-hash input: 32-byte state, whole blocks, <= 64 bytes left")
    h = struct.unpack(">8I", state)
    tail = rest + b"\x80" + b"\x00" * ((55 - len(rest)) % 64) + struct.pack(">Q", total_bits)
    for i in range(0, len(tail), BLOCK):
        h = _compress(h, tail[i:i + BLOCK])
    return struct.pack(">8I", *h)
