"""Link codec on MicroPython: the shared vectors, the stream parser whole and byte by byte."""

import link
from mptest import raises
from support import load_vectors

V = load_vectors()
BYTES_FIELDS = ("atr", "apdu", "data")


def hexs(b):
    """bytes.hex(); the wasm port 1.27 returns b'' (not '') for empty input."""
    return bytes(b).hex() if len(b) else ""


def plain(msg):
    """Firmware message -> the JSON field form of docs/link-vectors.json."""
    out = {}
    for name in msg.FIELDS:
        v = getattr(msg, name)
        if isinstance(v, (bytes, bytearray)):
            v = hexs(v)
        elif isinstance(v, link.PinField):
            v = plain(v)
        elif isinstance(v, list):
            v = list(v)
        out[name] = v
    return out


def build(type_name, fields):
    """Firmware message object from a vector's fields."""
    t = V["types"][type_name]
    if t in (link.SLOT_STATUS, link.ABORT, link.ACK):
        return link.Empty(t)
    if t in (link.POWER_ON, link.POWER_OFF):
        return link.SlotRequest(t, fields["slot"])
    kw = {}
    for k, v in fields.items():
        if k in BYTES_FIELDS:
            v = bytes.fromhex(v)
        elif isinstance(v, dict):
            v = link.PinField(**v)
        kw[k] = v
    return link._CLASSES[t](**kw)


def items_as_names(items, names):
    """Parser items as 'frame:NAME' / 'error:CODE' strings."""
    out = []
    for it in items:
        if isinstance(it, link.Frame):
            out.append("frame:" + names.get(link.encode_frame(it.seq, it.mtype, it.payload), "?"))
        else:
            out.append("error:" + it.name())
    return out


def frame_names():
    """Frame bytes -> vector name."""
    return {bytes.fromhex(f["hex"]): f["name"] for f in V["frames"]}


def test_constants_match_vectors():
    lim = V["limits"]
    assert lim["sof"] == link.SOF and lim["max_payload"] == link.MAX_PAYLOAD
    assert lim["header_len"] == link.HEADER_LEN and lim["overhead"] == link.OVERHEAD
    assert lim["frame_version"] == link.FRAME_VERSION
    assert lim["min_peer_payload"] == link.MIN_PEER_PAYLOAD
    for name, code in V["types"].items():
        assert link.TYPE_NAMES[code] == name, name
    for name, code in V["errors"].items():
        assert link.ERROR_NAMES[code] == name, name


def test_crc_check_value():
    crc = V["crc"]
    assert link.crc16(crc["check_ascii"].encode()) == crc["check"] == 0x29B1
    assert link.crc16(b"") == 0xFFFF


def test_vector_frames_decode():
    assert len(V["frames"]) >= 30
    for vec in V["frames"]:
        items = link.FrameParser().feed(bytes.fromhex(vec["hex"]))
        assert len(items) == 1 and isinstance(items[0], link.Frame), vec["name"]
        frame = items[0]
        assert frame.seq == vec["seq"], vec["name"]
        assert link.TYPE_NAMES[frame.mtype] == vec["type"], vec["name"]
        assert hexs(frame.payload) == vec["payload"], vec["name"]
        msg = link.decode(frame.mtype, frame.payload)
        assert plain(msg) == vec["fields"], (vec["name"], plain(msg), vec["fields"])


def test_vector_frames_encode():
    for vec in V["frames"]:
        msg = build(vec["type"], vec["fields"])
        assert hexs(link.encode(vec["seq"], msg)) == vec["hex"], vec["name"]
        assert link.decode(msg.TYPE, msg.payload()) == msg, vec["name"]


def test_vector_bad_payloads():
    assert len(V["bad_payloads"]) >= 20
    for vec in V["bad_payloads"]:
        with raises(link.DecodeError) as ctx:
            link.decode(vec["type_code"], bytes.fromhex(vec["payload"]))
        assert ctx.value.name() == vec["error"], (vec["name"], ctx.value.name())


def _feed_stream(hex_data, chunk):
    parser = link.FrameParser()
    data = bytes.fromhex(hex_data)
    items = []
    for i in range(0, len(data), chunk):
        parser.feed(data[i:i + chunk], items)
    parser.expire(items)
    return items


def test_vector_streams_whole_chunked_and_byte_by_byte():
    names = frame_names()
    for vec in V["streams"]:
        for chunk in (1, 2, 3, 7, 64, 100000):
            got = items_as_names(_feed_stream(vec["hex"], chunk), names)
            assert got == vec["expect"], (vec["name"], chunk, got)


def test_vector_expire():
    names = frame_names()
    for vec in V["expire"]:
        parser = link.FrameParser()
        before = items_as_names(parser.feed(bytes.fromhex(vec["hex"])), names)
        after = items_as_names(parser.expire(), names)
        assert before == vec["before"] and after == vec["after"], (vec["name"], before, after)
        assert not parser.pending()


def test_boundary_payload_lengths():
    for n in (0, 1, 0x7F, 0x80, 0xFF, 0x100, link.MAX_PAYLOAD):
        payload = bytes(i & 0xFF for i in range(n))
        frame = link.encode_frame(7, link.RESPONSE, payload)
        assert len(frame) == n + link.OVERHEAD
        items = link.FrameParser().feed(frame)
        assert len(items) == 1 and items[0].payload == payload, n
    with raises(link.LinkError):
        link.encode_frame(1, link.RESPONSE, bytes(link.MAX_PAYLOAD + 1))
    for n in (link.MAX_PAYLOAD + 1, 0xFFFF):
        header = bytes((link.SOF, 1, 1, link.RESPONSE, n >> 8, n & 0xFF))
        items = link.FrameParser().feed(header)  # rejected before any payload arrives
        assert [i.name() for i in items] == ["OVERSIZE"], n


def test_parser_buffer_never_grows():
    parser = link.FrameParser()
    size = len(parser._buf)
    assert size == link.MAX_FRAME
    parser.feed(bytes((link.SOF, 1, 1, 5, 0xFF, 0xFF)) + bytes(2000))
    parser.feed(link.encode_frame(1, 5, bytes(link.MAX_PAYLOAD)))
    assert len(parser._buf) == size


def _lcg(seed):
    state = [seed]

    def nxt(n):
        state[0] = (state[0] * 1103515245 + 12345) & 0x7FFFFFFF
        return state[0] % n

    return nxt


def test_random_bytes_give_only_frames_or_frame_errors():
    rnd = _lcg(2024)
    good = link.encode_frame(9, link.SLOT_STATUS, b"")
    for _ in range(40):
        parser = link.FrameParser()
        data = bytearray(rnd(700) for _ in range(rnd(700)))
        for _ in range(rnd(6)):  # sprinkle SOF and plausible headers
            pos = rnd(len(data) + 1)
            data[pos:pos] = bytes((link.SOF, 1, rnd(256), rnd(256), rnd(3), rnd(256)))
        items = []
        i = 0
        while i < len(data):
            step = 1 + rnd(40)
            parser.feed(data[i:i + step], items)
            i += step
        while parser.pending():  # one inter-byte timeout per stalled candidate
            parser.expire(items)
        parser.expire(items)
        for it in items:
            assert isinstance(it, (link.Frame, link.FrameError)), it
        # after a stall and an expiry the next good frame is always recovered
        assert parser.feed(good)[-1].payload == b""


def test_decode_never_raises_other_errors():
    rnd = _lcg(7)
    for _ in range(600):
        mtype = rnd(256)
        payload = bytes(rnd(256) for _ in range(rnd(40)))
        try:
            msg = link.decode(mtype, payload)
        except link.DecodeError:
            continue
        assert link.decode(mtype, msg.payload()) == msg


def test_frame_errors_carry_sequence_when_known():
    frame = bytearray(link.encode_frame(42, link.SLOT_STATUS, b""))
    frame[-1] ^= 0xFF
    (err,) = link.FrameParser().feed(frame)
    assert err.name() == "BAD_CRC" and err.seq == 42


def test_seal_frame_in_place_matches_build():
    buf = bytearray(link.MAX_FRAME)
    buf[link.HEADER_LEN:link.HEADER_LEN + 2] = b"\x90\x00"
    n = link.seal_frame(buf, 3, link.RESPONSE, 2)
    assert bytes(buf[:n]) == link.encode_frame(3, link.RESPONSE, b"\x90\x00")
