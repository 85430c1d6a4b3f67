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
import shutil
import socket
import sys
import time
import traceback
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from . import parameters as knobs
from .config import PROFILES, PROJECT_ROOT, check_choice, figures_dir
from .io import atomic_copy, atomic_write_json, config_hash

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
    runs = _checked_runs(runs, notebook_dir, explicit=len(data.get("runs") or []))
    unique = list({run.run_id: run for run in runs}.values())
    if not unique:
        raise ValueError("the grid has no runs")
    return Grid(profile, unique, notebook_dir)


def declared_parameters(notebook: Path) -> list[str]:
    """The names the notebook's ``parameters`` cell declares (as papermill reads them)."""
    from papermill import inspect_notebook

    return list(inspect_notebook(str(notebook)))


def _checked_runs(runs: list[Run], notebook_dir: Path, explicit: int) -> list[Run]:
    """Every run's parameters checked against its notebook: a name of the ``parameters:`` product is passed to the
    notebooks that declare it and must be declared by one of them; a name of an explicit run (the last ``explicit``
    runs) must be declared by its notebook. Values are checked by :mod:`helpers.parameters`."""
    declared = {run.notebook: declared_parameters(notebook_dir / f"{run.notebook}.ipynb") for run in runs}
    product, named = runs[:len(runs) - explicit], runs[len(runs) - explicit:]
    unknown = sorted({name for run in product for name in run.parameters}
                     - {name for run in product for name in declared[run.notebook]})
    if unknown:
        raise knobs.ParameterError(
            f"grid parameter(s) {', '.join(unknown)} are declared by none of the grid's notebooks; they declare: "
            + "; ".join(f"{stem}: {', '.join(declared[stem])}" for stem in dict.fromkeys(r.notebook for r in product)))
    checked = []
    for run in product + named:
        given = run.parameters if run in named else {k: v for k, v in run.parameters.items()
                                                     if k in declared[run.notebook]}
        extra = [name for name in given if name not in declared[run.notebook]]
        if extra:
            raise knobs.ParameterError(f"{run.notebook} has no parameter {', '.join(extra)}; it declares: "
                                       f"{', '.join(declared[run.notebook])}")
        table = knobs.knobs(run.notebook) if run.notebook[:2] in knobs.KNOBS else {}
        values = {name: table[name].check(name, value) if name in table and value is not None else value
                  for name, value in given.items()}
        checked.append(Run(run.notebook, values))
    return checked


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


def _partial_name(run_id: str) -> str:
    return f"{run_id}.partial-{socket.gethostname()}-{os.getpid()}-{time.time_ns()}"


def _attempt(run: Run, profile: str, root: Path, work: Path, threads: int | None, notebook_dir: Path,
             cell_timeout_s: int | None) -> None:
    """One papermill execution of ``run`` into ``work``; the kernel writes results and figures inside ``work``."""
    from .execution import execute_notebook

    env = {"HELPERS_PROFILE": profile, "HELPERS_QUIET": "1", "HELPERS_STATIC_WIDGETS": "1",
           "HELPERS_RESULTS_DIR": str(work / "results"),
           "HELPERS_FIGURES_DIR": str(work / "figures"), "HELPERS_PUBLISHED_DIR": str(root)}
    if threads:
        env |= {"OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    saved = {key: os.environ.get(key) for key in env}
    os.environ.update(env)
    try:
        execute_notebook(notebook_dir / f"{run.notebook}.ipynb", work / f"{run.notebook}.ipynb",
                         {"PROFILE": profile, **run.parameters}, profile, notebook_dir, cell_timeout_s)
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def publish_run(run_dir: Path, notebook: str, profile: str, root: Path) -> list[Path]:
    """Copy a completed run's results JSON to ``<root>/<profile>/`` and its figures to ``figures/<profile>/``
    (each file atomically); returns the files written."""
    written = []
    result = run_dir / "results" / profile / f"{notebook}.json"
    if result.is_file():
        written.append(atomic_copy(result, root / profile / result.name))
    for figure in sorted((run_dir / "figures").glob("*.png")):
        written.append(atomic_copy(figure, figures_dir(profile) / figure.name))
    return written


def execute_run(run: Run, profile: str, results_root: str, publish: bool, threads: int | None = None,
                notebook_dir: str = str(NOTEBOOK_DIR), cell_timeout_s: int | None = None) -> dict[str, Any]:
    """Execute one run with papermill into a fresh folder, then move it into place (runs in a worker).

    The kernel writes its results JSON and figures inside the run folder. Only a run that completed is published
    (``publish``: results to ``<results_root>/<profile>/``, figures to ``figures/<profile>/``), so a failing run
    never replaces a good result. A run that stalls (a cell past its execution timeout, a dead kernel) is kept as
    ``<run-id>.stalled-<time>/`` and retried once. ``cell_timeout_s``: each cell's execution timeout (default: the
    profile's, :func:`helpers.execution.cell_timeout_s`).
    """
    from .execution import NotebookStalled

    root = Path(results_root)
    final = runs_dir(root, profile) / run.run_id
    started = time.time()
    status: dict[str, Any] = {"run_id": run.run_id, "notebook": run.notebook, "profile": profile,
                              "parameters": run.parameters, "started": started, "stalls": []}
    for attempt in (1, 2):
        work = final.with_name(_partial_name(run.run_id))
        work.mkdir(parents=True)
        atomic_write_json(work / "params.json",
                          {"notebook": run.notebook, "profile": profile, "parameters": run.parameters})
        try:
            _attempt(run, profile, root, work, threads, Path(notebook_dir), cell_timeout_s)
            status |= {"state": "done"}
        except NotebookStalled as error:
            status["stalls"].append(str(error))
            if attempt == 1:
                work.rename(final.with_name(f"{run.run_id}.stalled-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"))
                continue
            status |= {"state": "failed", "error": f"stalled twice: {error}", "traceback": traceback.format_exc()}
        except Exception as error:  # any failure of one run is recorded, the batch goes on
            status |= {"state": "failed", "error": f"{type(error).__name__}: {error}",
                       "traceback": traceback.format_exc()}
        break
    status |= {"seconds": time.time() - started, "attempts": attempt}
    atomic_write_json(work / "status.json", status)
    if status["state"] == "done":
        if final.exists():  # an incomplete earlier folder is kept aside, never overwritten
            final.rename(final.with_name(f"{run.run_id}.stale-{time.time_ns()}"))
        work.rename(final)
        status["dir"] = str(final)
        if publish:
            status["published"] = [str(path) for path in publish_run(final, run.notebook, profile, root)]
    else:
        failed = final.with_name(f"{run.run_id}.failed-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}")
        work.rename(failed)
        status["dir"] = str(failed)
    return status


def clean_partials(folder: Path, report: Callable[[str], None] = print) -> list[Path]:
    """Remove the ``.partial-*`` folders that a process of this host left when it died; report the others.

    Returns the folders removed. A partial folder is named ``<run-id>.partial-<host>-<pid>-<ns>``; one whose process
    still runs (or that another host made) is left alone.
    """
    removed = []
    host = socket.gethostname()
    for path in sorted(folder.glob("*.partial-*")):
        owner_host, _, rest = path.name.split(".partial-", 1)[1].rpartition("-")[0].rpartition("-")
        pid = int(rest) if rest.isdigit() else -1
        if owner_host == host and pid > 0 and not _alive(pid):
            shutil.rmtree(path)
            removed.append(path)
            report(f"clean  {path.name} (left by process {pid}, which has ended)")
        else:
            report(f"note   {path.name} is in progress elsewhere or from another host; left alone")
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


Submit = Callable[[list[Run]], Iterable[dict[str, Any]]]


def _local_submitter(grid: Grid, results_root: Path, publish: bool, workers: int, cell_timeout_s: int | None
                     ) -> Submit:
    threads = max(1, (os.cpu_count() or 1) // workers)
    args = (grid.profile, str(results_root), publish, threads, str(grid.notebook_dir), cell_timeout_s)

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


def _dask_submitter(address: str, grid: Grid, results_root: Path, publish: bool, cell_timeout_s: int | None
                    ) -> Submit:
    from distributed import Client
    from distributed import as_completed as dask_completed

    def submit(runs: list[Run]) -> Iterable[dict[str, Any]]:
        with Client(address) as client:
            futures = [client.submit(execute_run, run, grid.profile, str(results_root), publish, None,
                                     str(grid.notebook_dir), cell_timeout_s, pure=False) for run in runs]
            for future in dask_completed(futures):
                yield future.result()

    return submit


def _stage(run: Run) -> int:
    """0: the first stage (performers), 2: the last (tables), 1: every other notebook."""
    return {FIRST_STAGE: 0, LAST_STAGE: LAST}.get(run.notebook.split("_", 1)[0], 1)


def run_grid(grid: Grid, results_root: str | Path = PROJECT_ROOT / "results", workers: int = 1,
             scheduler: str | None = None, publish: bool = False,
             report: Callable[[str], None] = print, cell_timeout_s: int | None = None) -> list[dict[str, Any]]:
    """Execute every incomplete run of ``grid``; returns the statuses of the runs executed now. When any other run
    is executed, the last stage's runs (the tables, which read every results file) are executed again too."""
    results_root = Path(results_root)
    runs_dir(results_root, grid.profile).mkdir(parents=True, exist_ok=True)
    clean_partials(runs_dir(results_root, grid.profile), report)
    pending = [run for run in grid.runs if not is_complete(runs_dir(results_root, grid.profile) / run.run_id)]
    if any(_stage(run) < LAST for run in pending):
        pending = [run for run in grid.runs if run in pending or _stage(run) == LAST]
    for run in grid.runs:
        if run not in pending:
            report(f"skip   {run.run_id} (complete)")
    if scheduler:
        submit = _dask_submitter(scheduler, grid, results_root, publish, cell_timeout_s)
    else:
        submit = _local_submitter(grid, results_root, publish, workers, cell_timeout_s)
    statuses = []
    for number in range(LAST + 1):
        stage_runs = [run for run in pending if _stage(run) == number]
        if stage_runs:
            report(f"start  {', '.join(run.run_id for run in stage_runs)}")
        for status in submit(stage_runs) if stage_runs else []:
            statuses.append(status)
            for stall in status.get("stalls", []):
                report(f"stall  {status['run_id']}: {stall}")
            report(f"{status['state']:6s} {status['run_id']} ({status['seconds']:.0f} s"
                   + (f", {status['attempts']} attempts" if status.get("attempts", 1) > 1 else "") + ")"
                   + (f": {status['error']}" if status["state"] == "failed" else ""))
    return statuses


def collect(results_root: str | Path, profile: str) -> list[dict[str, Any]]:
    """Status of every completed or failed run folder of ``profile`` (newest failure per run only)."""
    found = []
    for path in sorted(runs_dir(Path(results_root), profile).glob("*/status.json")):
        if any(mark in path.parent.name for mark in (".partial-", ".stale-", ".stalled-")):
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
    run.add_argument("--cell-timeout", type=int, help="execution timeout of one cell in seconds (default: the "
                     "profile's: smoke 600, teach 3600, paper 21600); a run that passes it is retried once")
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
    if args.cell_timeout is not None and args.cell_timeout < 1:
        parser.error("--cell-timeout must be >= 1")
    statuses = run_grid(grid, args.results, args.workers, args.scheduler, publish, cell_timeout_s=args.cell_timeout)
    return _exit_code(statuses)


if __name__ == "__main__":
    sys.exit(main())
