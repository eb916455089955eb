"""Checking an emission code against a user's TOTP secret: single use, failures lock out."""

from __future__ import annotations

from dataclasses import dataclass

from bifente.edged.services.proxy.totp import matching_steps
from bifente.edged.state.proxy_users import UserStore

__all__ = ["CodeCheck", "check_code"]


@dataclass
class CodeCheck:
    """The outcome of an emission code check."""

    ok: bool
    reason: str = ""  # missing, invalid, replayed, locked
    step: int = 0


def check_code(users: UserStore, name: str, code: str | None) -> CodeCheck:
    """Check (without using it) an emission code; failures count toward the lockout."""
    if users.is_locked(name):
        return CodeCheck(False, "locked")
    if code is None:
        return CodeCheck(False, "missing")
    state = users.totp_state(name)
    if state is None:
        return CodeCheck(False, "locked")
    secret, last_step = state
    matched = matching_steps(secret, code, users.clock())
    if not matched:
        users.record_failure(name)
        return CodeCheck(False, "invalid")
    fresh = [s for s in matched if s > last_step]
    if not fresh:
        users.record_failure(name)
        return CodeCheck(False, "replayed")
    return CodeCheck(True, step=fresh[0])
