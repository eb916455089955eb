"""The [mail] table that points a client (edged) at a running simulated operator.

This is the seam where the simulator plugs in: the daemon knows only its documented [mail]
keys (docs/messaging.md); the simulator writes them, and the test password, from operator.json.
"""

from __future__ import annotations

import os
from pathlib import Path

from bifente.simulators.mail.info import OperatorInfo
from bifente.simulators.mail.operator import TEST_PASSWORD

__all__ = ["PASSWORD_FILE", "mail_table"]

PASSWORD_FILE = "mailbox-password"  # noqa: S105 a file name; TEST DATA inside, 0600


def mail_table(data_dir: str | Path, **extra: object) -> dict[str, object]:
    """edged's [mail] table for the operator whose operator.json is in `data_dir`."""
    data = Path(data_dir)
    info = OperatorInfo.load(data)
    password = data / PASSWORD_FILE
    fd = os.open(password, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(TEST_PASSWORD + "\n")
    return {"host": info.host, "directory_url": info.directory_url, "ca_file": info.ca_file,
            "password_file": str(password),
            "domains": {d: {"submission_port": p.submission, "pop3_port": p.pop3s}
                        for d, p in info.domains.items()},
            **extra}
