"""Changing a document's visibility flags (D8, D16), for its author or its patient: the rules
decide (`rules.check_visibility_change`), then the change and its trace commit together."""

from __future__ import annotations

from collections.abc import Mapping

from bifente.simulators.dmp.codes import Outcome, Reason, Refused
from bifente.simulators.dmp.rules import Policy, apply_visibility, check_visibility_change
from bifente.simulators.dmp.storage import Document
from bifente.simulators.dmp.tracing import TraceContext, Tracer

__all__ = ["change_visibility", "flag"]

_PATIENT_MAY = {"masked_ps", "invisible_representatives"}
_AUTHOR_MAY = {"masked_ps", "invisible_patient", "invisible_representatives", "announced"}


def flag(value: object, name: str) -> bool:
    """A field that must be true or false (Refused bad_request otherwise)."""
    if not isinstance(value, bool):
        raise Refused(Reason.BAD_REQUEST, f"{name} must be true or false")
    return value


def change_visibility(tracer: Tracer, ctx: TraceContext, doc: Document,
                      fields: Mapping[str, object], *, by_patient: bool, policy: Policy
                      ) -> Document:
    """The document after the change (Refused when the rules do not allow it); traced ok."""
    changes = {name: flag(value, name) for name, value in fields.items()}
    now = tracer.clock()
    refusal = check_visibility_change(doc.view(), changes, by_patient=by_patient,
                                      policy=policy, now=now)
    if refusal is Reason.NOT_PERMITTED:
        raise Refused(refusal, "allowed changes: " + ", ".join(sorted(
            _PATIENT_MAY if by_patient else _AUTHOR_MAY)))
    if refusal:
        raise Refused(refusal)
    view = apply_visibility(doc.view(), changes, now)
    storage = tracer.storage
    with storage.transaction():
        storage.set_visibility(view)
        tracer.trace(ctx, Outcome.OK)
    updated = storage.get_document(doc.ins, doc.id)
    assert updated is not None
    return updated
