"""Split SHA-256 (IAS-ECC PSO HASH): host split + card finish equals hashlib, bad inputs refused."""

from __future__ import annotations

import hashlib
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bifente.apdu import sha256
from bifente.apdu.sha256 import BLOCK, IV, finish, split, split_reference


def check(message: bytes) -> None:
    state, bits, rest = split(message)
    assert len(state) == 32
    assert bits % 512 == 0 and bits // 8 + len(rest) == len(message)
    # Every whole block is hashed by the host; the card gets the partial block (0..63 bytes).
    assert len(rest) == len(message) % BLOCK
    assert rest == message[bits // 8:]
    assert finish(state, bits, rest) == hashlib.sha256(message).digest()


@pytest.mark.parametrize("length", range(201))
def test_lengths_0_to_200(length: int) -> None:
    check(bytes((i * 7 + length) & 0xFF for i in range(length)))


@pytest.mark.parametrize("blocks", [1, 2, 3, 16, 64])
def test_exact_multiples_of_64(blocks: int) -> None:
    message = bytes(range(256)) * (blocks * BLOCK // 256) + bytes(range(blocks * BLOCK % 256))
    assert len(message) == blocks * BLOCK
    _state, bits, rest = split(message)
    assert rest == b"" and bits == blocks * 512  # as OpenSC: nothing left for the card
    check(message)


def test_nothing_hashed_under_one_block() -> None:
    iv = struct.pack(">8I", *IV)
    for message in (b"", b"a", bytes(63)):
        state, bits, _rest = split(message)
        assert (state, bits) == (iv, 0)
    assert split(bytes(64))[0] != iv


@given(st.binary(max_size=5000))
def test_random_messages(message: bytes) -> None:
    check(message)


@given(st.integers(1, 5000 // BLOCK), st.randoms(use_true_random=False))
def test_random_multiples_of_64(blocks: int, rnd) -> None:
    check(rnd.randbytes(blocks * BLOCK))


def test_libcrypto_is_used_here() -> None:
    # Debian and Raspberry Pi OS ship libcrypto.so.3; without it split() is 2000x slower.
    assert sha256._LIBCRYPTO is not None


@given(st.binary(max_size=5000))
def test_libcrypto_state_equals_the_pure_python_oracle(message: bytes) -> None:
    assert split(message) == split_reference(message)


@pytest.mark.parametrize("length", [0, 1, 64, 65, 128, 129, 4096, 4097])
def test_without_libcrypto_the_pure_python_split_is_used(monkeypatch: pytest.MonkeyPatch,
                                                         length: int) -> None:
    monkeypatch.setattr(sha256, "_LIBCRYPTO", None)
    message = bytes(i & 0xFF for i in range(length))
    assert split(message) == split_reference(message)
    check(message)


def test_finish_from_any_split_point() -> None:
    # The card may be handed the state after any number of whole blocks, not only split()'s.
    message = bytes(range(256)) * 3
    state, bits, rest = split(message[:128])
    assert finish(state, bits, rest) == hashlib.sha256(message[:128]).digest()


@pytest.mark.parametrize(("state", "bits", "rest"), [
    (bytes(31), 0, b""),
    (bytes(33), 0, b""),
    (b"", 0, b""),
    (bytes(32), 8, b""),
    (bytes(32), 511, b"abc"),
    (bytes(32), 0, bytes(65)),
    (bytes(32), 512, bytes(100)),
    (bytes(32), -512, b""),
    (bytes(32), (1 << 64) - 512, bytes(64)),  # the total bit count no longer fits 64 bits
    (bytes(32), 1 << 64, b""),
], ids=["state31", "state33", "no-state", "partial-block", "odd-bits", "rest65", "rest100",
        "negative-bits", "total-2^64", "bits-2^64"])
def test_finish_rejects_bad_input(state: bytes, bits: int, rest: bytes) -> None:
    with pytest.raises(ValueError):
        finish(state, bits, rest)


def test_finish_accepts_the_largest_count() -> None:
    assert len(finish(bytes(32), (1 << 64) - 512, bytes(63))) == 32
