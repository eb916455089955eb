"""The unpaired audit budget (review M6): per peer and minute, and a global bound."""

from __future__ import annotations

from typing import Any

from bifente.edged.state.audit_budget import AuditBudget


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _budget() -> tuple[AuditBudget, list[tuple[str, str, dict[str, Any]]], Clock]:
    written: list[tuple[str, str, dict[str, Any]]] = []
    clock = Clock()

    def write(name: str, /, *, actor: str, **fields: Any) -> None:  # as AuditLog.submit
        written.append((name, actor, fields))

    return AuditBudget(write, window=60.0, per_second=1.0, burst=30, clock=clock), written, clock


def test_one_record_per_prefix_and_minute_then_the_count() -> None:
    budget, written, clock = _budget()
    for i in range(50):
        budget.record("pair.failed", f"10.0.0.{i % 5 + 1}", reason="unknown_pairing")
    assert [(e, a) for e, a, _ in written] == [("pair.failed", "unpaired@10.0.0.0/24")]
    clock.now += 61
    budget.flush()
    assert written[1][0] == "audit.aggregated"
    assert written[1][2]["count"] == 49 and written[1][2]["reasons"] == [["unknown_pairing", 49]]


def test_many_prefixes_stay_within_the_global_budget_and_are_counted() -> None:
    budget, written, clock = _budget()
    attempts = 0
    for second in range(60):  # a fresh IPv6 /64 for every attempt, 100 a second
        for i in range(100):
            budget.record("pair.failed", f"2001:db8:{second}:{i}::1", reason="x")
            attempts += 1
        clock.now += 1
    # 30 at once, then one a second: never more, whatever the number of prefixes.
    assert len(written) <= 30 + 60
    budget.flush(everything=True)
    full = sum(1 for e, _, _ in written if e == "pair.failed")
    counted = sum(f["count"] for e, _, f in written if e == "audit.aggregated")
    suppressed = sum(n for e, _, f in written if e == "audit.suppressed" for _, n in f["counts"])
    assert full + counted + suppressed == attempts


def test_one_actor_form_for_whoever_has_not_proved_who_it_is() -> None:
    from bifente.edged.services.context import audit_actor

    assert audit_actor("desk", "10.0.0.7") == "desk"
    assert audit_actor(None, "10.0.0.7") == "unpaired@10.0.0.7"
    assert audit_actor("", "peer:10.0.0.7") == "unpaired@peer:10.0.0.7"
    assert audit_actor(None) == audit_actor("", "") == "unpaired"
