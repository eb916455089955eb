"""`make bench`: every benchmark, printed as tables of medians and side-by-side ratios."""

from __future__ import annotations

import argparse
import os
import platform

from bench import cards, dmp, edged, exposure, large, mail, terminal
from bench.table import Row, print_table

# The goals table, in its order (F: the fan-out p99; P4h: the terminal's host overhead).
ORDER = ("P5", "P5m", "P5d", "S", "H", "P3", "P6", "P7", "F", "L", "Lm", "P4h")


def main() -> int:
    """Run the benchmarks (use --quick for a smoke run); the goal rows are repeated at the end."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer iterations")
    args = parser.parse_args()
    print(f"bifente benchmarks on {platform.machine()} / Python {platform.python_version()}"
          f" / {os.cpu_count()} CPUs (medians; ratios measured side by side in this run)")
    goals: list[Row] = []
    for title, bench in (
            ("Cards through pyscard -> pcscd -> vpcd -> simulated cards", cards.run),
            ("Terminal: firmware on MicroPython (192K heap) over a pty, T=0 card lines "
             f"(f = {terminal.card_clock_hz() / 1e6:.5f} MHz)", terminal.run),
            ("edged: the daemon over WebSocket + TLS 1.3 (loopback)", edged.run),
            ("edged under a connection flood from 250 loopback addresses (exposure)",
             exposure.run),
            ("Secure mail: 10 MB attachment, sign+encrypt / decrypt+verify vs openssl cms",
             mail.run),
            ("Large payloads through edged and the SDK (chunked uploads)", large.run),
            ("Reference DMP host: HTTPS + SQLite (WAL, synchronous=FULL) on loopback",
             dmp.run)):
        rows = bench(args.quick)
        print_table(title, rows)
        goals += [r for r in rows if r.key]
    goals.sort(key=lambda r: ORDER.index(r.key) if r.key in ORDER else len(ORDER))
    print_table("Performance goals (each ratio measured side by side in this run)", goals)
    failed = [r for r in goals if r.passed is False]
    print(f"\n{len(goals) - len(failed)} of {len(goals)} goals met")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
