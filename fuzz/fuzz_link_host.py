"""Host side of the terminal link (docs/link-protocol.md): stream parser and message decoder."""

from __future__ import annotations

from collections.abc import Iterator

import atheris

with atheris.instrument_imports(include=["bifente.edged.readers.link"]):
    from bifente.edged.readers import link as L

from fuzz.common import ContractBroken, main
from fuzz.seeds import link_frames


def split(data: bytes) -> tuple[list[tuple[bytes, bool]], bytes]:
    """(chunk, expire-after) pairs from the first bytes, then the stream itself."""
    fdp = atheris.FuzzedDataProvider(data)
    plan = [(fdp.ConsumeIntInRange(1, 64), fdp.ConsumeBool()) for _ in range(4)]
    stream = fdp.ConsumeBytes(fdp.remaining_bytes())
    chunks, pos, i = [], 0, 0
    while pos < len(stream):
        size, expire = plan[i % len(plan)]
        chunks.append((stream[pos:pos + size], expire))
        pos += size
        i += 1
    return chunks, stream


def target(data: bytes) -> None:
    """Feed the stream in fuzzed chunks with fuzzed timer expiries; decode every frame."""
    chunks, _ = split(data)
    parser = L.FrameParser()
    items: list[L.Frame | L.FrameError] = []
    for chunk, expire in chunks:
        items += parser.feed(chunk)
        if expire:
            items += parser.expire()
    while parser.pending():
        items += parser.expire()
    items += parser.expire()
    for item in items:
        if not isinstance(item, L.Frame | L.FrameError):
            raise ContractBroken(f"stream item {type(item).__name__}")
        if isinstance(item, L.Frame):
            try:
                msg = L.decode_message(item)
            except L.DecodeError:
                continue
            (again,) = L.FrameParser().feed(L.encode_message(item.seq, msg))
            if not isinstance(again, L.Frame) or L.decode_message(again) != msg:
                raise ContractBroken("decoded message does not round-trip")


def seeds() -> Iterator[bytes]:
    """The link vectors' frames and streams, behind an 8-byte chunking plan."""
    for frame in link_frames():
        yield b"\x07\x00\x01\x01\x20\x00\x03\x00" + frame


if __name__ == "__main__":
    main("link_host", target, (L.DecodeError,), seeds)
