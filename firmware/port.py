"""The link's byte stream: the interface the terminal reads and writes, over asyncio streams."""
# Any object with these two coroutines is a port (docs/firmware.md, "Link port"):
#   async read_into(buf: bytearray) -> int   wait for >= 1 byte; 0 means the stream closed
#   async write(buf, n: int) -> None          write buf[:n] completely
# On the Pico it is USB CDC (sys.stdin/sys.stdout); on the unix port a pty or a socket.
#
# Reading takes only what has arrived. MicroPython's readinto() on a bare-metal stdin reads
# exactly len(buf) characters, each with the blocking mp_hal_stdin_rx_chr(), so a 64-byte
# readinto() would hold the whole event loop until 64 bytes came (an 11-byte HELLO would never
# be answered). StreamPort therefore waits for readability through the asyncio I/O queue (no
# busy loop), then reads one byte at a time while select.poll says more is there.

import select

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Union


class StreamPort:
    """A port over an asyncio StreamReader / StreamWriter pair (USB CDC, pipe, pty, socket)."""

    def __init__(self, reader: "Any", writer: "Any") -> None:
        self.reader = reader
        self.writer = writer
        self.stream = reader.s if hasattr(reader, "s") else reader  # the raw stream
        self._one = bytearray(1)
        self._poll = select.poll()
        self._poll.register(self.stream, select.POLLIN)

    def _readable(self) -> bool:
        for item in self._poll.ipoll(0):
            return bool(item[1])  # POLLIN, or POLLHUP/POLLERR: the next read tells which
        return False

    async def read_into(self, buf: bytearray) -> int:
        """Wait for at least one byte, then take what has arrived (up to len(buf)); 0 at EOF."""
        one = self._one
        while True:
            k = await self.reader.readinto(one)  # waits on the I/O queue: one byte is there
            if k is None:
                continue  # non-blocking stream, woken without data
            if not k:
                return 0
            break
        buf[0] = one[0]
        n = 1
        stream = self.stream
        while n < len(buf) and self._readable():
            k = stream.readinto(one)
            if not k:
                break  # EOF or nothing after all: the next call reports it
            buf[n] = one[0]
            n += 1
        return n

    async def write(self, buf: "Union[bytes, bytearray, memoryview]", n: int) -> None:
        """Write buf[:n] and wait until the stream took it."""
        self.writer.write(memoryview(buf)[:n])
        await self.writer.drain()
