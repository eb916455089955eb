"""POP3 TOP (RFC 1939 §7): the header and the first n lines, so a mailbox can be listed cheaply."""

from __future__ import annotations

import poplib
import ssl
from pathlib import Path

from bifente.simulators.mail import TEST_PASSWORD, MailOperator
from tests.mail_operator.test_operator import GP, NURSE, smime, submit


def test_top_returns_the_header_and_n_lines(tmp_path: Path) -> None:
    with MailOperator(tmp_path / "op") as op:
        submit(op, GP, smime(GP, NURSE, b"\x30\x80" + bytes(3000), subject="Sujet"))
        context = ssl.create_default_context(cafile=op.info.ca_file)
        pop = poplib.POP3_SSL(op.host, op.info.domains["cabinet.test"].pop3s, context=context,
                              timeout=10)
        try:
            assert "TOP" in pop.capa()
            pop.user(NURSE)
            pop.pass_(TEST_PASSWORD)
            whole = pop.retr(1)[1]
            head = pop.top(1, 0)[1]
            blank = whole.index(b"")
            assert head == whole[:blank + 1]
            assert b"Subject: Sujet" in head
            assert pop.top(1, 2)[1] == whole[:blank + 3]
            for bad in ("TOP 2 0", "TOP 1 x", "TOP 1"):
                try:
                    pop._shortcmd(bad)
                except poplib.error_proto as exc:
                    assert exc.args[0].startswith(b"-ERR")
                else:
                    raise AssertionError(f"{bad} accepted")
        finally:
            pop.quit()
