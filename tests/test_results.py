"""The end of every notebook: a failing run never replaces the last good results file; figures are filed by
profile and stamped with the profile and seed; the gallery takes whatever samples a dataset has."""

import json
import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from helpers import config, viz  # noqa: E402
from helpers.data.common import PartSample  # noqa: E402
from helpers.results import claim, finish  # noqa: E402


def _finish(profile: str, value: float, holds: bool) -> Path:
    return finish("00_x", profile, {}, 0, "synthetic", "small_vgg", {"v": value}, {},
                  [claim("v is small", value, None, holds)], {}, finite=[value])


def test_a_failing_run_keeps_the_last_good_results():
    good = _finish("teach", 0.5, True)
    assert good.name == "00_x.json" and json.loads(good.read_text())["metrics"] == {"v": 0.5}
    with pytest.raises(AssertionError, match="claim fails: v is small"):
        _finish("teach", 0.7, False)
    assert json.loads(good.read_text())["metrics"] == {"v": 0.5}, "the good file is untouched"
    failed = good.with_name("00_x.failed.json")
    record = json.loads(failed.read_text())
    assert record["metrics"] == {"v": 0.7} and record["notebook"] == "00_x"
    with pytest.raises(AssertionError, match="1 of 1 checked values are not finite"):
        _finish("smoke", float("nan"), True)
    assert _finish("smoke", 0.9, False).name == "00_x.json", "smoke only proves the code runs: claims may fail"
    _finish("teach", 0.4, True)
    assert not failed.exists(), "a passing run removes the failed run's record"


def test_figures_are_filed_by_profile_and_stamped(monkeypatch):
    monkeypatch.delenv("HELPERS_FIGURES_DIR")
    monkeypatch.setattr(config, "PROJECT_ROOT", Path(os.environ["HELPERS_DATA_DIR"]).parent / "project")
    config.activate("teach", 7)
    fig, ax = plt.subplots()
    ax.plot([0, 1])
    path = viz.save(fig, "00_line")
    assert path == config.PROJECT_ROOT / "figures" / "teach" / "00_line.png" and path.stat().st_size > 0
    assert [text.get_text() for text in fig.texts] == ["profile teach \u00b7 seed 7"]
    config.activate("smoke", 0)
    assert viz.save(fig, "00_line").parent.name == "smoke"
    plt.close(fig)


def _sample(label: int) -> PartSample:
    return PartSample(torch.zeros(3, 4, 4), label, f"class {label}")


class Labels:
    def __init__(self, labels: list[int]) -> None:
        self.labels = labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> PartSample:
        if not 0 <= i < len(self.labels):
            raise IndexError(i)
        return _sample(self.labels[i])


def test_gallery_samples_take_what_the_dataset_has():
    picked = viz.samples_per_class(Labels([0, 0, 0, 1, 2, 2]), per_class=2)
    assert [s.label for s in picked] == [0, 1, 2, 0, 2], "row by row: the first of each, then the second"
    assert [s.label for s in viz.samples_per_class(Labels([1, 1]), per_class=2)] == [1, 1]
    # background images sit at the end of a long dataset: they are still found
    tail = viz.samples_per_class(Labels([0] * 100 + [5]), per_class=1, scan=10)
    assert [s.label for s in tail] == [0, 5]


def test_atomic_writes_get_the_permissions_of_an_ordinary_write(tmp_path):
    from helpers.io import atomic_write_text

    (tmp_path / "plain.txt").write_text("x")
    written = atomic_write_text(tmp_path / "atomic.txt", "x")
    assert written.stat().st_mode & 0o777 == (tmp_path / "plain.txt").stat().st_mode & 0o777
