"""The batch runner on tiny notebooks: grids, skipping completed runs, failures recorded, stalls retried, results
published only by completed runs, Dask, the HTML site."""

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook

from helpers.batch import clean_partials, collect, is_complete, main, parse_grid, run_grid, runs_dir
from helpers.parameters import ParameterError
from helpers.site import build_site

WRITER = """
from helpers.results import claim, write_results
write_results(NAME, PROFILE, {"X": X}, 0, "none", "none", {"x": X}, {}, [claim("x is small", X, None, X < 2)], {})
"""


def _notebook(path: Path, body: str) -> None:
    nb = new_notebook()
    params = new_code_cell('import os\nPROFILE = os.environ.get("HELPERS_PROFILE", "teach")\nX = 0')
    params.metadata["tags"] = ["parameters"]
    nb.cells = [params, new_code_cell(body)]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)


@pytest.fixture
def notebooks(tmp_path):
    folder = tmp_path / "notebooks"
    folder.mkdir()
    _notebook(folder / "00_first.ipynb", 'NAME = "00_first"' + WRITER)
    _notebook(folder / "01_second.ipynb", 'assert X != 2, "two is refused"\nNAME = "01_second"' + WRITER)
    return folder


def test_parse_grid_product_runs_and_errors(notebooks):
    grid = parse_grid({"notebooks": ["00"], "parameters": {"X": [1, 2]},
                       "runs": [{"notebook": "01_second", "parameters": {"X": 5}}]}, "smoke", notebooks)
    assert [(r.notebook, r.parameters) for r in grid.runs] == [
        ("00_first", {"X": 1}), ("00_first", {"X": 2}), ("01_second", {"X": 5})]
    assert grid.profile == "smoke" and len({r.run_id for r in grid.runs}) == 3
    with pytest.raises(ValueError, match="unknown notebook '07'; available: 00_first, 01_second"):
        parse_grid({"notebooks": ["07"]}, "smoke", notebooks)
    with pytest.raises(ValueError, match="unknown grid keys"):
        parse_grid({"notebook": "all"}, "smoke", notebooks)
    with pytest.raises(ValueError, match="needs a non-empty list"):
        parse_grid({"parameters": {"X": 3}}, "smoke", notebooks)
    with pytest.raises(ValueError, match="allowed values"):
        parse_grid({}, "huge", notebooks)
    with pytest.raises(ParameterError, match="SEEED are declared by none of the grid's notebooks.*00_first: "
                                             "PROFILE, X"):
        parse_grid({"parameters": {"SEEED": [0]}}, "smoke", notebooks)
    with pytest.raises(ParameterError, match="01_second has no parameter Y"):
        parse_grid({"runs": [{"notebook": "01", "parameters": {"Y": 1}}]}, "smoke", notebooks)


def test_grid_values_are_checked_against_the_project_notebooks():
    with pytest.raises(ParameterError, match="TEMPLATES must be an integer >= 1, got -3"):
        parse_grid({"notebooks": ["04"], "parameters": {"TEMPLATES": [-3]}}, "smoke")
    with pytest.raises(ParameterError, match="SEEED"):
        parse_grid({"notebooks": ["02"], "parameters": {"SEEED": [0]}}, "smoke")
    grid = parse_grid({"notebooks": ["02", "05"], "parameters": {"CATEGORIES": ['["cow", "dog"]']}}, "smoke")
    assert {r.notebook: r.parameters for r in grid.runs} == {"02_interpretable_cnn": {"CATEGORIES": ["cow", "dog"]},
                                                             "05_paper_tables": {}}, "05 has no CATEGORIES"


def test_run_skip_fail_and_resume(notebooks, tmp_path):
    results = tmp_path / "results"
    grid = parse_grid({"notebooks": "all", "parameters": {"X": [1, 2]}}, "smoke", notebooks)
    statuses = run_grid(grid, results, workers=2, report=lambda _: None)
    states = {(s["notebook"], s["parameters"]["X"]): s for s in statuses}
    assert {k: s["state"] for k, s in states.items()} == {
        ("00_first", 1): "done", ("00_first", 2): "done", ("01_second", 1): "done", ("01_second", 2): "failed"}
    assert "two is refused" in states[("01_second", 2)]["error"]
    # notebook 00 runs finish before any other run starts
    assert max(states[("00_first", x)]["started"] + states[("00_first", x)]["seconds"] for x in (1, 2)) <= min(
        states[("01_second", x)]["started"] for x in (1, 2))
    done = Path(states[("00_first", 2)]["dir"])
    assert is_complete(done) and done.parent == runs_dir(results, "smoke")
    assert json.loads((done / "results" / "smoke" / "00_first.json").read_text())["metrics"] == {"x": 2}
    assert (done / "00_first.ipynb").is_file()

    marker = done / "00_first.ipynb"
    before = marker.stat().st_mtime_ns
    messages = []
    again = run_grid(grid, results, workers=1, report=messages.append)
    assert [s["notebook"] for s in again] == ["01_second"], "only the failed run is retried"
    assert sum(m.startswith("skip") for m in messages) == 3
    assert marker.stat().st_mtime_ns == before, "completed runs are not redone"
    failures = sorted(runs_dir(results, "smoke").glob("*.failed-*"))
    assert len(failures) == 2, "each failed attempt is kept"
    assert {json.loads((f / "status.json").read_text())["state"] for f in failures} == {"failed"}

    site = build_site(results, "smoke")
    index = site.read_text()
    assert index.count("<tr>") == 1 + 3 + 2  # header, three completed runs, two failed attempts
    assert "failed" in index and "1/1 hold" in index and "0/1 hold" in index
    assert all((site.parent / f"{Path(s['dir']).name}.html").is_file() for s in collect(results, "smoke"))
    page = (site.parent / f"{Path(states[('00_first', 2)]['dir']).name}.html").read_text()
    assert '<script src="mathjax/MathJax.js?config=' in page and "ajax/libs/mathjax" not in page
    assert page.index('webFont: "STIX-Web"') < page.index("mathjax/MathJax.js"), "fonts set before MathJax loads"
    assert (site.parent / "mathjax" / "MathJax.js").is_file()
    assert (site.parent / "mathjax" / "fonts" / "HTML-CSS" / "STIX-Web" / "woff").is_dir()
    assert "jupyter lab notebooks/00_first.ipynb" in page and "-p X 2" in page


def test_tables_are_redone_when_another_run_is(notebooks, tmp_path):
    _notebook(notebooks / "05_tables.ipynb", 'NAME = "05_tables"' + WRITER)
    results = tmp_path / "results"
    grid = parse_grid({"notebooks": "all", "parameters": {"X": [1]}}, "smoke", notebooks)
    assert sorted(s["notebook"] for s in run_grid(grid, results, report=lambda _: None)) == [
        "00_first", "01_second", "05_tables"]
    assert run_grid(grid, results, report=lambda _: None) == [], "nothing to do: the tables are not redone"
    second = next(r for r in grid.runs if r.notebook == "01_second")
    (runs_dir(results, "smoke") / second.run_id / "status.json").unlink()  # as if it had been killed
    again = run_grid(grid, results, report=lambda _: None)
    assert [s["notebook"] for s in again] == ["01_second", "05_tables"], "the tables read the new results"
    assert again[1]["started"] >= again[0]["started"] + again[0]["seconds"]
    assert len(list(runs_dir(results, "smoke").glob("05_tables-*.stale-*"))) == 1, "the old tables are kept"


def test_interrupted_run_is_redone_without_losing_the_leftover(notebooks, tmp_path):
    results = tmp_path / "results"
    grid = parse_grid({"notebooks": ["00"], "parameters": {"X": [1]}}, "smoke", notebooks)
    leftover = runs_dir(results, "smoke") / grid.runs[0].run_id
    leftover.mkdir(parents=True)
    (leftover / "half-written.ipynb").write_text("{")
    statuses = run_grid(grid, results, report=lambda _: None)
    assert statuses[0]["state"] == "done" and is_complete(leftover)
    assert len(list(runs_dir(results, "smoke").glob("*.stale-*/half-written.ipynb"))) == 1


def test_dask_cluster_on_loopback(notebooks, tmp_path):
    from distributed import LocalCluster

    results = tmp_path / "results"
    grid = parse_grid({"notebooks": "all", "parameters": {"X": [1]}}, "smoke", notebooks)
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address=None) as cluster:
        statuses = run_grid(grid, results, scheduler=cluster.scheduler_address, report=lambda _: None)
    assert sorted(s["state"] for s in statuses) == ["done", "done"]
    assert all(is_complete(Path(s["dir"])) for s in statuses)


def test_command_line_reports_failure(notebooks, tmp_path):
    grid_file = tmp_path / "grid.yaml"
    grid_file.write_text("notebooks: ['01']\nparameters:\n  X: [2]\n")
    args = ["--profile", "smoke", "--results", str(tmp_path / "r"), "--notebooks", str(notebooks)]
    assert main(["run", str(grid_file), *args]) == 1
    assert main(["run", "default", *args]) == 0
    assert (tmp_path / "r" / "smoke" / "00_first.json").is_file(), "the default grid publishes its results"
    with pytest.raises(FileNotFoundError, match="grid file"):
        main(["run", str(tmp_path / "missing.yaml"), "--results", str(tmp_path / "r")])


def test_a_stalled_run_names_its_cell_and_is_retried_once(notebooks, tmp_path):
    _notebook(notebooks / "02_sleeper.ipynb", "import time\nif X == 3:\n    time.sleep(120)")
    grid = parse_grid({"notebooks": ["02"], "parameters": {"X": [3]}}, "smoke", notebooks)
    messages = []
    begin = time.monotonic()
    [status] = run_grid(grid, tmp_path / "results", report=messages.append, cell_timeout_s=2)
    assert time.monotonic() - begin < 60, "the cell timeout ended both attempts"
    assert status["state"] == "failed" and status["attempts"] == 2
    assert "stalled twice: notebook 02_sleeper.ipynb: cell 2 ('import time') ran past its 2 s" in status["error"]
    assert sum(m.startswith("stall") for m in messages) == 2
    folders = runs_dir(tmp_path / "results", "smoke")
    assert len(list(folders.glob("*.stalled-*"))) == 1 and len(list(folders.glob("*.failed-*"))) == 1


def test_only_completed_runs_publish_results_and_figures(tmp_path):
    folder = tmp_path / "notebooks"
    folder.mkdir()
    _notebook(folder / "00_first.ipynb", 'NAME = "00_first"' + WRITER + """
from helpers.config import figures_dir
(figures_dir() / "00_first.png").write_text(str(X))
assert X != 2, "fails after writing its results"
""")
    results, figures = tmp_path / "results", Path(os.environ["HELPERS_FIGURES_DIR"])
    published = results / "smoke" / "00_first.json"
    good = run_grid(parse_grid({"parameters": {"X": [1]}}, "smoke", folder), results, publish=True,
                    report=lambda _: None)
    assert good[0]["state"] == "done" and json.loads(published.read_text())["metrics"] == {"x": 1}
    assert (figures / "00_first.png").read_text() == "1"
    bad = run_grid(parse_grid({"parameters": {"X": [2]}}, "smoke", folder), results, publish=True,
                   report=lambda _: None)
    assert bad[0]["state"] == "failed" and "fails after writing" in bad[0]["error"]
    assert json.loads(published.read_text())["metrics"] == {"x": 1}, "the failed run did not replace the result"
    assert (figures / "00_first.png").read_text() == "1", "nor the figure"
    failed = Path(bad[0]["dir"])
    assert json.loads((failed / "results" / "smoke" / "00_first.json").read_text())["metrics"] == {"x": 2}


def test_stale_partial_folders_are_cleaned(tmp_path):
    ended = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(ended.stdout)
    host = socket.gethostname()
    (tmp_path / f"00_x-abc.partial-{host}-{dead_pid}-1").mkdir()
    (tmp_path / f"00_x-abc.partial-{host}-{os.getpid()}-2").mkdir()  # this process: still running
    (tmp_path / "00_x-abc.partial-elsewhere-1-3").mkdir()
    messages = []
    removed = clean_partials(tmp_path, messages.append)
    assert [path.name for path in removed] == [f"00_x-abc.partial-{host}-{dead_pid}-1"]
    assert sorted(path.name for path in tmp_path.iterdir()) == sorted([
        f"00_x-abc.partial-{host}-{os.getpid()}-2", "00_x-abc.partial-elsewhere-1-3"])
    assert sum(m.startswith("clean") for m in messages) == 1 and sum(m.startswith("note") for m in messages) == 2
