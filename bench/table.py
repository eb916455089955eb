"""Timing helpers and the table printer shared by the benchmarks."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["Row", "interleaved", "print_table", "sample"]


@dataclass(frozen=True)
class Row:
    """One line of the benchmark table."""

    name: str
    median: str
    detail: str = ""
    ratio: str = ""


def sample(fn: Callable[[], object], n: int) -> list[float]:
    """Run fn n times; seconds per call."""
    out = []
    for _ in range(n):
        t = time.perf_counter_ns()
        fn()
        out.append((time.perf_counter_ns() - t) / 1e9)
    return out


def interleaved(a: Callable[[], object], b: Callable[[], object], *, rounds: int,
                block: int) -> tuple[list[float], list[float]]:
    """Alternate blocks of a and b so drift and noise hit both sides alike."""
    sa: list[float] = []
    sb: list[float] = []
    for _ in range(rounds):
        sa += sample(a, block)
        sb += sample(b, block)
    return sa, sb


def fmt_time(seconds: float) -> str:
    """Human units."""
    if seconds < 1e-3:
        return f"{seconds * 1e6:.1f} µs"
    if seconds < 1:
        return f"{seconds * 1e3:.2f} ms"
    return f"{seconds:.2f} s"


def median(values: list[float]) -> float:
    """The median."""
    return statistics.median(values)


def print_table(title: str, rows: list[Row]) -> None:
    """A fixed-width table."""
    w0 = max(len(r.name) for r in rows)
    w1 = max(len(r.median) for r in rows)
    w2 = max(len(r.detail) for r in rows)
    print(f"\n{title}")
    print(f"  {'measure':<{w0}}  {'median':>{w1}}  {'detail':<{w2}}  ratio")
    for r in rows:
        print(f"  {r.name:<{w0}}  {r.median:>{w1}}  {r.detail:<{w2}}  {r.ratio}")
