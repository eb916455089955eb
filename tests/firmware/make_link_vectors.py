"""Write docs/link-vectors.json from the host codec (run by hand after a deliberate change).

    .venv/bin/python tests/firmware/make_link_vectors.py

Review the diff: both codecs are tested against this file, so a change here is a change to
the wire format. The frame hex of `hello_1` is also worked by hand in docs/link-protocol.md.
"""

from __future__ import annotations

import json
from pathlib import Path

from bifente.edged.readers import link as L

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "docs" / "link-vectors.json"

PIN4 = L.PinField(4, 4, 0xFF, 8, L.PinEncoding.ASCII)
PUK8 = L.PinField(8, 8, 0xFF, 8, L.PinEncoding.ASCII)
BCD = L.PinField(4, 12, 0xFF, 8, L.PinEncoding.BCD)

MESSAGES: list[tuple[str, int, L.Message]] = [
    ("hello_1", 1, L.Hello(2, 512)),
    ("hello_min", 2, L.Hello(2, 262)),
    ("hello_ack", 1, L.HelloAck(2, 0, 2, 2, 512, 2)),
    ("slot_status", 3, L.SlotStatus()),
    ("slot_status_rsp", 3, L.SlotStatusResponse((L.SlotState.PRESENT, L.SlotState.EMPTY))),
    ("slot_status_rsp_all", 4, L.SlotStatusResponse(tuple(L.SlotState))),
    ("power_on", 5, L.PowerOn(0)),
    ("atr_cps3", 5, L.Atr(0, 0, 0x11, bytes.fromhex("3BAC00402A001225006480000310009000"))),
    ("atr_vitale2", 6, L.Atr(1, 0, 0x13, bytes.fromhex("3B751300004409EA9000"))),
    ("power_off", 7, L.PowerOff(1)),
    ("ack", 7, L.Ack()),
    ("transmit_case1", 8, L.Transmit(0, bytes.fromhex("00A40000"))),
    ("transmit_select", 9, L.Transmit(0, bytes.fromhex("00A4040C0DE828BD080F802500000001FF0010"))),
    ("transmit_case2_256", 10, L.Transmit(1, bytes.fromhex("00B0000000"))),
    ("transmit_max_short", 11, L.Transmit(0, bytes.fromhex("80CA0000FF") + bytes(range(255))
                                          + b"\x00")),
    ("response_sw", 8, L.Response(bytes.fromhex("9000"))),
    ("response_256", 10, L.Response(bytes(i & 0xFF for i in range(256)) + b"\x90\x00")),
    ("secure_verify_cps", 12, L.SecureVerify(0, 0x00, 0x20, 0x00, 0x01, 30, L.PromptKind.PIN_CPS,
                                             3, PIN4)),
    ("secure_verify_bcd", 13, L.SecureVerify(1, 0x00, 0x20, 0x00, 0x81, 0, 7, L.TRIES_UNKNOWN,
                                             BCD)),
    ("secure_change", 14, L.SecureChange(0, 0x00, 0x24, 0x00, 0x01, 45, L.PromptKind.PIN_CPS,
                                         2, PIN4, PIN4)),
    ("secure_unblock", 15, L.SecureUnblock(0, 0x00, 0x2C, 0x00, 0x01, 60, L.PromptKind.PIN_CPS,
                                           0, PUK8, PIN4)),
    ("pin_result_ok", 12, L.PinResult(0x9000)),
    ("pin_result_wrong", 12, L.PinResult(0x63C2)),
    ("confirm", 16, L.Confirm(20, "Consentement DMP\nPatient: DUPONT ?")),
    ("confirm_result_ok", 16, L.ConfirmResult(L.ConfirmOutcome.OK)),
    ("confirm_result_timeout", 16, L.ConfirmResult(L.ConfirmOutcome.TIMEOUT)),
    ("display", 17, L.Display(("Code d'appairage", "", "482 913"))),
    ("display_clear", 18, L.Display(())),
    ("display_one_empty", 19, L.Display(("",))),
    ("display_secret", 22, L.Display(("Mot de passe DMP", "a9ym-3ptt-kfbg"), 30)),
    ("identity", 23, L.Identity("Empreinte edged\n3f2a 9c01 77de\n02b4 e5f6 a7b8")),
    ("pair_window", 24, L.PairWindow(120)),
    ("pair_window_closed", 25, L.PairWindow(0)),
    ("abort", 20, L.Abort()),
    ("event_inserted", 0, L.Event(L.EventKind.CARD_INSERTED, 1)),
    ("event_cancel", 0, L.Event(L.EventKind.CANCEL_PRESSED, L.NO_SLOT)),
    ("event_pair_requested", 0, L.Event(L.EventKind.PAIR_REQUESTED, L.NO_SLOT)),
    ("error_busy", 21, L.LinkErrorMessage(L.ErrorCode.BUSY, "request running")),
    ("error_bad_crc", 0, L.LinkErrorMessage(L.ErrorCode.BAD_CRC, "")),
    ("seq_255", 255, L.SlotStatus()),
]

BAD_PAYLOADS: list[tuple[str, str, str, str]] = [
    ("hello_short", "HELLO", "0102", "BAD_PAYLOAD"),
    ("hello_small_peer", "HELLO", "010105", "BAD_PAYLOAD"),
    ("slot_status_not_empty", "SLOT_STATUS", "00", "BAD_PAYLOAD"),
    ("status_count_mismatch", "SLOT_STATUS_RSP", "030001", "BAD_PAYLOAD"),
    ("status_unknown_state", "SLOT_STATUS_RSP", "0104", "BAD_PAYLOAD"),
    ("power_on_bad_slot", "POWER_ON", "08", "BAD_SLOT"),
    ("power_on_empty", "POWER_ON", "", "BAD_PAYLOAD"),
    ("atr_short", "ATR", "0000113B", "BAD_PAYLOAD"),
    ("atr_bad_protocol", "ATR", "0002113B00", "BAD_PAYLOAD"),
    ("transmit_header_only_3", "TRANSMIT", "0000A400", "BAD_PAYLOAD"),
    ("response_one_byte", "RESPONSE", "90", "BAD_PAYLOAD"),
    ("verify_min_gt_max", "SECURE_VERIFY", "00002000011e0103" + "0604ff0800", "BAD_PAYLOAD"),
    ("verify_13_digits", "SECURE_VERIFY", "00002000011e0103" + "010dff0000", "BAD_PAYLOAD"),
    ("verify_pad_too_short", "SECURE_VERIFY", "00002000011e0103" + "0408ff0400", "BAD_PAYLOAD"),
    ("verify_bad_encoding", "SECURE_VERIFY", "00002000011e0103" + "0404ff0802", "BAD_PAYLOAD"),
    ("verify_tries_16", "SECURE_VERIFY", "00002000011e0110" + "0404ff0800", "BAD_PAYLOAD"),
    ("verify_trailing_text", "SECURE_VERIFY", "00002000011e0103" + "0404ff0800" + "41",
     "BAD_PAYLOAD"),
    ("change_one_field", "SECURE_CHANGE", "00002400011e0103" + "0404ff0800", "BAD_PAYLOAD"),
    ("pin_result_three", "PIN_RESULT", "900000", "BAD_PAYLOAD"),
    ("confirm_empty_text", "CONFIRM", "1e", "BAD_PAYLOAD"),
    ("confirm_control_char", "CONFIRM", "1e4f4b07", "BAD_PAYLOAD"),
    ("confirm_result_3", "CONFIRM_RESULT", "03", "BAD_PAYLOAD"),
    ("display_count_mismatch", "DISPLAY", "0002414243", "BAD_PAYLOAD"),
    ("display_zero_with_text", "DISPLAY", "000041", "BAD_PAYLOAD"),
    ("display_nine_lines", "DISPLAY", "0009" + "0a" * 8, "BAD_PAYLOAD"),
    ("display_no_count", "DISPLAY", "1e", "BAD_PAYLOAD"),
    ("identity_empty", "IDENTITY", "", "BAD_PAYLOAD"),
    ("identity_control_char", "IDENTITY", "4107", "BAD_PAYLOAD"),
    ("pair_window_short", "PAIR_WINDOW", "78", "BAD_PAYLOAD"),
    ("pair_window_over_600", "PAIR_WINDOW", "0259", "BAD_PAYLOAD"),
    ("event_unknown_kind", "EVENT", "09ff", "BAD_PAYLOAD"),
    ("event_bad_slot", "EVENT", "0109", "BAD_SLOT"),
    ("error_empty", "ERROR", "", "BAD_PAYLOAD"),
    ("error_newline_detail", "ERROR", "01410a", "BAD_PAYLOAD"),
    ("unknown_type_0x42", "0x42", "", "UNKNOWN_TYPE"),
]


def frame_hex(name: str) -> bytes:
    """Bytes of a named frame from MESSAGES."""
    for n, seq, msg in MESSAGES:
        if n == name:
            return L.encode_message(seq, msg)
    raise KeyError(name)


def corrupt(frame: bytes, index: int, xor: int = 0x01) -> bytes:
    """Flip bits in one byte."""
    b = bytearray(frame)
    b[index] ^= xor
    return bytes(b)


def streams() -> list[dict[str, object]]:
    """Byte streams with the items a parser must return for them, in order."""
    hello = frame_hex("hello_1")
    status = frame_hex("slot_status")
    resp = frame_hex("response_256")
    oversize = bytes((L.SOF, 1, 9, 0x05, 0x02, 0x01))  # length 513 > 512, nothing follows
    max_len = bytes((L.SOF, 1, 9, 0x05, 0xFF, 0xFF))  # length 65535
    bad_ver = bytes((L.SOF, 2)) + hello[2:]
    # A frame announcing 300 payload bytes cut after 10: the next frame hides in its "payload".
    cut = bytes((L.SOF, 1, 30, 0x05, 0x01, 0x2C)) + bytes(4)
    s: list[dict[str, object]] = [
        {"name": "one_frame", "hex": hello, "expect": ["frame:hello_1"]},
        {"name": "two_frames", "hex": hello + status,
         "expect": ["frame:hello_1", "frame:slot_status"]},
        {"name": "garbage_then_frame", "hex": b"\x00\x11\x22" + hello,
         "expect": ["error:GARBAGE", "frame:hello_1"]},
        {"name": "bad_crc_then_frame", "hex": corrupt(hello, len(hello) - 1) + status,
         "expect": ["error:BAD_CRC", "frame:slot_status"]},
        {"name": "payload_bit_flip", "hex": corrupt(resp, 100, 0x80) + hello,
         "expect": ["error:BAD_CRC", "error:BAD_VERSION", "frame:hello_1"]},
        {"name": "oversize_then_frame", "hex": oversize + status,
         "expect": ["error:OVERSIZE", "frame:slot_status"]},
        {"name": "length_ffff_then_frame", "hex": max_len + hello,
         "expect": ["error:OVERSIZE", "frame:hello_1"]},
        {"name": "bad_version_then_frame", "hex": bad_ver + status,
         "expect": ["error:BAD_VERSION", "error:GARBAGE", "frame:slot_status"]},
        {"name": "truncated_by_next_frame", "hex": cut + hello + bytes(300),
         "expect": ["error:BAD_CRC", "frame:hello_1", "error:GARBAGE"]},
        {"name": "false_sof_in_garbage", "hex": bytes((0x00, L.SOF, 0x07, L.SOF)) + hello,
         "expect": ["error:GARBAGE", "error:BAD_VERSION", "error:BAD_VERSION", "frame:hello_1"]},
        {"name": "frame_inside_bad_frame", "hex": corrupt(status, 3) + hello,
         "expect": ["error:BAD_CRC", "frame:hello_1"]},
    ]
    for item in s:
        item["hex"] = bytes(item["hex"]).hex()  # type: ignore[arg-type]
    return s


def expire_cases() -> list[dict[str, object]]:
    """Streams that stall: items before and after the inter-byte timeout fires."""
    hello = frame_hex("hello_1")
    return [
        {"name": "truncated_header", "hex": hello[:4].hex(), "before": [],
         "after": ["error:TRUNCATED"]},
        {"name": "truncated_payload", "hex": frame_hex("response_sw")[:-3].hex(), "before": [],
         "after": ["error:TRUNCATED"]},
        {"name": "frame_hidden_in_stall", "hex": (bytes((L.SOF, 1, 3, 2, 0, 50)) + hello).hex(),
         "before": [], "after": ["error:TRUNCATED", "frame:hello_1"]},
        {"name": "garbage_only", "hex": "0102", "before": [], "after": ["error:GARBAGE"]},
    ]


def _items(items: list[L.Frame | L.FrameError], names: dict[bytes, str]) -> list[str]:
    out = []
    for it in items:
        if isinstance(it, L.Frame):
            out.append("frame:" + names.get(it.to_bytes(), "?"))
        else:
            out.append("error:" + it.code.name)
    return out


def _check(doc: dict[str, object]) -> None:
    # The hand-written expectations must be what the host parser does, byte by byte.
    names = {bytes.fromhex(f["hex"]): f["name"] for f in doc["frames"]}  # type: ignore[attr-defined,index]
    for case in doc["streams"]:  # type: ignore[attr-defined]
        parser = L.FrameParser()
        got: list[L.Frame | L.FrameError] = []
        for b in bytes.fromhex(case["hex"]):
            got += parser.feed(bytes((b,)))
        got += parser.expire()
        if _items(got, names) != case["expect"]:
            raise SystemExit(f"{case['name']}: parser gives {_items(got, names)}")
    for case in doc["expire"]:  # type: ignore[attr-defined]
        parser = L.FrameParser()
        before = parser.feed(bytes.fromhex(case["hex"]))
        after = parser.expire()
        if _items(before, names) != case["before"] or _items(after, names) != case["after"]:
            raise SystemExit(f"{case['name']}: {_items(before, names)} / {_items(after, names)}")


def main() -> None:
    """Write the vectors file."""
    frames = []
    for name, seq, msg in MESSAGES:
        frames.append({
            "name": name,
            "seq": seq,
            "type": msg.TYPE.name,
            "fields": L.message_fields(msg),
            "payload": msg.to_payload().hex(),
            "hex": L.encode_message(seq, msg).hex(),
        })
    types = {t.name: int(t) for t in L.MessageType}
    bad = [{"name": n, "type": t, "type_code": types.get(t, int(t, 16) if t.startswith("0x")
                                                          else -1),
            "payload": p, "error": e} for n, t, p, e in BAD_PAYLOADS]
    doc = {
        "about": "bifente terminal link test vectors; see docs/link-protocol.md",
        "crc": {"algorithm": "CRC-16/CCITT-FALSE", "poly": 0x1021, "init": 0xFFFF,
                "check_ascii": "123456789", "check": 0x29B1},
        "limits": {"sof": L.SOF, "frame_version": L.FRAME_VERSION,
                   "protocol_version": L.PROTOCOL_VERSION, "header_len": L.HEADER_LEN,
                   "overhead": L.OVERHEAD, "max_payload": L.MAX_PAYLOAD,
                   "min_peer_payload": L.MIN_PEER_PAYLOAD},
        "types": types,
        "errors": {e.name: int(e) for e in L.ErrorCode},
        "frames": frames,
        "bad_payloads": bad,
        "streams": streams(),
        "expire": expire_cases(),
    }
    _check(doc)
    OUT.write_text(json.dumps(doc, indent=1) + "\n")
    print(f"wrote {OUT.relative_to(ROOT)}: {len(frames)} frames, {len(bad)} bad payloads, "
          f"{len(doc['streams'])} streams, {len(doc['expire'])} expiry cases")


if __name__ == "__main__":
    main()
