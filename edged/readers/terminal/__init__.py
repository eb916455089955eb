"""The bifente terminal as a reader: the link over pyserial, its slots as transports, its UI.

- `TerminalLink(path)`: opens the serial port (/dev/bifente-terminal, or the virtual
  terminal's pty), handshakes, sends requests with sequence numbers on two lanes (one prompt
  and one card request in flight at a time, as the terminal runs them), resends safely (the
  terminal answers a repeated frame from its kept answer, never running it twice), and
  routes answers and EVENT frames from a reader thread (docs/link-protocol.md).
- `TerminalTransport(link, slot)`: apdu's Transport and SecurePinEntry over the link.
- `TerminalUI(link)`: bifente.edged.readers.ui.TerminalUI (display text, OK / Cancel prompts).
- `TerminalReader(path, on_card=..., on_state=...)`: keeps a link up (reconnects with capped
  backoff), reports cards coming and going and the connection state.

Callbacks run in this module's threads: they must hand work over (for instance with
`loop.call_soon_threadsafe`) and never block.
"""

from bifente.edged.readers.terminal.client import (
    TerminalClosed,
    TerminalError,
    TerminalLink,
    TerminalRestarted,
    TerminalTimeout,
    parse_reader,
)
from bifente.edged.readers.terminal.reader import TerminalReader
from bifente.edged.readers.terminal.transport import TerminalTransport
from bifente.edged.readers.terminal.ui import TerminalUI, identity_text

__all__ = [
    "TerminalClosed",
    "TerminalError",
    "TerminalLink",
    "TerminalReader",
    "TerminalRestarted",
    "TerminalTimeout",
    "TerminalTransport",
    "TerminalUI",
    "identity_text",
    "parse_reader",
]
