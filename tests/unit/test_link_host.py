"""Host codec of the terminal link against docs/link-vectors.json, plus property tests."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bifente.edged.readers import link as L

VECTORS = json.loads((Path(__file__).resolve().parents[2] / "docs" / "link-vectors.json")
                     .read_text(encoding="utf-8"))
BYTES_FIELDS = {"atr", "apdu", "data"}


def crc_reference(data: bytes) -> int:
    """Bit-by-bit CRC-16/CCITT-FALSE, independent of binascii."""
    crc = 0xFFFF
    for b in data:
        crc ^= b << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else crc << 1
            crc &= 0xFFFF
    return crc


def build(type_name: str, fields: dict[str, object]) -> L.Message:
    """A host message from a vector's JSON fields."""
    cls = next(c for c in L._CLASSES.values() if c.TYPE.name == type_name)
    kw: dict[str, object] = {}
    for k, v in fields.items():
        if k in BYTES_FIELDS:
            v = bytes.fromhex(str(v))
        elif isinstance(v, dict):
            v = L.PinField(**v)
        elif isinstance(v, list):
            v = tuple(v)
        kw[k] = v
    return cls(**kw)


def names_of(items: list[L.Frame | L.FrameError]) -> list[str]:
    """Parser items as the vectors name them."""
    by_hex = {f["hex"]: f["name"] for f in VECTORS["frames"]}
    return [f"frame:{by_hex.get(i.to_bytes().hex(), '?')}" if isinstance(i, L.Frame)
            else f"error:{i.code.name}" for i in items]


# --- vectors ------------------------------------------------------------------------------------
def test_tables_match_vectors() -> None:
    assert VECTORS["types"] == {t.name: int(t) for t in L.MessageType}
    assert VECTORS["errors"] == {e.name: int(e) for e in L.ErrorCode}
    lim = VECTORS["limits"]
    assert (lim["sof"], lim["max_payload"], lim["header_len"], lim["overhead"]) == (
        L.SOF, L.MAX_PAYLOAD, L.HEADER_LEN, L.OVERHEAD)


def test_host_enums_name_the_contracts_tables() -> None:
    # The host's enums are names over contracts/link.py, the codec the firmware runs.
    from bifente.contracts import link as wire

    assert {int(t): t.name for t in L.MessageType} == wire.TYPE_NAMES
    assert {int(e): e.name for e in L.ErrorCode} == wire.ERROR_NAMES


def test_crc_check_value_and_reference() -> None:
    assert L.crc16(b"123456789") == crc_reference(b"123456789") == VECTORS["crc"]["check"]
    for f in VECTORS["frames"]:
        raw = bytes.fromhex(f["hex"])
        assert crc_reference(raw[1:-2]) == int.from_bytes(raw[-2:], "big"), f["name"]


def test_hello_frame_worked_by_hand() -> None:
    # docs/link-protocol.md walks through this one byte by byte.
    assert L.encode_message(1, L.Hello(2, 512)).hex() == "a5010101000302020018f2"
    assert VECTORS["frames"][0] == {**VECTORS["frames"][0], "name": "hello_1",
                                    "hex": "a5010101000302020018f2"}


@pytest.mark.parametrize("vec", VECTORS["frames"], ids=lambda v: v["name"])
def test_vector_frame(vec: dict) -> None:
    raw = bytes.fromhex(vec["hex"])
    (frame,) = L.FrameParser().feed(raw)
    assert isinstance(frame, L.Frame)
    assert (frame.seq, L.MessageType(frame.type).name, frame.payload.hex()) == (
        vec["seq"], vec["type"], vec["payload"])
    msg = L.decode_message(frame)
    assert L.message_fields(msg) == vec["fields"]
    assert build(vec["type"], vec["fields"]) == msg
    assert L.encode_message(vec["seq"], msg) == raw


@pytest.mark.parametrize("vec", VECTORS["bad_payloads"], ids=lambda v: v["name"])
def test_vector_bad_payload(vec: dict) -> None:
    frame = L.Frame(3, vec["type_code"], bytes.fromhex(vec["payload"]))
    with pytest.raises(L.DecodeError) as info:
        L.decode_message(frame)
    assert info.value.code.name == vec["error"] and info.value.seq == 3


@pytest.mark.parametrize("vec", VECTORS["streams"], ids=lambda v: v["name"])
@pytest.mark.parametrize("chunk", [1, 2, 3, 7, 64, 100_000])
def test_vector_stream(vec: dict, chunk: int) -> None:
    data = bytes.fromhex(vec["hex"])
    parser = L.FrameParser()
    items: list[L.Frame | L.FrameError] = []
    for i in range(0, len(data), chunk):
        items += parser.feed(data[i:i + chunk])
    items += parser.expire()
    assert names_of(items) == vec["expect"]


@pytest.mark.parametrize("vec", VECTORS["expire"], ids=lambda v: v["name"])
def test_vector_expire(vec: dict) -> None:
    parser = L.FrameParser()
    assert names_of(parser.feed(bytes.fromhex(vec["hex"]))) == vec["before"]
    assert names_of(parser.expire()) == vec["after"]
    assert not parser.pending()


# --- limits ----------------------------------------------------------------------------------
@pytest.mark.parametrize("n", [0, 1, 0x7F, 0x80, 0xFF, 0x100, L.MAX_PAYLOAD])
def test_boundary_payload_lengths(n: int) -> None:
    payload = bytes(i & 0xFF for i in range(n))
    raw = L.encode_frame(7, L.MessageType.RESPONSE, payload)
    assert len(raw) == n + L.OVERHEAD
    (frame,) = L.FrameParser().feed(raw)
    assert isinstance(frame, L.Frame) and frame.payload == payload


@pytest.mark.parametrize("n", [L.MAX_PAYLOAD + 1, 0xFFFF])
def test_oversize_rejected_from_the_header_alone(n: int) -> None:
    header = bytes((L.SOF, 1, 1, L.MessageType.TRANSMIT, n >> 8, n & 0xFF))
    (err,) = L.FrameParser().feed(header)
    assert isinstance(err, L.FrameError) and err.code == L.ErrorCode.OVERSIZE
    with pytest.raises(L.EncodeError):
        L.encode_frame(1, L.MessageType.RESPONSE, bytes(n))


def test_encoder_refuses_what_the_wire_cannot_carry() -> None:
    bad: list[L.Message] = [
        L.Confirm(10, "Consentement donné ?"),  # accents must be folded by the caller
        L.Confirm(10, ""),
        L.Display(("a\nb",)),
        L.Display(tuple("x" for _ in range(9))),
        L.Transmit(0, b"\x00\xa4"),
        L.Transmit(8, b"\x00\xa4\x00\x00"),
        L.Hello(1, 100),
        L.SecureVerify(0, 0, 0x20, 0, 1, 30, 1, 3, L.PinField(4, 13)),
        L.SecureVerify(0, 0, 0x20, 0, 1, 30, 1, 3, L.PinField(4, 8, 0xFF, 4)),
        L.SecureVerify(0, 0, 0x20, 0, 1, 300, 1, 3, L.PinField(4, 8)),
        L.SecureVerify(0, 0, 0x20, 0, 1, 30, 1, 16, L.PinField(4, 8)),
        L.SecureChange(0, 0, 0x24, 0, 1, 30, 256, 3, L.PinField(4, 8), L.PinField(4, 8)),
        L.Display(("code",), 256),
        L.Identity(""),
        L.Identity("empreinte é"),
        L.LinkErrorMessage(1, "two\nlines"),
        L.Response(b"\x90"),
    ]
    for msg in bad:
        with pytest.raises(L.EncodeError):
            msg.to_payload()


def test_reprs_hide_apdus_and_prompt_text() -> None:
    text = repr(L.Transmit(0, bytes.fromhex("00A4040C")))
    assert "a4" not in text.lower() and text == "Transmit(slot=0)"
    assert "DUPONT" not in repr(L.Confirm(5, "Patient DUPONT"))
    assert "1357" not in repr(L.Response(b"1357\x90\x00"))


# --- properties --------------------------------------------------------------------------------
pin_fields = st.builds(
    lambda lo, extra, pad, enc, padded: L.PinField(
        lo, lo + extra, pad, padded if padded >= (lo + extra if enc == 0 else (lo + extra + 1)
                                                    // 2) else 0, L.PinEncoding(enc)),
    st.integers(1, 8), st.integers(0, 4), st.integers(0, 255), st.integers(0, 1),
    st.integers(0, 16))
ascii_text = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=40)
byte = st.integers(0, 255)
tries = st.one_of(st.integers(0, 15), st.just(L.TRIES_UNKNOWN))
slot = st.integers(0, L.MAX_SLOTS - 1)

messages = st.one_of(
    st.builds(L.Hello, byte, st.integers(L.MIN_PEER_PAYLOAD, 0xFFFF)),
    st.builds(L.HelloAck, byte, byte, byte, byte, st.integers(L.MIN_PEER_PAYLOAD, 0xFFFF),
              st.integers(1, L.MAX_SLOTS)),
    st.just(L.SlotStatus()), st.just(L.Abort()), st.just(L.Ack()),
    st.builds(L.SlotStatusResponse, st.lists(st.sampled_from(L.SlotState), min_size=1,
                                             max_size=L.MAX_SLOTS).map(tuple)),
    st.builds(L.PowerOn, slot), st.builds(L.PowerOff, slot),
    st.builds(L.Atr, slot, st.integers(0, 1), byte, st.binary(min_size=2, max_size=33)),
    st.builds(L.Transmit, slot, st.binary(min_size=4, max_size=L.MAX_PAYLOAD - 1)),
    st.builds(L.Response, st.binary(min_size=2, max_size=258)),
    st.builds(L.SecureVerify, slot, byte, byte, byte, byte, byte, byte, tries, pin_fields),
    st.builds(L.SecureChange, slot, byte, byte, byte, byte, byte, byte, tries, pin_fields,
              pin_fields),
    st.builds(L.SecureUnblock, slot, byte, byte, byte, byte, byte, byte, tries, pin_fields,
              pin_fields),
    st.builds(L.PinResult, st.integers(0, 0xFFFF)),
    st.builds(L.Confirm, byte, ascii_text.filter(bool)),
    st.builds(L.ConfirmResult, st.sampled_from(L.ConfirmOutcome)),
    st.builds(L.Display, st.lists(st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E),
                                          max_size=14), max_size=8).map(tuple), byte),
    st.builds(L.Identity, ascii_text.filter(bool)),
    st.builds(L.Event, st.sampled_from(L.EventKind), st.one_of(slot, st.just(L.NO_SLOT))),
    st.builds(L.LinkErrorMessage, st.sampled_from(L.ErrorCode), ascii_text),
)


@given(messages, st.integers(0, 255))
def test_encode_decode_are_inverses(msg: L.Message, seq: int) -> None:
    raw = L.encode_message(seq, msg)
    (frame,) = L.FrameParser().feed(raw)
    assert isinstance(frame, L.Frame) and frame.seq == seq
    again = L.decode_message(frame)
    assert again == msg
    assert L.encode_message(seq, again) == raw


@settings(max_examples=300)
@given(st.binary(max_size=2000), st.lists(st.integers(1, 64), min_size=1, max_size=50))
def test_any_bytes_in_any_chunks_give_frames_or_frame_errors(data: bytes,
                                                              chunks: list[int]) -> None:
    parser = L.FrameParser()
    items: list[L.Frame | L.FrameError] = []
    pos = 0
    i = 0
    while pos < len(data):
        step = chunks[i % len(chunks)]
        items += parser.feed(data[pos:pos + step])
        pos += step
        i += 1
    while parser.pending():
        items += parser.expire()
    items += parser.expire()
    assert all(isinstance(it, L.Frame | L.FrameError) for it in items)
    for it in items:
        if isinstance(it, L.Frame):
            with contextlib.suppress(L.DecodeError):
                L.decode_message(it)


@settings(max_examples=200)
@given(st.lists(messages, min_size=1, max_size=6),
       st.lists(st.binary(max_size=30).map(lambda b: b.replace(bytes((L.SOF,)), b"")),
                min_size=7, max_size=7),
       st.integers(1, 50))
def test_frames_between_sof_free_garbage_all_come_back(msgs: list[L.Message],
                                                        junk: list[bytes], chunk: int) -> None:
    stream = b"".join(junk[i] + L.encode_message(i, m) for i, m in enumerate(msgs)) + junk[-1]
    parser = L.FrameParser()
    items: list[L.Frame | L.FrameError] = []
    for i in range(0, len(stream), chunk):
        items += parser.feed(stream[i:i + chunk])
    items += parser.expire()
    frames = [it for it in items if isinstance(it, L.Frame)]
    errors = [it for it in items if isinstance(it, L.FrameError)]
    assert [L.decode_message(f) for f in frames] == msgs
    assert all(e.code == L.ErrorCode.GARBAGE for e in errors)


@given(byte, st.binary(max_size=300))
def test_decode_raises_only_decode_error(mtype: int, payload: bytes) -> None:
    try:
        msg = L.decode_message(L.Frame(1, mtype, payload))
    except L.DecodeError:
        return
    assert L.decode_message(L.Frame(1, mtype, msg.to_payload())) == msg
