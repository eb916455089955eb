"""Card file system (ISO/IEC 7816-4 §7): MF, DFs, transparent and record EFs, FCP."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from bifente.apdu.tlv import encode, encode_constructed

__all__ = ["DF", "EF", "AccessRule", "RecordEF", "fcp"]


@dataclass(frozen=True)
class AccessRule:
    """Who may read a file: always, or after the PIN with this reference is verified."""

    pin: int | None = None

    @property
    def always(self) -> bool:
        """True when no PIN is needed."""
        return self.pin is None


ALWAYS = AccessRule()


@dataclass
class EF:
    """A transparent elementary file."""

    fid: int
    data: bytes = b""
    read: AccessRule = ALWAYS
    sfi: int | None = None
    name: str = ""


@dataclass
class RecordEF:
    """A linear record elementary file."""

    fid: int
    records: list[bytes] = field(default_factory=list)
    read: AccessRule = ALWAYS
    sfi: int | None = None
    name: str = ""


@dataclass
class DF:
    """A dedicated file (the MF is the DF 3F00); optionally an application with an AID."""

    fid: int
    aid: bytes | None = None
    children: dict[int, DF | EF | RecordEF] = field(default_factory=dict)
    parent: DF | None = field(default=None, repr=False)
    name: str = ""

    def add(self, node: DF | EF | RecordEF) -> DF | EF | RecordEF:
        """Attach a child file; returns it."""
        if node.fid in self.children:
            raise ValueError(f"duplicate FID {node.fid:04X} under {self.fid:04X}")
        self.children[node.fid] = node
        if isinstance(node, DF):
            node.parent = self
        return node

    def walk(self) -> Iterator[DF]:
        """Yield this DF and every DF below it."""
        yield self
        for child in self.children.values():
            if isinstance(child, DF):
                yield from child.walk()

    def find_aid(self, aid: bytes) -> DF | None:
        """The DF (here or below) whose AID equals `aid`."""
        for df in self.walk():
            if df.aid == aid:
                return df
        return None

    def path(self) -> list[int]:
        """FIDs from the MF down to this DF."""
        node: DF | None = self
        out: list[int] = []
        while node is not None:
            out.append(node.fid)
            node = node.parent
        return out[::-1]


def fcp(node: DF | EF | RecordEF) -> bytes:
    """File control parameters template 62 (ISO 7816-4 §7.4.3, Table 12).

    Carries the access rules as a compact security attribute (8C inside A1), which OpenSC's
    IAS-ECC driver requires on every FCP: access mode 01 (read), condition 00 (always) or
    12 (after the PIN; any value outside 4x, which would mean secure messaging).
    """
    parts = []
    if isinstance(node, EF):
        parts.append(encode(0x80, len(node.data).to_bytes(2, "big")))  # data size
        parts.append(encode(0x82, b"\x01"))  # working EF, transparent
    elif isinstance(node, RecordEF):
        size = max((len(r) for r in node.records), default=0)
        parts.append(encode(0x82, bytes([0x02, 0x41, 0x00, size, len(node.records)])))
    else:
        parts.append(encode(0x82, b"\x38"))  # DF
    parts.append(encode(0x83, node.fid.to_bytes(2, "big")))
    if isinstance(node, DF) and node.aid:
        parts.append(encode(0x84, node.aid))
    parts.append(encode(0x8A, b"\x05"))  # life cycle: operational, activated
    rule = node.read if isinstance(node, EF | RecordEF) else ALWAYS
    parts.append(encode_constructed(0xA1, encode(0x8C, b"\x01" + (b"\x00" if rule.always
                                                                    else b"\x12"))))
    return encode_constructed(0x62, *parts)
