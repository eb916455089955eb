"""The access traces: one per operation on a record, allowed or refused (docs/dmp-api.md).

`Tracer.refusals` wraps an operation: a `Refused` raised inside is traced with its reason and
raised again; the operation traces its own success, in the transaction of its change. Both the
JSON API and the patient domain (`bifente.simulators.dmp.patient`) trace through here.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace

from bifente.simulators.dmp.codes import AccessMode, Outcome, Reason, Refused
from bifente.simulators.dmp.storage import Storage, Trace

__all__ = ["MAX_TRACES", "PATIENT_ACTOR", "TraceContext", "Tracer", "trace_window"]

MAX_TRACES = 10_000
PATIENT_ACTOR = Trace(0.0, None, "patient", "patient", "", "", actor_name="the patient")


@dataclass
class TraceContext:
    """What a trace needs to know about the operation being served."""

    actor: Trace
    ins: str | None = field(default=None, repr=False)
    action: str = ""
    document_id: str = ""
    mode: AccessMode = AccessMode.NORMAL
    emergency_reason: str = ""


class Tracer:
    """Appends the traces of operations to the host's storage, stamped by its clock."""

    def __init__(self, storage: Storage, clock: Callable[[], float]) -> None:
        self.storage = storage
        self.clock = clock

    def trace(self, ctx: TraceContext, outcome: Outcome, reason: str = "") -> None:
        """Append one trace for this operation."""
        self.storage.add_trace(replace(
            ctx.actor, time=self.clock(), ins=ctx.ins, action=ctx.action, outcome=outcome,
            reason=reason, mode=ctx.mode, emergency_reason=ctx.emergency_reason,
            document_id=ctx.document_id))

    @contextmanager
    def refusals(self, ctx: TraceContext) -> Iterator[TraceContext]:
        """Trace a refusal raised in the block (then raise it again)."""
        try:
            yield ctx
        except Refused as refusal:
            self.trace(ctx, Outcome.REFUSED, refusal.reason)
            raise


def trace_window(limit: str | int | None, before: str | int | None) -> tuple[int, int | None]:
    """How many traces to read (1 to 10,000; 1,000 when not given) and below which id."""
    try:
        count = min(max(int(limit or 1000), 1), MAX_TRACES)
        below = int(before) if before else None
    except ValueError:
        raise Refused(Reason.BAD_REQUEST, "limit and before are integers") from None
    return count, below
