"""Generation speed of the procedural part-annotated dataset.

    .venv/bin/python benchmarks/bench_data.py [--samples 2000] [--size 64]

Renders ``--samples`` samples (all six categories plus negatives) serially and in parallel worker processes and
prints seconds and samples per second for each (no cache involved).
"""

from __future__ import annotations

import argparse
import os
import time

from helpers.config import CATEGORIES
from helpers.data.arrays import materialize
from helpers.data.synthetic import SyntheticParts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=2000)
    parser.add_argument("--size", type=int, default=64)
    args = parser.parse_args()
    per_kind = args.samples // (len(CATEGORIES) + 1)
    data = SyntheticParts(CATEGORIES, "train", per_kind, args.samples - per_kind * len(CATEGORIES), args.size, 0)
    for workers in sorted({1, min(os.cpu_count() or 1, 4)}):
        start = time.perf_counter()
        materialize(data, workers=workers)
        seconds = time.perf_counter() - start
        print(f"{len(data)} samples at {args.size} px, {workers} worker(s): {seconds:.1f} s "
              f"({len(data) / seconds:.0f} samples/s)")


if __name__ == "__main__":
    main()
