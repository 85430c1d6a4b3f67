import hashlib
import subprocess
import sys

import numpy as np
import pytest
import torch

from helpers.config import CATEGORIES
from helpers.data.arrays import PartArrays, load_arrays, materialize
from helpers.data.common import ICNN_PART_GROUPS, merge_part_masks
from helpers.data.synthetic import LANDMARK_NAMES, PART_NAMES, SyntheticParts, multi_category, single_category


def _digest(sample) -> str:
    return hashlib.sha256(sample.image.numpy().tobytes()).hexdigest()


@pytest.fixture(scope="module")
def data():
    return SyntheticParts(CATEGORIES, "train", 3, 3, 64, seed=5)


def test_schema(data):
    assert len(data) == 6 * 3 + 3
    assert data.classes == (*CATEGORIES, "background")
    for i in range(len(data)):
        sample = data[i]
        assert sample.image.shape == (3, 64, 64) and sample.image.dtype == torch.float32
        assert 0.0 <= float(sample.image.min()) and float(sample.image.max()) <= 1.0
        assert data.classes[sample.label] == sample.category
        if sample.is_negative:
            assert sample.landmarks == {} and sample.part_masks == {}
            continue
        assert set(sample.part_masks) == set(PART_NAMES[sample.category])
        assert set(LANDMARK_NAMES) <= set(sample.landmarks)
        for name, mask in sample.part_masks.items():
            assert mask.dtype == torch.bool and mask.shape == (64, 64)
            point = sample.landmarks.get(name)
            if point is not None:  # a visible landmark lies near its part's visible pixels
                ys, xs = np.nonzero(mask.numpy())
                assert ys.min() - 6 <= point[0] <= ys.max() + 6
                assert xs.min() - 6 <= point[1] <= xs.max() + 6
        stacked = torch.stack(list(sample.part_masks.values())).sum(0)
        assert int(stacked.max()) <= 1, "visible part masks must not overlap"


def test_random_access_is_deterministic_and_independent_of_order(data):
    forward = [_digest(data[i]) for i in range(len(data))]
    backward = [_digest(data[i]) for i in reversed(range(len(data)))][::-1]
    assert forward == backward
    assert len(set(forward)) == len(forward)


def test_identical_across_processes(data):
    code = (
        "import hashlib; from helpers.data.synthetic import SyntheticParts; from helpers.config import CATEGORIES; "
        "d = SyntheticParts(CATEGORIES, 'train', 3, 3, 64, seed=5); "
        "print(' '.join(hashlib.sha256(d[i].image.numpy().tobytes()).hexdigest() for i in (0, 7, 20)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == [_digest(data[i]) for i in (0, 7, 20)]


def test_seed_and_split_change_content():
    base = SyntheticParts(("cat",), "train", 2, 0, 64, seed=0)
    assert _digest(base[0]) != _digest(SyntheticParts(("cat",), "train", 2, 0, 64, seed=1)[0])
    assert _digest(base[0]) != _digest(SyntheticParts(("cat",), "test", 2, 0, 64, seed=0)[0])
    # The same instance keeps its content whatever the split sizes (splits are fixed index ranges).
    assert _digest(base[1]) == _digest(SyntheticParts(("cat",), "train", 9, 4, 64, seed=0)[1])


def test_parts_move_relative_to_each_other():
    data = SyntheticParts(("dog",), "train", 40, 0, 64, seed=0)
    offsets = []
    for i in range(len(data)):
        marks = data[i].landmarks
        if marks["head"] is not None and marks["torso"] is not None:
            offsets.append(np.subtract(marks["head"], marks["torso"]))
    offsets = np.array(offsets)
    assert len(offsets) > 30
    assert offsets[:, 0].std() > 2.0 and np.abs(offsets[:, 1]).std() > 2.0
    assert (offsets[:, 1] > 0).any() and (offsets[:, 1] < 0).any(), "both facings occur"


def test_object_fills_half_to_most_of_the_crop():
    data = SyntheticParts(CATEGORIES, "train", 5, 0, 64, seed=2)
    for i in range(len(data)):
        union = torch.stack(list(data[i].part_masks.values())).any(0).numpy()
        ys, xs = np.nonzero(union)
        extent = max(ys.max() - ys.min() + 1, xs.max() - xs.min() + 1) / 64
        assert 0.35 <= extent <= 0.98


def test_materialize_matches_items_in_parallel_and_serial():
    data = single_category("bird", "val", 40, 30, 64, seed=1)
    serial = materialize(data, workers=1)
    parallel = materialize(data, workers=2)
    assert torch.equal(serial.images, parallel.images)
    assert torch.equal(serial.part_labels, parallel.part_labels)
    assert torch.equal(serial.landmarks.nan_to_num(-1), parallel.landmarks.nan_to_num(-1))
    sample = data[5]
    assert torch.equal(serial.images[5], (sample.image * 255).round().to(torch.uint8))
    assert serial.part_mask("head")[5].equal(sample.part_masks["head"])
    head = serial.landmark("head")[5]
    if sample.landmarks["head"] is None:
        assert torch.isnan(head).all()
    else:
        assert torch.allclose(head, torch.tensor(sample.landmarks["head"]))
    assert serial.is_negative.sum() == 30


def test_arrays_cache_round_trip_and_corrupt_file(tmp_path, monkeypatch):
    monkeypatch.setenv("HELPERS_DATA_DIR", str(tmp_path))
    data = multi_category(("cat", "cow"), "test", 4, 64, seed=0)
    first = load_arrays(data, workers=1)
    files = sorted((tmp_path / "cache" / "datasets").glob("*.pt"))
    assert len(files) == 2, "one cached block per category"
    assert first.categories == ["cat"] * 4 + ["cow"] * 4 and first.labels.tolist() == [0] * 4 + [1] * 4
    assert torch.equal(first.images, materialize(data, workers=1).images)
    again = load_arrays(data, workers=1)
    assert torch.equal(first.images, again.images) and again.categories == first.categories
    files[0].write_bytes(b"not a checkpoint")
    with pytest.warns(UserWarning, match="unreadable"):
        rebuilt = load_arrays(data, workers=1)
    assert torch.equal(rebuilt.images, first.images)
    assert isinstance(PartArrays.from_state(torch.load(files[0], weights_only=True)), PartArrays)


def test_single_and_multi_category_data_share_cached_blocks(tmp_path, monkeypatch):
    monkeypatch.setenv("HELPERS_DATA_DIR", str(tmp_path))
    load_arrays(multi_category(("cat", "cow"), "train", 3, 64, seed=0), workers=1)
    single = load_arrays(single_category("cow", "train", 3, 2, 64, seed=0), workers=1)
    assert len(list((tmp_path / "cache" / "datasets").glob("*.pt"))) == 3, "cow reused, negatives added"
    assert single.classes == ("cow", "background") and single.labels.tolist() == [0, 0, 0, 1, 1]
    assert torch.equal(single.images, materialize(single_category("cow", "train", 3, 2, 64, seed=0), workers=1).images)


def test_merged_groups_cover_the_same_pixels():
    data = SyntheticParts(("cat", "bird"), "train", 2, 0, 64, seed=0)
    arrays = materialize(data, workers=1)
    for i in range(len(data)):
        sample = data[i]
        groups = ICNN_PART_GROUPS[sample.category]
        merged = merge_part_masks(sample.part_masks, groups)
        names, labels = arrays.merged_part_labels(groups)
        for g, name in enumerate(names):
            if name in merged:
                assert torch.equal(labels[i] == g + 1, merged[name])
        second = "wings" if sample.category == "bird" else "neck"
        assert torch.equal(merged["torso"], sample.part_masks["torso"] | sample.part_masks[second])


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"categories": ("zebra",)}, "allowed values: 'bird'"),
        ({"split": "dev"}, "allowed values: 'train', 'val', 'test'"),
        ({"n_per_category": -2}, "n_per_category must be >= 0"),
        ({"image_size": 0}, "image_size must be > 0"),
        ({"image_size": 8}, "at least 16 pixels"),
    ],
)
def test_invalid_parameters_fail_at_once(kwargs, message):
    with pytest.raises(ValueError, match=message):
        SyntheticParts(**kwargs)


def test_index_out_of_range():
    with pytest.raises(IndexError):
        SyntheticParts(("cat",), "train", 2, 0, 64)[2]
