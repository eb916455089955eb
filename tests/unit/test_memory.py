"""Large buffers go back to the system when freed (edged/memory.py)."""

from __future__ import annotations

import platform
import subprocess
import sys

from tests.needs import missing

# In a fresh process: a 30 MB buffer freed (glibc then raises its threshold to 30 MB), then
# 20 MB ones; the resident set after each free, against before, in MB.
SCENARIO = """
import sys
from pathlib import Path
from bifente.edged.memory import return_large_buffers

def rss():
    line = next(l for l in Path("/proc/self/status").read_text().splitlines()
                if l.startswith("VmRSS:"))
    return int(line.split()[1]) // 1024

if sys.argv[1] == "fixed":
    assert return_large_buffers()
before = rss()
big = bytearray(b"\\x01") * (30 << 20)
del big
kept = []
for _ in range(3):
    buffer = bytearray(b"\\x01") * (20 << 20)
    del buffer
    kept.append(rss() - before)
print(max(kept))
"""


def _kept(mode: str) -> int:
    out = subprocess.run([sys.executable, "-c", SCENARIO, mode], capture_output=True,
                         text=True, check=True, timeout=60)
    return int(out.stdout)


def test_a_freed_large_buffer_leaves_the_resident_set() -> None:
    if platform.libc_ver()[0] != "glibc":  # the Pi's Debian and CI have glibc
        missing("the mmap threshold is glibc's (mallopt)")
    assert _kept("fixed") < 5  # MB: the 20 MB buffers were given back each time
