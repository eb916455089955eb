"""Timing helpers and the table printer shared by the benchmarks."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["Row", "goal", "interleaved", "print_table", "sample"]


@dataclass(frozen=True)
class Row:
    """One line of the benchmark table; a row with a goal says PASS or FAIL on the same line."""

    name: str
    median: str
    detail: str = ""
    ratio: str = ""
    goal: str = ""  # e.g. ">= 0.8", as the goals table in docs/benchmarks.md states it
    passed: bool | None = None
    key: str = ""  # the goal's row id (P5, S, H...), when the row is one of its goals

    @property
    def verdict(self) -> str:
        """PASS, FAIL or nothing (a row without a goal)."""
        return "" if self.passed is None else "PASS" if self.passed else "FAIL"


def goal(key: str, name: str, value: str, ratio: float, target: float, *, at_least: bool,
         detail: str = "", unit: str = "") -> Row:
    """A goal row: `ratio` compared with `target` (>= if at_least, else <=)."""
    passed = ratio >= target if at_least else ratio <= target
    sign = ">=" if at_least else "<="
    return Row(name, value, detail, f"{ratio:.2f}{unit}", f"{sign} {target:g}{unit}", passed,
               key)


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
    """A fixed-width table: measure, median, ratio, goal, verdict, then the detail."""
    heads = ("measure", "median", "ratio", "goal", "", "detail")
    cells = [(f"{r.key + ' ' if r.key else ''}{r.name}", r.median, r.ratio, r.goal, r.verdict,
              r.detail) for r in rows]
    widths = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(heads)]
    print(f"\n{title}")
    for line in (heads, *cells):
        print("  " + "  ".join(f"{v:>{w}}" if i in (1, 2) else f"{v:<{w}}"
                               for i, (v, w) in enumerate(zip(line, widths, strict=True))
                               ).rstrip())
