"""`make bench`: every benchmark, printed as tables of medians and side-by-side ratios."""

from __future__ import annotations

import argparse
import platform

from bench import cards, dmp, edged, exposure, mail, terminal
from bench.table import print_table


def main() -> int:
    """Run the benchmarks (use --quick for a smoke run)."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer iterations")
    args = parser.parse_args()
    print(f"bifente benchmarks on {platform.machine()} / Python {platform.python_version()}"
          " (medians; ratios measured side by side in this run)")
    print_table("Cards through pyscard -> pcscd -> vpcd -> simulated cards",
                cards.run(args.quick))
    print_table("Terminal: firmware on MicroPython (192K heap) over a pty, T=0 card lines "
                f"(f = {terminal.card_clock_hz() / 1e6:.5f} MHz)", terminal.run(args.quick))
    print_table("edged: the daemon over WebSocket + TLS 1.3 (loopback)", edged.run(args.quick))
    print_table("edged under a connection flood from 250 loopback addresses (issue 9 §3)",
                exposure.run(args.quick))
    print_table("Secure mail: 10 MB attachment, sign+encrypt / decrypt+verify vs openssl cms",
                mail.run(args.quick))
    print_table("Reference DMP host: HTTPS + SQLite (WAL, synchronous=FULL) on loopback",
                dmp.run(args.quick))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
