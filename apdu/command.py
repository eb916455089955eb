"""Command and response APDUs (ISO/IEC 7816-4 §5.1): cases 1-4, short and extended."""

from __future__ import annotations

from dataclasses import dataclass, field

from bifente.apdu.errors import MalformedData

__all__ = ["MAX_LC", "MAX_LE", "CommandApdu", "ResponseApdu"]

MAX_SHORT_LC = 255
MAX_SHORT_LE = 256  # encoded as 00 (§5.1)
MAX_LC = 65535
MAX_LE = 65536  # encoded as 0000 in extended form (§5.1)


@dataclass(frozen=True)
class CommandApdu:
    """A command APDU; `le` is the number of bytes expected (1..65536) or None for no Le field.

    `extended` is resolved at construction: it is True when asked for or when Lc/Le do not fit
    the short form, so a value has exactly one byte rendering and parse/render are inverses.
    """

    cla: int
    ins: int
    p1: int = 0
    p2: int = 0
    data: bytes = field(default=b"", repr=False)
    le: int | None = None
    extended: bool = False

    def __post_init__(self) -> None:
        for name in ("cla", "ins", "p1", "p2"):
            value = getattr(self, name)
            if not 0 <= value <= 0xFF:
                raise ValueError(f"{name} must be a byte, got {value!r}")
        object.__setattr__(self, "data", bytes(self.data))
        if len(self.data) > MAX_LC:
            raise ValueError(f"command data too long: {len(self.data)} > {MAX_LC}")
        if self.le is not None and not 1 <= self.le <= MAX_LE:
            raise ValueError(f"Le must be 1..{MAX_LE} or None, got {self.le}")
        needs_ext = len(self.data) > MAX_SHORT_LC or (self.le or 0) > MAX_SHORT_LE
        if needs_ext:
            object.__setattr__(self, "extended", True)
        if self.extended and not self.data and self.le is None:
            # Case 1 has no length field, so an "extended" case 1 has no encoding.
            object.__setattr__(self, "extended", False)

    @property
    def case(self) -> int:
        """ISO 7816-4 case number: 1 (no data, no Le), 2 (Le), 3 (data), 4 (data and Le)."""
        return 1 + (self.le is not None) + 2 * bool(self.data)

    def to_bytes(self) -> bytes:
        """Render the APDU as sent on the wire."""
        out = bytearray((self.cla, self.ins, self.p1, self.p2))
        lc, le = len(self.data), self.le
        if self.extended:
            out.append(0x00)
            if lc:
                out += lc.to_bytes(2, "big") + self.data
            if le is not None:
                out += (le & 0xFFFF).to_bytes(2, "big")  # 65536 -> 0000
        else:
            if lc:
                out.append(lc)
                out += self.data
            if le is not None:
                out.append(le & 0xFF)  # 256 -> 00
        return bytes(out)

    @classmethod
    def parse(cls, raw: bytes) -> CommandApdu:
        """Parse wire bytes; raises MalformedData when no ISO 7816-4 case fits exactly."""
        raw = bytes(raw)
        n = len(raw)
        if n < 4:
            raise MalformedData(f"command APDU too short: {n} bytes")
        cla, ins, p1, p2 = raw[:4]
        if n == 4:
            return cls(cla, ins, p1, p2)
        if n == 5:
            return cls(cla, ins, p1, p2, le=raw[4] or 256)
        if raw[4] != 0:  # short Lc
            lc = raw[4]
            if n == 5 + lc:
                return cls(cla, ins, p1, p2, raw[5:])
            if n == 6 + lc:
                return cls(cla, ins, p1, p2, raw[5:-1], le=raw[-1] or 256)
            raise MalformedData(f"short Lc={lc} does not match {n}-byte APDU")
        # Extended form: 00 then two bytes.
        if n == 7:
            return cls(cla, ins, p1, p2, le=int.from_bytes(raw[5:7], "big") or MAX_LE,
                       extended=True)
        if n < 8:
            raise MalformedData(f"truncated extended APDU: {n} bytes")
        lc = int.from_bytes(raw[5:7], "big")
        if lc == 0:
            raise MalformedData("extended Lc of 0 is not allowed")
        if n == 7 + lc:
            return cls(cla, ins, p1, p2, raw[7:], extended=True)
        if n == 9 + lc:
            le = int.from_bytes(raw[-2:], "big") or MAX_LE
            return cls(cla, ins, p1, p2, raw[7:-2], le=le, extended=True)
        raise MalformedData(f"extended Lc={lc} does not match {n}-byte APDU")

    def with_le(self, le: int | None) -> CommandApdu:
        """The same command with another Le (used on 6Cxx)."""
        return CommandApdu(self.cla, self.ins, self.p1, self.p2, self.data, le, self.extended)

    def __repr__(self) -> str:
        return (f"CommandApdu({self.cla:02X} {self.ins:02X} {self.p1:02X} {self.p2:02X}, "
                f"lc={len(self.data)}, le={self.le})")


@dataclass(frozen=True)
class ResponseApdu:
    """A response APDU: data then SW1 SW2."""

    data: bytes = field(default=b"", repr=False)
    sw: int = 0x9000

    def __post_init__(self) -> None:
        # Coerce like CommandApdu: a bytearray would make the value unhashable and
        # to_bytes() return a bytearray; a bad SW would only fail later, in to_bytes().
        object.__setattr__(self, "data", bytes(self.data))
        if not 0 <= self.sw <= 0xFFFF:
            raise ValueError(f"sw must be 16 bits, got {self.sw!r}")

    @property
    def sw1(self) -> int:
        """First status byte."""
        return self.sw >> 8

    @property
    def sw2(self) -> int:
        """Second status byte."""
        return self.sw & 0xFF

    @property
    def ok(self) -> bool:
        """True for 9000."""
        return self.sw == 0x9000

    def to_bytes(self) -> bytes:
        """Render data || SW1 SW2."""
        return self.data + self.sw.to_bytes(2, "big")

    @classmethod
    def parse(cls, raw: bytes) -> ResponseApdu:
        """Parse data || SW1 SW2; raises MalformedData below two bytes."""
        raw = bytes(raw)
        if len(raw) < 2:
            raise MalformedData(f"response APDU too short: {len(raw)} bytes")
        if len(raw) > MAX_LE + 2:
            raise MalformedData(f"response APDU too long: {len(raw)} bytes")
        return cls(raw[:-2], int.from_bytes(raw[-2:], "big"))

    def __repr__(self) -> str:
        return f"ResponseApdu(len={len(self.data)}, sw={self.sw:04X})"
