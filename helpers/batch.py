"""Batch reproduction: grids of notebooks x parameter sets executed with papermill.

``python -m helpers.batch run GRID.yaml`` runs every (notebook, parameters) of a grid into
``results/<profile>/runs/<run-id>/``, in parallel worker processes or on a Dask distributed cluster
(``--scheduler ADDRESS``). A run is complete once its folder holds ``status.json`` with ``"state": "done"``;
completed runs are skipped when the grid is run again, so a killed batch resumes where it stopped. A failed run is
kept as ``<run-id>.failed-<time>/`` with its error and does not stop the others; nothing is ever overwritten.
Runs of notebook 00 (which trains the performers every other notebook loads from the cache) go first, runs of
notebook 05 (the paper tables, which read every other results file) last.

Grid file (YAML)::

    profile: teach                 # optional (``--profile`` wins)
    notebooks: all                 # or a list of stems / numbers: [01_explanatory_graph, "02"]
    parameters:                    # the cartesian product of these lists, applied to every notebook
      SEED: [0, 1]
    runs:                          # optional explicit runs, added to the product
      - notebook: 02_interpretable_cnn
        parameters: {CATEGORIES: [cow]}
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import sys
import time
import traceback
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .config import PROFILES, PROJECT_ROOT, check_choice
from .io import atomic_write_json, config_hash

NOTEBOOK_DIR = PROJECT_ROOT / "notebooks"
FIRST_STAGE = "00"  # trains the performers every other notebook loads: its runs complete before any other starts
LAST_STAGE = "05"  # reads every other notebook's results: its runs start after all others ended
LAST = 2  # stage number of LAST_STAGE (0: FIRST_STAGE, 1: every other notebook)


@dataclass(frozen=True)
class Run:
    """One notebook executed with one parameter set."""

    notebook: str  # stem, e.g. "01_explanatory_graph"
    parameters: dict[str, Any] = field(default_factory=dict)

    @property
    def run_id(self) -> str:
        return f"{self.notebook}-{config_hash({'notebook': self.notebook, 'parameters': self.parameters}, 10)}"


@dataclass
class Grid:
    profile: str
    runs: list[Run]
    notebook_dir: Path = NOTEBOOK_DIR


def notebook_stems(notebook_dir: Path = NOTEBOOK_DIR) -> list[str]:
    """Stems of the numbered notebooks, in order."""
    return sorted(path.stem for path in notebook_dir.glob("[0-9][0-9]_*.ipynb"))


def _resolve_notebooks(spec: str | Sequence[str], available: Sequence[str]) -> list[str]:
    if spec == "all":
        return list(available)
    if isinstance(spec, str):
        spec = [spec]
    chosen = []
    for item in spec:
        item = str(item)
        matches = [stem for stem in available if stem == item or stem.split("_", 1)[0] == item]
        if not matches:
            raise ValueError(f"unknown notebook {item!r}; available: {', '.join(available)}")
        chosen += matches
    return chosen


def parse_grid(data: dict[str, Any], profile: str | None = None, notebook_dir: Path = NOTEBOOK_DIR) -> Grid:
    """A grid from its YAML mapping (see the module docstring); ``profile`` overrides the file's."""
    unknown = set(data) - {"profile", "notebooks", "parameters", "runs"}
    if unknown:
        raise ValueError(f"unknown grid keys {sorted(unknown)}; allowed: profile, notebooks, parameters, runs")
    profile = check_choice("profile", profile or data.get("profile", "teach"), PROFILES)
    available = notebook_stems(notebook_dir)
    runs: list[Run] = []
    if "notebooks" in data or "parameters" in data:
        parameters = data.get("parameters") or {}
        for key, values in parameters.items():
            if not isinstance(values, list) or not values:
                raise ValueError(f"grid parameter {key!r} needs a non-empty list of values, got {values!r}")
        combos = [dict(zip(parameters, values, strict=True)) for values in itertools.product(*parameters.values())]
        for stem in _resolve_notebooks(data.get("notebooks", "all"), available):
            runs += [Run(stem, combo) for combo in combos]
    for entry in data.get("runs") or []:
        if not isinstance(entry, dict) or "notebook" not in entry:
            raise ValueError(f"each entry of 'runs' needs a 'notebook' key, got {entry!r}")
        for stem in _resolve_notebooks(entry["notebook"], available):
            runs.append(Run(stem, dict(entry.get("parameters") or {})))
    unique = list({run.run_id: run for run in runs}.values())
    if not unique:
        raise ValueError("the grid has no runs")
    return Grid(profile, unique, notebook_dir)


def load_grid(path: str | Path, profile: str | None = None, notebook_dir: Path = NOTEBOOK_DIR) -> Grid:
    """A grid from a YAML file (see the module docstring)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"grid file {path} not found")
    return parse_grid(yaml.safe_load(path.read_text()) or {}, profile, notebook_dir)


def runs_dir(results_root: Path, profile: str) -> Path:
    return results_root / profile / "runs"


def is_complete(run_dir: Path) -> bool:
    status = run_dir / "status.json"
    if not status.is_file():
        return False
    try:
        return json.loads(status.read_text()).get("state") == "done"
    except json.JSONDecodeError:
        return False


def execute_run(run: Run, profile: str, results_root: str, publish: bool, threads: int | None = None,
                notebook_dir: str = str(NOTEBOOK_DIR)) -> dict[str, Any]:
    """Execute one run with papermill into a fresh folder, then move it into place (runs in a worker).

    The kernel sees ``HELPERS_PROFILE``, and ``HELPERS_RESULTS_DIR`` / ``HELPERS_FIGURES_DIR`` pointing into the run
    folder, unless ``publish``: then results go to ``<results_root>/<profile>/`` and figures to the project's
    ``figures/`` (``make reproduce``).
    """
    import papermill

    root = Path(results_root)
    final = runs_dir(root, profile) / run.run_id
    work = final.with_name(f"{run.run_id}.partial-{os.getpid()}-{time.time_ns()}")
    work.mkdir(parents=True)
    env = {"HELPERS_PROFILE": profile, "HELPERS_QUIET": "1"}
    if publish:
        env |= {"HELPERS_RESULTS_DIR": str(root)}
    else:
        env |= {"HELPERS_RESULTS_DIR": str(work / "results"), "HELPERS_FIGURES_DIR": str(work / "figures")}
    if threads:
        env |= {"OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    atomic_write_json(work / "params.json",
                      {"notebook": run.notebook, "profile": profile, "parameters": run.parameters})
    started = time.time()
    status: dict[str, Any] = {"run_id": run.run_id, "notebook": run.notebook, "profile": profile,
                              "parameters": run.parameters, "started": started}
    saved = {key: os.environ.get(key) for key in env}
    os.environ.update(env)
    try:
        papermill.execute_notebook(
            str(Path(notebook_dir) / f"{run.notebook}.ipynb"), str(work / f"{run.notebook}.ipynb"),
            parameters={"PROFILE": profile, **run.parameters}, kernel_name="python3", cwd=notebook_dir,
            progress_bar=False,
        )
        status |= {"state": "done", "seconds": time.time() - started}
    except Exception as error:  # any failure of one run is recorded, the batch goes on
        status |= {"state": "failed", "seconds": time.time() - started, "error": f"{type(error).__name__}: {error}",
                   "traceback": traceback.format_exc()}
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    atomic_write_json(work / "status.json", status)
    if status["state"] == "done":
        if final.exists():  # an incomplete earlier folder is kept aside, never overwritten
            final.rename(final.with_name(f"{run.run_id}.stale-{time.time_ns()}"))
        work.rename(final)
        status["dir"] = str(final)
    else:
        failed = final.with_name(f"{run.run_id}.failed-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}")
        work.rename(failed)
        status["dir"] = str(failed)
    return status


Submit = Callable[[list[Run]], Iterable[dict[str, Any]]]


def _local_submitter(grid: Grid, results_root: Path, publish: bool, workers: int) -> Submit:
    threads = max(1, (os.cpu_count() or 1) // workers)
    args = (grid.profile, str(results_root), publish, threads, str(grid.notebook_dir))

    def submit(runs: list[Run]) -> Iterable[dict[str, Any]]:
        if workers <= 1:
            for run in runs:
                yield execute_run(run, *args)
            return
        with ProcessPoolExecutor(workers) as pool:
            futures = [pool.submit(execute_run, run, *args) for run in runs]
            for future in as_completed(futures):
                yield future.result()

    return submit


def _dask_submitter(address: str, grid: Grid, results_root: Path, publish: bool) -> Submit:
    from distributed import Client
    from distributed import as_completed as dask_completed

    def submit(runs: list[Run]) -> Iterable[dict[str, Any]]:
        with Client(address) as client:
            futures = [client.submit(execute_run, run, grid.profile, str(results_root), publish, None,
                                     str(grid.notebook_dir), pure=False) for run in runs]
            for future in dask_completed(futures):
                yield future.result()

    return submit


def _stage(run: Run) -> int:
    """0: the first stage (performers), 2: the last (tables), 1: every other notebook."""
    return {FIRST_STAGE: 0, LAST_STAGE: LAST}.get(run.notebook.split("_", 1)[0], 1)


def run_grid(grid: Grid, results_root: str | Path = PROJECT_ROOT / "results", workers: int = 1,
             scheduler: str | None = None, publish: bool = False,
             report: Callable[[str], None] = print) -> list[dict[str, Any]]:
    """Execute every incomplete run of ``grid``; returns the statuses of the runs executed now. When any other run
    is executed, the last stage's runs (the tables, which read every results file) are executed again too."""
    results_root = Path(results_root)
    runs_dir(results_root, grid.profile).mkdir(parents=True, exist_ok=True)
    pending = [run for run in grid.runs if not is_complete(runs_dir(results_root, grid.profile) / run.run_id)]
    if any(_stage(run) < LAST for run in pending):
        pending = [run for run in grid.runs if run in pending or _stage(run) == LAST]
    for run in grid.runs:
        if run not in pending:
            report(f"skip   {run.run_id} (complete)")
    if scheduler:
        submit = _dask_submitter(scheduler, grid, results_root, publish)
    else:
        submit = _local_submitter(grid, results_root, publish, workers)
    statuses = []
    for number in range(LAST + 1):
        stage_runs = [run for run in pending if _stage(run) == number]
        for status in submit(stage_runs) if stage_runs else []:
            statuses.append(status)
            report(f"{status['state']:6s} {status['run_id']} ({status['seconds']:.0f} s)"
                   + (f": {status['error']}" if status["state"] == "failed" else ""))
    return statuses


def collect(results_root: str | Path, profile: str) -> list[dict[str, Any]]:
    """Status of every completed or failed run folder of ``profile`` (newest failure per run only)."""
    found = []
    for path in sorted(runs_dir(Path(results_root), profile).glob("*/status.json")):
        if ".partial-" in path.parent.name or ".stale-" in path.parent.name:
            continue
        status = json.loads(path.read_text())
        status["dir"] = str(path.parent)
        found.append(status)
    return found


def _exit_code(statuses: list[dict[str, Any]]) -> int:
    """1 when a run executed now failed, else 0."""
    return int(any(status["state"] == "failed" for status in statuses))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m helpers.batch", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="run a grid: a YAML file, or 'default' = every notebook once, publishing "
                              "results to results/<profile>/ and figures/ (what make reproduce runs)")
    run.add_argument("grid")
    run.add_argument("--profile", choices=sorted(PROFILES))
    run.add_argument("--workers", type=int, default=1, help="parallel worker processes on this machine")
    run.add_argument("--scheduler", help="address of a Dask distributed scheduler (tcp://host:8786)")
    run.add_argument("--results", default=str(PROJECT_ROOT / "results"), help="results root folder")
    run.add_argument("--notebooks", default=str(NOTEBOOK_DIR), help="folder of the numbered notebooks")
    run.add_argument("--publish", action="store_true",
                     help="results JSON and figures go to results/<profile>/ and figures/ (the default grid does)")
    site = commands.add_parser("site", help="HTML export of the executed notebooks with an index page")
    site.add_argument("--profile", choices=sorted(PROFILES), default="teach")
    site.add_argument("--results", default=str(PROJECT_ROOT / "results"))
    args = parser.parse_args(argv)
    if args.command == "site":
        from .site import build_site

        print("wrote", build_site(Path(args.results), args.profile))
        return 0
    if args.workers < 1:
        parser.error("--workers must be >= 1")
    if args.grid == "default":
        grid = parse_grid({"notebooks": "all"}, args.profile, Path(args.notebooks))
        publish = True
    else:
        grid = load_grid(args.grid, args.profile, Path(args.notebooks))
        publish = args.publish
    statuses = run_grid(grid, args.results, args.workers, args.scheduler, publish)
    return _exit_code(statuses)


if __name__ == "__main__":
    sys.exit(main())
