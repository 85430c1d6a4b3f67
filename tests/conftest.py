"""Shared test set-up: caches, figures and results go to a temporary directory; progress bars stay quiet."""

import os

import pytest


@pytest.fixture(autouse=True)
def _isolated_dirs(tmp_path_factory, monkeypatch):
    root = tmp_path_factory.getbasetemp()
    monkeypatch.setenv("HELPERS_DATA_DIR", str(root / "data"))
    monkeypatch.setenv("HELPERS_FIGURES_DIR", str(root / "figures"))
    monkeypatch.setenv("HELPERS_RESULTS_DIR", str(root / "results"))
    monkeypatch.setenv("HELPERS_QUIET", "1")


os.environ.setdefault("HELPERS_QUIET", "1")
