"""The results file every notebook ends with, its claims, timings and the papers' numbers, and Markdown tables of them.

``results/<profile>/<notebook>.json`` = {"notebook", "profile", "params", "seed", "dataset", "model", "metrics",
"paper", "claims": [{"name", "value", "paper_value", "holds"}], "timings_s", "versions"} (written atomically).
"""

from __future__ import annotations

import json
import math
import platform
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from functools import cache
from importlib import metadata
from pathlib import Path
from typing import Any

import torch

from .config import results_dir
from .io import atomic_write_json

PAPER_NUMBERS_FILE = Path(__file__).with_name("paper_numbers.json")


@cache
def paper_numbers() -> dict[str, Any]:
    """The papers' headline tables (transcribed into ``helpers/paper_numbers.json``)."""
    return json.loads(PAPER_NUMBERS_FILE.read_text())


def claim(name: str, value: Any, paper_value: Any, holds: bool) -> dict[str, Any]:
    """One checked statement of a paper: our value, the paper's, and whether the claim holds here."""
    return {"name": name, "value": value, "paper_value": paper_value, "holds": bool(holds)}


class Stopwatch:
    """Named wall-clock timings: ``with watch("train"): ...``; ``watch.timings`` maps names to seconds."""

    def __init__(self) -> None:
        self.start = time.perf_counter()
        self.timings: dict[str, float] = {}

    @contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        begin = time.perf_counter()
        try:
            yield
        finally:
            self.timings[name] = self.timings.get(name, 0.0) + time.perf_counter() - begin

    def total(self) -> dict[str, float]:
        """The timings plus ``total`` (seconds since the stopwatch was made)."""
        return {**self.timings, "total": time.perf_counter() - self.start}


def versions() -> dict[str, str]:
    """Python, key packages and the device, for the record."""
    found = {"python": platform.python_version()}
    for package in ("torch", "torchvision", "numpy", "scipy", "scikit-learn"):
        try:
            found[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            found[package] = "missing"
    found["device"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
    return found


def write_results(
    notebook: str,
    profile: str,
    params: dict[str, Any],
    seed: int,
    dataset: str,
    model: str,
    metrics: dict[str, Any],
    paper: dict[str, Any],
    claims: list[dict[str, Any]],
    timings_s: dict[str, float],
    failed: bool = False,
) -> Path:
    """Write ``results/<profile>/<notebook>.json`` (``<notebook>.failed.json`` when ``failed``) atomically and
    return its path."""
    record = {
        "notebook": notebook,
        "profile": profile,
        "params": params,
        "seed": seed,
        "dataset": dataset,
        "model": model,
        "metrics": metrics,
        "paper": paper,
        "claims": claims,
        "timings_s": timings_s,
        "versions": versions(),
    }
    return atomic_write_json(results_dir(profile) / f"{notebook}{'.failed' if failed else ''}.json", record)


def _shown(value: Any) -> Any:
    if isinstance(value, float):
        return round(value, 4)
    if isinstance(value, dict):
        return {key: _shown(item) for key, item in value.items()}
    return value


def finish(notebook: str, profile: str, params: dict[str, Any], seed: int, dataset: str, model: str,
           metrics: dict[str, Any], paper: dict[str, Any], claims: list[dict[str, Any]], timings_s: dict[str, float],
           finite: Iterable[float] = ()) -> Path:
    """The last cell of every notebook: check the run, print its claims, write its results file.

    The run passes when every value of ``finite`` is finite and, at a profile other than ``smoke`` (which only
    proves the code runs), every claim holds. A passing run writes ``results/<profile>/<notebook>.json``; a failing
    one writes ``<notebook>.failed.json`` beside it instead, leaving the last good results file as it was, and
    raises an AssertionError that says what failed. Returns the path written.
    """
    for item in claims:
        print(("holds " if item["holds"] else "FAILS ") + item["name"], _shown(item["value"]))
    values = [float(v) for v in finite]
    problems = [f"{sum(not math.isfinite(v) for v in values)} of {len(values)} checked values are not finite"
                ] if not all(math.isfinite(v) for v in values) else []
    if profile != "smoke":  # the profile is big enough to support the claims
        problems += [f"claim fails: {item['name']} (value {_shown(item['value'])})"
                     for item in claims if not item["holds"]]
    path = write_results(notebook, profile, params, seed, dataset, model, metrics, paper, claims, timings_s,
                         failed=bool(problems))
    print("wrote", path)
    if not problems:  # a failed run's record is stale once a run passes
        path.with_name(f"{notebook}.failed.json").unlink(missing_ok=True)
    if problems:
        raise AssertionError(f"{notebook} did not pass (results kept in {path.name}, the last good results file "
                             "is untouched): " + "; ".join(problems))
    return path


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[object]], digits: int = 4) -> str:
    """A Markdown table (floats rounded to ``digits``)."""
    cell = lambda v: f"{v:.{digits}f}" if isinstance(v, float) else str(v)
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows])
