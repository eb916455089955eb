"""The firmware's link codec (firmware/link.py) on CPython, differential against the host's.

Both sides must produce the same frames and stream errors for the same bytes in the same
chunks, and accept or refuse the same payloads (docs/link-protocol.md is one contract).
"""

from __future__ import annotations

import importlib
import sys
import types
from collections.abc import Iterator
from typing import Any

import atheris

from fuzz.common import ROOT, ContractBroken, main
from fuzz.fuzz_link_host import split
from fuzz.seeds import link_frames, link_payloads


def load_firmware_link() -> Any:
    """firmware/link.py as the CPython module `link`, MicroPython's const() as the identity."""
    if "micropython" not in sys.modules:
        stub = types.ModuleType("micropython")
        stub.const = lambda value: value  # type: ignore[attr-defined]
        sys.modules["micropython"] = stub
    firmware = str(ROOT / "firmware")
    if firmware not in sys.path:
        sys.path.append(firmware)  # appended: nothing of the host shadows or is shadowed
    return importlib.import_module("link")


with atheris.instrument_imports(include=["bifente.edged.readers.link", "link"]):
    from bifente.edged.readers import link as L

    FW = load_firmware_link()


def _host_items(chunks: list[tuple[bytes, bool]]) -> list[tuple]:
    parser = L.FrameParser()
    out: list[Any] = []
    for chunk, expire in chunks:
        out += parser.feed(chunk)
        if expire:
            out += parser.expire()
    while parser.pending():
        out += parser.expire()
    out += parser.expire()
    return [("F", i.seq, i.type, i.payload) if isinstance(i, L.Frame) else ("E", int(i.code), i.seq)
            for i in out]


def _fw_items(chunks: list[tuple[bytes, bool]]) -> list[tuple]:
    parser = FW.FrameParser()
    out: list[Any] = []
    for chunk, expire in chunks:
        parser.feed(chunk, out)
        if expire:
            parser.expire(out)
    while parser.pending():
        parser.expire(out)
    parser.expire(out)
    return [("F", i.seq, i.mtype, bytes(i.payload)) if isinstance(i, FW.Frame)
            else ("E", i.code, i.seq) for i in out]


def _verdict(decode: Any, error: type[Exception], mtype: int, payload: bytes) -> int:
    try:
        decode(mtype, payload)
    except error as exc:
        return int(exc.code)  # type: ignore[attr-defined]
    return 0


def target(data: bytes) -> None:
    """Same stream, same chunks and expiries, to both parsers; then every frame to both decoders."""
    chunks, stream = split(data)
    host, fw = _host_items(chunks), _fw_items(chunks)
    if host != fw:
        raise ContractBroken("host and firmware parsers disagree on the stream")
    # The raw stream is also offered as one (type, payload) so decoders see any payload.
    candidates = [(f[2], f[3]) for f in host if f[0] == "F"]
    if stream:
        candidates.append((stream[0], stream[1:L.MAX_PAYLOAD + 1]))
    for mtype, payload in candidates:
        h = _verdict(lambda t, p: L.decode_message(L.Frame(0, t, p)), L.DecodeError, mtype,
                     payload)
        f = _verdict(FW.decode, FW.LinkError, mtype, payload)
        if h != f:
            raise ContractBroken(f"type {mtype:02X}: host says {h}, firmware says {f}")


def seeds() -> Iterator[bytes]:
    """Link vectors as streams, and every good and bad payload as (type, payload)."""
    for frame in link_frames():
        yield b"\x07\x00\x01\x01\x20\x00\x03\x00" + frame
    for p in link_payloads():
        yield b"\x40\x00\x40\x00\x40\x00\x40\x00" + p


if __name__ == "__main__":
    main("link_fw", target, (), seeds)
