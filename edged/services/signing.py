"""Non-repudiation signatures are confirmed on the terminal, one by one or in a bounded batch.

`cps.sign` with the signature key (0x81, CPS_PRIV_SIG) commits the professional: before the
card signs, the terminal shows who asks (the paired client's name), what (a title the client
gives, the document count and the first hex digits of the SHA-256 digest) and waits for OK or
Annuler on the keypad. The batch mode ("N signatures within T minutes, confirmed once") is off
unless `[cards] sign_batch_count` and `sign_batch_minutes` are set; the prompt then shows N and
T, and the batch belongs to the client that was shown. Cancel outside a prompt ends every batch.
See docs/security.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass

from bifente.edged.readers.ui import Answer, TerminalUI, fit_lines
from bifente.edged.services.errors import Family, ServiceError

__all__ = ["DIGEST_DIGITS", "Approval", "SignatureGate"]

DIGEST_DIGITS = 8  # hex digits of SHA-256 shown: enough to compare with the client's screen


@dataclass(frozen=True)
class Approval:
    """How a signature was allowed: confirmed now, or inside a confirmed batch."""

    batch: bool
    remaining: int  # signatures left in the batch after this one (0 when one by one)


@dataclass
class _Batch:
    remaining: int
    until: float
    insertion: object  # the card insertion it was confirmed for (its arbiter)


class SignatureGate:
    """Asks the holder on the terminal before each signature (or batch) for a client."""

    def __init__(self, *, batch_count: int = 0, batch_minutes: float = 0.0,
                 timeout: float = 60.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.batch_count = batch_count if batch_minutes > 0 else 0
        self.batch_minutes = batch_minutes
        self.timeout = timeout
        self._clock = clock
        self._batches: dict[str, _Batch] = {}
        self._lock = asyncio.Lock()  # one signature prompt at a time

    def prompt(self, client_name: str, title: str, count: int, digest: bytes) -> str:
        """The question on the display (French, folded to the terminal's font)."""
        lines = ["Signer avec CPS?", f"Pour: {client_name}"[:32], title[:32] or "(sans titre)"]
        if self.batch_count > 1:
            lines.append(f"Lot: {self.batch_count} sign. en {self.batch_minutes:g} min")
        else:
            lines.append(f"{count} document" + ("s" if count > 1 else ""))
        lines.append(f"SHA256 {digest.hex()[:DIGEST_DIGITS]}")
        return "\n".join(fit_lines("\n".join(lines), lines=7))

    async def approve(self, ui: TerminalUI | None, client: str, client_name: str, title: str,
                      digest: bytes, count: int = 1, insertion: object = None,
                      gate: Callable[[], AbstractAsyncContextManager[None]] | None = None
                      ) -> Approval:
        """Return once the holder allowed it; ServiceError when refused or unanswered. A batch
        holds for this client and this card insertion only."""
        batch = self._batches.get(client)
        if batch is not None and batch.until > self._clock() and batch.remaining >= count \
                and batch.insertion is insertion:
            batch.remaining -= count
            return Approval(True, batch.remaining)
        self._batches.pop(client, None)
        if ui is None:
            raise ServiceError(Family.CONSENT, "no_terminal", "signatures are confirmed on the "
                               "terminal, and there is none")
        async with gate() if gate is not None else contextlib.nullcontext(), self._lock:
            answer = Answer(await ui.confirm(self.prompt(client_name, title, count, digest),
                                             timeout=self.timeout))
        if answer is Answer.CANCEL:
            raise ServiceError(Family.CONSENT, "signature_refused",
                               "the holder refused the signature on the terminal")
        if answer is not Answer.OK:
            raise ServiceError(Family.CONSENT, "signature_timeout",
                               "the signature was not confirmed on the terminal in time")
        if self.batch_count > 1:
            remaining = self.batch_count - count
            self._batches[client] = _Batch(remaining, self._clock() + self.batch_minutes * 60,
                                           insertion)
            return Approval(True, remaining)
        return Approval(False, 0)

    def end_batches(self) -> int:
        """Cancel pressed, or the card removed: every batch ends; returns how many were open."""
        count = len(self._batches)
        self._batches.clear()
        return count
