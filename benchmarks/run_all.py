"""``make bench``: every benchmark script, then each notebook end to end at a profile; writes results/bench.json.

    .venv/bin/python benchmarks/run_all.py [--profile teach] [--skip-notebooks]

Benchmarks print their own figures (kept verbatim in the JSON). Each notebook runs in a fresh papermill process
with the caches of ``data/cache`` moved aside, so its wall time includes training and mining; peak memory is the
largest resident set of the papermill process and its kernel, measured in a fresh parent process per notebook (the
children's high-water mark of one process only ever grows).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from helpers.batch import notebook_stems
from helpers.config import PROJECT_ROOT
from helpers.io import atomic_write_json

BENCHMARKS = PROJECT_ROOT / "benchmarks"
# Runs the command given as arguments, then prints its (and its descendants') peak resident set in KiB.
MEASURE = ("import resource, subprocess, sys; code = subprocess.run(sys.argv[1:]).returncode; "
           "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); sys.exit(code)")


def run_scripts() -> dict[str, dict]:
    """Run every ``bench_*.py``; keep its output lines and wall time."""
    found = {}
    for script in sorted(BENCHMARKS.glob("bench_*.py")):
        start = time.perf_counter()
        done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, cwd=PROJECT_ROOT)
        found[script.stem] = {"seconds": time.perf_counter() - start, "returncode": done.returncode,
                              "output": done.stdout.splitlines(), "errors": done.stderr.splitlines()[-20:]}
        print(f"== {script.stem} ({found[script.stem]['seconds']:.0f} s)\n{done.stdout}", flush=True)
    return found


def run_notebooks(profile: str) -> dict[str, dict]:
    """Each notebook at ``profile`` from empty caches, in order (later notebooks reuse what 00 trained)."""
    found = {}
    with tempfile.TemporaryDirectory() as scratch:
        env = {**os.environ, "HELPERS_PROFILE": profile, "HELPERS_QUIET": "1", "HELPERS_STATIC_WIDGETS": "1",
               "HELPERS_DATA_DIR": str(Path(scratch) / "data"), "HELPERS_RESULTS_DIR": str(Path(scratch) / "results"),
               "HELPERS_FIGURES_DIR": str(Path(scratch) / "figures")}
        for stem in notebook_stems():
            start = time.perf_counter()
            done = subprocess.run([sys.executable, "-c", MEASURE, sys.executable, "-m", "helpers.execution",
                                   f"notebooks/{stem}.ipynb", str(Path(scratch) / f"{stem}.ipynb"), "--profile",
                                   profile],
                                  capture_output=True, text=True, cwd=PROJECT_ROOT, env=env)
            peak_kib = int(done.stdout.split()[-1]) if done.stdout.split() else 0
            found[stem] = {"seconds": time.perf_counter() - start, "returncode": done.returncode,
                           "peak_rss_mib": peak_kib / 1024, "errors": done.stderr.splitlines()[-20:]}
            print(f"== {stem} at {profile}: {found[stem]['seconds']:.0f} s, peak RSS "
                  f"{found[stem]['peak_rss_mib']:.0f} MiB, return code {done.returncode}", flush=True)
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="teach")
    parser.add_argument("--skip-notebooks", action="store_true")
    args = parser.parse_args()
    record = {"machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]}, "benchmarks": run_scripts()}
    if not args.skip_notebooks:
        record["notebooks"] = run_notebooks(args.profile)
        record["notebooks_total_s"] = sum(n["seconds"] for n in record["notebooks"].values())
    print("wrote", atomic_write_json(PROJECT_ROOT / "results" / "bench.json", record))


if __name__ == "__main__":
    main()
