"""What can go wrong with the audit log, as exceptions (docs/audit.md)."""

from __future__ import annotations

from pathlib import Path

__all__ = ["AuditError", "AuditTampered"]


class AuditError(Exception):
    """The audit log cannot be used (closed, busy, unreadable, or not an audit log)."""


class AuditTampered(AuditError):
    """Opening for writing found the log and its anchor disagree; appending would hide it."""

    def __init__(self, path: Path, reason: str, first_bad_seq: int | None) -> None:
        self.reason = reason
        self.first_bad_seq = first_bad_seq
        super().__init__(f"the audit log at {path} does not match its anchor: {reason} "
                         "(run `bifente audit verify`; see docs/audit.md)")
