"""What every harness shares: the contract check, finding records and seed writing.

A harness calls `main(name, target, allowed, seeds)`. The contract of a parser is that any
input either parses or raises one of `allowed` (its typed errors). Anything else is a finding:
by default it is raised, so libFuzzer stops and writes the crashing input; with
BIFENTE_FUZZ_KEEP_GOING=1 (long runs) it is recorded and the run goes on, so one run counts
every distinct signature. Hangs are bounded by libFuzzer's -timeout and memory by
-rss_limit_mb / -malloc_limit_mb, which fuzz/run.py always passes.
"""

from __future__ import annotations

import atexit
import hashlib
import json
import os
import sys
import time
import traceback
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
KEEP_GOING = os.environ.get("BIFENTE_FUZZ_KEEP_GOING") == "1"
SLOW_SECONDS = float(os.environ.get("BIFENTE_FUZZ_SLOW", "1.0"))

__all__ = ["ROOT", "ContractBroken", "main", "signature"]


class ContractBroken(AssertionError):
    """An invariant of the parser (round trip, differential agreement) does not hold."""


def signature(exc: BaseException) -> str:
    """Exception type and the innermost frame in this repository: one line per defect."""
    frames = traceback.extract_tb(exc.__traceback__)
    ours = [f for f in frames if str(ROOT) in f.filename and "/fuzz/" not in f.filename]
    where = ours[-1] if ours else (frames[-1] if frames else None)
    if where is None:
        return type(exc).__name__
    path = Path(where.filename)
    shown = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path.name
    return f"{type(exc).__name__} at {shown}:{where.lineno}"


class _Recorder:
    """Counts findings by signature and keeps the smallest input of each (keep-going mode)."""

    def __init__(self, name: str) -> None:
        self.dir = Path(os.environ.get("BIFENTE_FUZZ_FINDINGS", ROOT / "fuzz" / "findings")) / name
        self.counts: dict[str, int] = {}
        self.smallest: dict[str, bytes] = {}
        self.slowest = 0.0

    def record(self, sig: str, data: bytes) -> None:
        self.counts[sig] = self.counts.get(sig, 0) + 1
        if sig not in self.smallest or len(data) < len(self.smallest[sig]):
            self.smallest[sig] = data
            self.dir.mkdir(parents=True, exist_ok=True)
            key = hashlib.sha256(sig.encode()).hexdigest()[:12]
            (self.dir / f"{key}.bin").write_bytes(data)
            self.flush()

    def flush(self) -> None:
        if not self.counts and not self.slowest:
            return
        self.dir.mkdir(parents=True, exist_ok=True)
        summary = {"findings": {s: {"hits": n, "smallest": len(self.smallest[s]),
                                    "file": hashlib.sha256(s.encode()).hexdigest()[:12] + ".bin"}
                                for s, n in self.counts.items()},
                   "slowest_seconds": round(self.slowest, 4)}
        (self.dir / "summary.json").write_text(json.dumps(summary, indent=1), encoding="utf-8")


def main(name: str, target: Callable[[bytes], Any], allowed: tuple[type[BaseException], ...],
         seeds: Callable[[], Iterable[bytes]]) -> None:
    """Run one harness: `--write-seeds DIR` writes its seeds; other arguments go to atheris."""
    if len(sys.argv) == 3 and sys.argv[1] == "--write-seeds":
        out = Path(sys.argv[2])
        out.mkdir(parents=True, exist_ok=True)
        for data in seeds():
            (out / hashlib.sha1(data).hexdigest()).write_bytes(data)  # noqa: S324 - a file name
        return
    import atheris

    recorder = _Recorder(name)
    count = 0

    def one_input(data: bytes) -> None:
        nonlocal count
        count += 1
        started = time.monotonic()
        try:
            target(data)
        except allowed:
            pass
        except Exception as exc:  # the contract: nothing else may escape a parser
            if not KEEP_GOING:
                raise
            recorder.record(signature(exc), data)
        finally:
            spent = time.monotonic() - started
            if spent > recorder.slowest:
                recorder.slowest = spent
                if spent > SLOW_SECONDS:
                    recorder.record(f"slow input (> {SLOW_SECONDS} s)", data)
            if count % 100_000 == 0:
                recorder.flush()

    atexit.register(recorder.flush)  # libFuzzer ends the process with exit()
    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()
