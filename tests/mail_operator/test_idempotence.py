"""The operator delivers a Message-ID at most once per mailbox (a client's retry after a crash)."""

from __future__ import annotations

from pathlib import Path

from bifente.simulators.mail import MailOperator
from tests.mail_operator.test_operator import EMERGENCY, GP, NURSE, mailbox, smime, submit


def test_same_message_id_is_delivered_once_per_mailbox(tmp_path: Path) -> None:
    with MailOperator(tmp_path / "op") as op:
        msg = smime(GP, f"{NURSE}, {EMERGENCY}", b"\x30\x80payload")
        msg["Message-ID"] = "<retry-1@cabinet.test>"
        submit(op, GP, msg)
        submit(op, GP, msg)  # the retry after a crash: 250 again, but no second copy
        assert len(mailbox(op, NURSE)) == 1
        assert len(mailbox(op, EMERGENCY)) == 1  # relayed to chu.test: deduplicated there too
        other = smime(GP, NURSE, b"\x30\x80other")
        other["Message-ID"] = "<retry-2@cabinet.test>"
        submit(op, GP, other)
        no_id = smime(GP, NURSE, b"\x30\x80no id")
        submit(op, GP, no_id)
        submit(op, GP, no_id)  # without a Message-ID nothing can be recognised
        assert len(mailbox(op, NURSE)) == 4
    with MailOperator(tmp_path / "op") as op:  # the record survives a restart
        submit(op, GP, msg)
        assert len(mailbox(op, NURSE)) == 4
