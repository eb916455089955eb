"""Streamed SMTP submission against a real SMTP server (aiosmtpd): what arrives is what
smtplib's sendmail delivers for the same message, chunk boundaries anywhere."""

from __future__ import annotations

import asyncio
import io
import smtplib
import threading
from collections.abc import Iterator

import pytest
from aiosmtpd.smtp import SMTP as Server
from aiosmtpd.smtp import Envelope, Session

from bifente.edged.services import smtp_stream
from bifente.edged.services.smtp_stream import sendmail_stream


class Keep:
    """Keeps every message's DATA as received, refuses mailboxes named refused@."""

    def __init__(self) -> None:
        self.messages: list[bytes] = []
        self.mail_options: list[list[str]] = []

    async def handle_RCPT(self, server: Server, session: Session, envelope: Envelope,
                          address: str, options: list[str]) -> str:
        """Refuse refused@*, accept the others."""
        if address.startswith("refused@"):
            return "550 5.1.1 no such mailbox"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Server, session: Session, envelope: Envelope) -> str:
        """Keep the content (aiosmtpd has undone the dot-stuffing)."""
        assert isinstance(envelope.original_content, bytes)
        self.messages.append(envelope.original_content)
        self.mail_options.append(list(envelope.mail_options))
        return "250 OK"


@pytest.fixture
def server() -> Iterator[tuple[Keep, int]]:
    """aiosmtpd on an ephemeral port, served by its own loop in a thread."""
    keep = Keep()
    loop = asyncio.new_event_loop()
    srv = loop.run_until_complete(loop.create_server(lambda: Server(keep), "127.0.0.1", 0))
    thread = threading.Thread(target=loop.run_forever, name="smtp-test")
    thread.start()
    try:
        yield keep, srv.sockets[0].getsockname()[1]
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        srv.close()
        loop.run_until_complete(srv.wait_closed())
        loop.close()


BODIES = [
    b"Subject: a\r\n\r\nline\r\n.starts with a dot\r\n..two dots\r\n.\r\nend\r\n",
    b"Subject: bare line ends\n\nlf only\nthen cr\ralone\r\n.dot after lf\n",
    b"Subject: no final line end\r\n\r\nlast line",
    b"Subject: big\r\n\r\n" + b"".join(b"%05d ........................................\r\n" % i
                                        for i in range(2000)),
]


@pytest.mark.parametrize("chunk", [1, 7, 64, 1 << 20])
@pytest.mark.parametrize("body", BODIES, ids=["dots", "bare-ends", "no-final-eol", "big"])
def test_arrives_as_smtplib_sendmail_delivers_it(server: tuple[Keep, int], body: bytes,
                                                  chunk: int,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    keep, port = server
    monkeypatch.setattr(smtp_stream, "CHUNK", chunk)  # lines cut across reads
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as smtp:
        # As text, sendmail makes every line end CRLF (RFC 5321 §2.3.8), as the stream does
        # for bytes too: a bare LF never reaches the server (SMTP smuggling needs one).
        smtp.sendmail("a@cabinet.test", ["b@chu.test"], body.decode("ascii"))
        refused = sendmail_stream(smtp, "a@cabinet.test", ["b@chu.test"], io.BytesIO(body))
    assert refused == {}
    reference, streamed = keep.messages
    assert streamed == reference


def test_refusals_as_sendmail_reports_them(server: tuple[Keep, int]) -> None:
    keep, port = server
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as smtp:
        refused = sendmail_stream(smtp, "a@cabinet.test", ["b@chu.test", "refused@chu.test"],
                                  io.BytesIO(b"Subject: x\r\n\r\ny\r\n"))
        assert list(refused) == ["refused@chu.test"] and refused["refused@chu.test"][0] == 550
        with pytest.raises(smtplib.SMTPRecipientsRefused):
            sendmail_stream(smtp, "a@cabinet.test", ["refused@chu.test"],
                            io.BytesIO(b"Subject: x\r\n\r\ny\r\n"))
        # The transaction was reset: the connection still takes the next message.
        assert sendmail_stream(smtp, "a@cabinet.test", ["b@chu.test"],
                               io.BytesIO(b"Subject: z\r\n\r\nz\r\n")) == {}
    assert len(keep.messages) == 2


def test_a_body_without_line_ends_is_refused_not_buffered(server: tuple[Keep, int],
                                                          monkeypatch: pytest.MonkeyPatch
                                                          ) -> None:
    keep, port = server
    monkeypatch.setattr(smtp_stream, "CHUNK", 1024)
    monkeypatch.setattr(smtp_stream, "MAX_LINE", 4096)
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as smtp:
        with pytest.raises(ValueError, match="longer than 4096"):
            sendmail_stream(smtp, "a@cabinet.test", ["b@chu.test"], io.BytesIO(b"x" * 10_000))
        # Mid-DATA the connection was dropped, so the partial message is not delivered.
        assert smtp.sock is None
    assert keep.messages == []


def test_the_size_is_declared_where_the_server_offers_it(server: tuple[Keep, int]) -> None:
    keep, port = server
    body = b"Subject: sized\r\n\r\nx\r\n"
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as smtp:
        smtp.ehlo()
        assert smtp.has_extn("size")  # aiosmtpd's RFC 1870 limit
        smtp.sendmail("a@cabinet.test", ["b@chu.test"], body)
        sendmail_stream(smtp, "a@cabinet.test", ["b@chu.test"], io.BytesIO(body), len(body))
    assert keep.mail_options[0] == keep.mail_options[1] == [f"SIZE={len(body)}"]
