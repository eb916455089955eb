"""Unix-port entry: `micropython -m run_unix [MODULE [FILTER]]`; exit status 1 on any failure."""
# tests/firmware/test_micropython.py runs one module per process so each gets the whole
# capped heap (-X heapsize=192K), as the firmware would on a Pico.

import asyncio
import sys

import mptest

modules = (sys.argv[1],) if len(sys.argv) > 1 else mptest.MODULES
only = sys.argv[2] if len(sys.argv) > 2 else None
failures = asyncio.run(mptest.main(modules, only))
sys.exit(1 if failures else 0)
