"""Run the fuzz harnesses one at a time, bounded, and print one JSON line of figures each.

    python -m fuzz.run [--runs N] [--seconds S] [--keep-going] [--only NAME ...]

Each harness gets a fresh working corpus seeded from the test vectors (its `--write-seeds`),
libFuzzer's per-input -timeout and -rss_limit_mb, and is stopped by -runs / -max_total_time.
The exit status is 1 when any harness reported a finding (a crash, a timeout, out of memory).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HARNESSES = ("apdu_command", "apdu_response", "tlv", "atr", "pkcs15", "link_host", "link_fw",
             "jsonrpc", "cda", "cms", "smime", "toml_profile", "toml_config")
_STATS = re.compile(r"^stat::(\w+):\s*(\d+)", re.M)
_COV = re.compile(r"#(\d+)\s+\w+\s+cov: (\d+) ft: (\d+)")


def run_one(name: str, runs: int, seconds: int, keep_going: bool, timeout: int,
            rss_mb: int, workdir: Path) -> dict[str, object]:
    """Run one harness; its figures (inputs, coverage, findings, exit status)."""
    script = ROOT / "fuzz" / f"fuzz_{name}.py"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    env["BIFENTE_FUZZ_FINDINGS"] = str(workdir / "findings")
    if keep_going:
        env["BIFENTE_FUZZ_KEEP_GOING"] = "1"
    seeds, corpus = workdir / name / "seeds", workdir / name / "corpus"
    corpus.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, str(script), "--write-seeds", str(seeds)], env=env,
                   check=True, timeout=300)
    args = [sys.executable, str(script), f"-runs={runs}", f"-max_total_time={seconds}",
            f"-timeout={timeout}", f"-rss_limit_mb={rss_mb}", f"-malloc_limit_mb={rss_mb}",
            "-print_final_stats=1", "-max_len=8192", f"-artifact_prefix={workdir / name}/",
            str(corpus), str(seeds)]
    started = time.monotonic()
    proc = subprocess.run(args, env=env, capture_output=True, text=True, check=False,
                          timeout=seconds + 600)
    log = proc.stderr + proc.stdout
    (workdir / f"{name}.log").write_text(log, encoding="utf-8")
    stats = {k: int(v) for k, v in _STATS.findall(log)}
    cov = _COV.findall(log)
    summary_file = workdir / "findings" / name / "summary.json"
    findings = json.loads(summary_file.read_text())["findings"] if summary_file.exists() else {}
    crash = [line for line in log.splitlines()
             if "ERROR: libFuzzer" in line or "Uncaught Python exception" in line
             or "ContractBroken" in line or line.startswith("=== ")]
    return {"harness": name, "inputs": stats.get("number_of_executed_units", 0),
            "seconds": round(time.monotonic() - started, 1),
            "coverage": int(cov[-1][1]) if cov else 0, "features": int(cov[-1][2]) if cov else 0,
            "corpus": len(list(corpus.iterdir())), "findings": findings,
            "crash": crash[:6], "exit": proc.returncode, "log": str(workdir / f"{name}.log")}


def main(argv: list[str] | None = None) -> int:
    """Parse the options, run the chosen harnesses in turn, print their figures."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=-1, help="inputs per harness (-1: no limit)")
    ap.add_argument("--seconds", type=int, default=60, help="time per harness")
    ap.add_argument("--timeout", type=int, default=10, help="seconds one input may take")
    ap.add_argument("--rss-mb", type=int, default=2048, help="memory bound per harness")
    ap.add_argument("--keep-going", action="store_true",
                    help="record unexpected exceptions and go on (long runs)")
    ap.add_argument("--only", nargs="*", default=list(HARNESSES), choices=HARNESSES)
    ap.add_argument("--workdir", type=Path, help="keep corpora, logs and findings here")
    opts = ap.parse_args(argv)
    workdir = opts.workdir or Path(tempfile.mkdtemp(prefix="bifente-fuzz-"))
    workdir.mkdir(parents=True, exist_ok=True)
    failed = False
    for name in opts.only:
        result = run_one(name, opts.runs, opts.seconds, opts.keep_going, opts.timeout,
                         opts.rss_mb, workdir)
        failed |= result["exit"] != 0 or bool(result["findings"])
        print(json.dumps(result), flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
