"""The link's byte stream: the interface the terminal reads and writes, over asyncio streams."""
# Any object with these two coroutines is a port (docs/firmware.md, "Link port"):
#   async read_into(buf: bytearray) -> int   wait for >= 1 byte; 0 means the stream closed
#   async write(buf, n: int) -> None          write buf[:n] completely
# On the Pico it is USB CDC (sys.stdin/sys.stdout); on the unix port a pty or a socket.

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Union


class StreamPort:
    """A port over an asyncio StreamReader / StreamWriter pair."""

    def __init__(self, reader: "Any", writer: "Any") -> None:
        self.reader = reader
        self.writer = writer

    async def read_into(self, buf: bytearray) -> int:
        """Read what is available (at least one byte) into buf; 0 at end of stream."""
        n = await self.reader.readinto(buf)
        return n or 0

    async def write(self, buf: "Union[bytes, bytearray, memoryview]", n: int) -> None:
        """Write buf[:n] and wait until the stream took it."""
        self.writer.write(memoryview(buf)[:n])
        await self.writer.drain()
