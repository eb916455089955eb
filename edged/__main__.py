"""Entry point of the `edged` daemon."""

from __future__ import annotations

import argparse
import sys

__all__ = ["main"]

VERSION = "0.1.0"


def main(argv: list[str] | None = None) -> int:
    """Parse arguments; the network daemon itself is not built yet (see the edged issue)."""
    parser = argparse.ArgumentParser(prog="edged", description="bifente edge daemon")
    parser.add_argument("--version", action="version", version=f"edged {VERSION}")
    parser.add_argument("--config", help="TOML configuration file")
    parser.add_argument("--simulate", action="store_true", help="run on simulated hardware")
    parser.parse_args(argv)
    print("edged: the daemon (secure socket, mDNS, pairing) is not implemented yet; "
          "use the `bifente` command for local card access", file=sys.stderr)
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
