from pathlib import Path

import pytest
import torch

from helpers import config
from helpers.data import open_dataset
from helpers.data.arrays import materialize
from helpers.data.select import WithNegatives
from helpers.data.synthetic import SyntheticParts

CUB_MINI = Path(__file__).parent / "fixtures" / "cub_mini"


def test_synthetic_is_the_default():
    settings = config.resolve("smoke")
    data = open_dataset(settings, "test", ("cat",), 3, 2)
    assert isinstance(data, SyntheticParts) and len(data) == 5 and data.classes == ("cat", "background")


def test_real_dataset_needs_a_root():
    settings = config.resolve("smoke", dataset="cub200", categories=("bird",))
    with pytest.raises(ValueError, match="needs DATA_ROOT"):
        open_dataset(settings, "test", ("bird",), 3)


def test_unknown_dataset_is_refused():
    with pytest.raises(ValueError, match="'synthetic', 'cub200', 'pascal_part', 'ilsvrc_part'"):
        config.resolve("smoke", dataset="imagenet")


def test_cub_with_procedural_negatives():
    settings = config.resolve("smoke", dataset="cub200", data_root=str(CUB_MINI), image_size=64)
    positives = open_dataset(settings, "train", ("bird",), 100)
    data = open_dataset(settings, "train", ("bird",), 100, n_negatives=3)
    assert isinstance(data, WithNegatives)
    assert len(data) == len(positives) + 3 and data.classes == ("bird", "background")
    arrays = materialize(data, workers=1)
    assert arrays.labels.tolist() == [0] * len(positives) + [1] * 3
    assert arrays.is_negative.tolist() == [False] * len(positives) + [True] * 3
    assert torch.equal(arrays.images[: len(positives)], materialize(positives, workers=1).images)
    assert "negatives" in data.config() and data.config()["dataset"] == "cub200"
    with pytest.raises(ValueError, match="birds only"):
        open_dataset(settings, "train", ("cat",), 100)
