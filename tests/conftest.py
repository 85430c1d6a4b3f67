"""Shared test set-up: caches, figures and results go to a temporary directory; progress bars stay quiet."""

import os

import pytest
import torch


@pytest.fixture(autouse=True)
def _isolated_dirs(tmp_path_factory, monkeypatch):
    root = tmp_path_factory.getbasetemp()
    monkeypatch.setenv("HELPERS_DATA_DIR", str(root / "data"))
    monkeypatch.setenv("HELPERS_FIGURES_DIR", str(root / "figures"))
    monkeypatch.setenv("HELPERS_RESULTS_DIR", str(root / "results"))
    monkeypatch.setenv("HELPERS_QUIET", "1")


@pytest.fixture
def one_thread():
    """For tests of tiny tensors: on a busy 2-core machine, thread hand-offs cost more than the work."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


os.environ.setdefault("HELPERS_QUIET", "1")
