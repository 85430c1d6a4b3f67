"""Notebooks 00-03 at the smoke profile on a tiny Pascal-Part root in the official format (``real_roots``).

The root holds six animal objects (2 dogs and 1 cat in "val", 3 birds in "train"), so a split or a category holds few
or no objects: the notebooks must run to their results file, measuring what the data allows and saying what they
could not measure. About 100 s on two CPU cores (00 trains the performers, 01-03 find them in the cache).
"""

import json
from pathlib import Path

import papermill
import pytest
from real_roots import pascal_root

from helpers.execution import ENGINE

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
STEMS = ("00_data_and_performers", "01_explanatory_graph", "02_interpretable_cnn", "03_explainer")


@pytest.mark.notebooks
def test_notebooks_00_to_03_run_on_a_tiny_pascal_part_root(tmp_path, monkeypatch):
    root = pascal_root(tmp_path / "pascal_part")
    for name in ("data", "results", "figures"):
        monkeypatch.setenv(f"HELPERS_{name.upper()}_DIR", str(tmp_path / name))
    monkeypatch.setenv("HELPERS_PROFILE", "smoke")
    monkeypatch.setenv("HELPERS_STATIC_WIDGETS", "1")  # unattended: widgets draw once, no front-end traffic
    for stem in STEMS:  # in order: 00 trains the performers that 01-03 load from the cache
        papermill.execute_notebook(str(NOTEBOOKS / f"{stem}.ipynb"), str(tmp_path / f"{stem}.ipynb"),
                                   parameters={"DATASET": "pascal_part", "DATA_ROOT": str(root)},
                                   kernel_name="python3", cwd=str(NOTEBOOKS), progress_bar=False,
                                   engine_name=ENGINE, execution_timeout=600)
        results = tmp_path / "results" / "smoke" / f"{stem}.json"
        assert results.exists(), f"{stem} wrote no results file"
        assert json.loads(results.read_text())["dataset"] == "pascal_part"
