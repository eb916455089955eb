"""The card's half of the IAS-ECC split hash: PSO HASH data in, the message digest out.

Three forms of the PSO HASH data field (ISO 7816-8 §5.2, IAS-ECC; the first two are what
OpenSC's card-iasecc.c `iasecc_compute_signature_dst` sends to CPx cards):

- `90 00 80 n <message>`: nothing hashed yet (a message under one block);
- `90 <h+8> <state || 8-byte bit count> 80 n <rest>`: the host hashed whole blocks;
- `90 <h> <digest>`: the host hashed everything (kept from the first simulator; no host of
  ours sends it).

SHA-256 (FIPS 180-4 §6.2) comes from `bifente.apdu.sha256`; SHA-1 (FIPS 180-4 §6.1) is here, because
a real CPS3 lists SHA-1 in its TokenInfo (OpenSC issue #2267) and only the card finishes it.
"""

from __future__ import annotations

import struct

from bifente.apdu import sha256, tlv
from bifente.apdu.errors import MalformedData

__all__ = ["HASH_SHA1", "HASH_SHA256", "digest_of"]

# Hash algorithm references of MSE SET HT (OpenSC iasecc-sdo.h IASECC_ALGORITHM_SHA1/SHA2).
HASH_SHA1, HASH_SHA256 = 0x10, 0x40
_MASK = 0xFFFFFFFF
_SHA1_IV = (0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476, 0xC3D2E1F0)  # FIPS 180-4 §5.3.1


def _rotl(x: int, n: int) -> int:
    return ((x << n) | (x >> (32 - n))) & _MASK


def _sha1_compress(h: tuple[int, ...], block: bytes) -> tuple[int, ...]:
    w = list(struct.unpack(">16I", block))
    for i in range(16, 80):
        w.append(_rotl(w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16], 1))
    a, b, c, d, e = h
    for i in range(80):
        if i < 20:
            f, k = (b & c) | (~b & d), 0x5A827999
        elif i < 40:
            f, k = b ^ c ^ d, 0x6ED9EBA1
        elif i < 60:
            f, k = (b & c) | (b & d) | (c & d), 0x8F1BBCDC
        else:
            f, k = b ^ c ^ d, 0xCA62C1D6
        a, b, c, d, e = (_rotl(a, 5) + f + e + k + w[i]) & _MASK, a, _rotl(b, 30), c, d
    return tuple((x + y) & _MASK for x, y in zip(h, (a, b, c, d, e), strict=True))


def _sha1_finish(state: bytes, bits_done: int, rest: bytes) -> bytes:
    total_bits = bits_done + len(rest) * 8
    if (len(state) != 20 or bits_done < 0 or bits_done % 512 or len(rest) > 64
            or total_bits >= 1 << 64):
        raise ValueError("bad split-hash input: 20-byte state, whole blocks, <= 64 bytes left")
    h = struct.unpack(">5I", state)
    tail = rest + b"\x80" + b"\x00" * ((55 - len(rest)) % 64) + struct.pack(">Q", total_bits)
    for i in range(0, len(tail), 64):
        h = _sha1_compress(h, tail[i:i + 64])
    return struct.pack(">5I", *h)


_HASHES = {
    HASH_SHA256: (32, struct.pack(">8I", *sha256.IV), sha256.finish),
    HASH_SHA1: (20, struct.pack(">5I", *_SHA1_IV), _sha1_finish),
}


def digest_of(algorithm: int, data: bytes) -> bytes:
    """The digest a PSO HASH data field stands for; MalformedData when it stands for none."""
    size, iv, finish = _HASHES[algorithm]
    items = {t.tag: t.value for t in tlv.decode(data)}
    state = items.get(0x90)
    if state is None or set(items) - {0x80, 0x90}:
        raise MalformedData("PSO HASH needs a 90 (state) and at most an 80 (rest)")
    rest = items.get(0x80)
    if rest is None:
        if len(state) != size:
            raise MalformedData("a 90 alone must be the whole digest")
        return state
    try:
        if not state:  # nothing hashed yet: the message itself, under one block
            return finish(iv, 0, rest)
        if len(state) != size + 8:
            raise MalformedData("90 must hold the state and an 8-byte bit count")
        return finish(state[:size], int.from_bytes(state[size:], "big"), rest)
    except ValueError as exc:
        raise MalformedData(str(exc)) from exc

