"""Pascal-Part reader on the real annotation files in tests/fixtures/pascal_part/Annotations_Part.

Inspected with scipy.io.loadmat: 2008_003497 has two dogs (318x500), 2008_006462 one cat (375x500), 2010_000145 a
boat without parts, 2010_005511 three birds (500x333): six animal objects with parts.
"""

import hashlib
import shutil
from pathlib import Path

import numpy as np
import pytest
import scipy.io
import torch
from PIL import Image
from real_roots import PASCAL_ANNOTATIONS as ANNOTATIONS
from real_roots import pascal_root

from helpers.data import synthetic
from helpers.data.pascal_part import (
    PART_NAME_MAP,
    PART_NAMES,
    PascalObject,
    PascalPartAnimals,
    merge_parts,
    read_annotation,
)
from helpers.data.root_check import DatasetRootError, part_landmark

EXPECTED = {  # file -> [(class, raw part names in file order)]
    "2008_003497": [
        ("dog", ["head", "lear", "rear", "torso", "lfleg", "lfpa", "rfleg", "rfpa", "lbleg", "rbleg", "rbpa", "tail"]),
        ("dog", ["head", "lear", "rear", "leye", "muzzle", "nose", "torso", "neck", "lfleg", "lfpa", "lbleg", "rbleg",
                 "tail"]),
    ],
    "2008_006462": [("cat", ["head", "lear", "rear", "leye", "reye", "nose", "torso", "lfleg", "lfpa"])],
    "2010_000145": [("boat", [])],
    "2010_005511": [
        ("bird", ["head", "reye", "beak", "torso", "neck", "lleg", "lfoot"]),
        ("bird", ["head", "reye", "beak", "torso", "neck", "lleg", "rleg"]),
        ("bird", ["head", "torso", "neck", "lleg", "rleg", "tail"]),
    ],
}
SHAPES = {"2008_003497": (318, 500), "2008_006462": (375, 500), "2010_000145": (375, 500), "2010_005511": (500, 333)}
# The spec's merged groups for the fixture categories, written out independently of the reader's table.
GROUPS = {
    "dog": {"head": {"head", "leye", "reye", "lear", "rear", "nose", "muzzle"}, "neck": {"neck"}, "torso": {"torso"},
            "frontal_legs": {"lfleg", "lfpa", "rfleg", "rfpa"}, "back_legs": {"lbleg", "lbpa", "rbleg", "rbpa"},
            "tail": {"tail"}},
    "bird": {"head": {"head", "leye", "reye", "beak"}, "neck": {"neck"}, "torso": {"torso"},
             "wings": {"lwing", "rwing"}, "legs": {"lleg", "lfoot", "rleg", "rfoot"}, "tail": {"tail"}},
}
GROUPS["cat"] = {name: parts - {"muzzle"} for name, parts in GROUPS["dog"].items()}
SIZE = 64


def _raw_objects(image_id: str) -> list:
    """The objects of a fixture file, straight from scipy."""
    return list(scipy.io.loadmat(ANNOTATIONS / f"{image_id}.mat")["anno"][0, 0]["objects"].ravel())


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    return pascal_root(tmp_path_factory.mktemp("pascal"))


@pytest.mark.parametrize("image_id", sorted(EXPECTED))
def test_fixture_files_parse(image_id: str):
    annotation = read_annotation(ANNOTATIONS / f"{image_id}.mat")
    assert annotation.imname == image_id
    assert [(o.category, [name for name, _ in o.parts]) for o in annotation.objects] == EXPECTED[image_id]
    for obj, raw in zip(annotation.objects, _raw_objects(image_id), strict=True):
        assert obj.mask.shape == SHAPES[image_id] and obj.mask.dtype == bool
        assert np.array_equal(obj.mask, raw["mask"] > 0)
        for (_, mask), raw_part in zip(obj.parts, raw["parts"].ravel(), strict=True):
            assert np.array_equal(mask, raw_part["mask"] > 0)


def test_name_map_covers_the_spec_and_uses_synthetic_names():
    spec = {
        "bird": "head leye reye beak torso neck lwing rwing lleg lfoot rleg rfoot tail",
        "cat": "head leye reye lear rear nose torso neck lfleg lfpa rfleg rfpa lbleg lbpa rbleg rbpa tail",
        "cow": "head leye reye lear rear muzzle lhorn rhorn torso neck lfuleg lflleg rfuleg rflleg lbuleg lblleg "
               "rbuleg rblleg tail",
        "horse": "head leye reye lear rear muzzle torso neck lfuleg lflleg rfuleg rflleg lbuleg lblleg rbuleg rblleg "
                 "tail lfho rfho lbho rbho",
    }
    spec["dog"] = spec["cat"] + " muzzle"
    spec["sheep"] = spec["cow"]
    for category, names in spec.items():
        assert set(PART_NAME_MAP[category]) == set(names.split()), category
        assert set(PART_NAME_MAP[category].values()) == set(PART_NAMES[category]), category
        assert set(synthetic.PART_NAMES[category]) <= set(PART_NAMES[category])
    assert PART_NAME_MAP["dog"]["muzzle"] == "head" and PART_NAME_MAP["cow"]["lhorn"] == "head"
    assert PART_NAME_MAP["horse"]["lbho"] == "back_legs" and PART_NAME_MAP["bird"]["rfoot"] == "legs"
    assert PART_NAME_MAP["bird"]["lwing"] == "wings" and PART_NAME_MAP["cat"]["rfpa"] == "frontal_legs"


def test_one_sample_per_animal_object_with_parts(root: Path):
    data = PascalPartAnimals(root, split="all", image_size=SIZE)
    assert [(item.image_id, item.object_index, item.category) for item in data.items] == [
        ("2008_003497", 0, "dog"), ("2008_003497", 1, "dog"), ("2008_006462", 0, "cat"),
        ("2010_005511", 0, "bird"), ("2010_005511", 1, "bird"), ("2010_005511", 2, "bird"),
    ]
    assert data.classes == ("bird", "cat", "cow", "dog", "horse", "sheep")
    assert [data[i].label for i in range(len(data))] == [3, 3, 1, 0, 0, 0]
    birds = PascalPartAnimals(root, categories=("bird",), split="all", image_size=SIZE)
    assert len(birds) == 3 and {birds[i].label for i in range(3)} == {0}


def _largest_piece(mask: np.ndarray) -> np.ndarray:
    """The largest 8-connected piece of ``mask`` (the first found in raster order on ties), by flood fill."""
    seen = np.zeros(mask.shape, dtype=bool)
    best: list[tuple[int, int]] = []
    for start in zip(*np.nonzero(mask), strict=True):
        if seen[start]:
            continue
        piece, stack = [], [start]
        seen[start] = True
        while stack:
            y, x = stack.pop()
            piece.append((y, x))
            for dy in (-1, 0, 1):
                for dx in (-1, 0, 1):
                    ny, nx = y + dy, x + dx
                    if 0 <= ny < mask.shape[0] and 0 <= nx < mask.shape[1] and mask[ny, nx] and not seen[ny, nx]:
                        seen[ny, nx] = True
                        stack.append((ny, nx))
        if len(piece) > len(best):
            best = piece
    out = np.zeros(mask.shape, dtype=bool)
    out[tuple(np.array(best).T)] = True
    return out


def _expected_centre(obj, names: set[str]) -> tuple[float, float] | None:
    """The documented landmark rule, written out: the centroid of the largest piece of the union of raw part masks,
    or the piece's pixel nearest to it when it falls off the piece; mapped into the crop of the object box."""
    masks = [p["mask"] > 0 for p in obj["parts"].ravel() if str(p["part_name"][0]) in names]
    if not masks:
        return None
    piece = _largest_piece(np.any(masks, axis=0))
    ys, xs = np.nonzero(piece)
    cy, cx = ys.mean(), xs.mean()
    if not piece[int(np.floor(cy + 0.5)), int(np.floor(cx + 0.5))]:
        nearest = np.argmin((ys - cy) ** 2 + (xs - cx) ** 2)
        cy, cx = float(ys[nearest]), float(xs[nearest])
    rows, cols = np.nonzero(obj["mask"].any(axis=1))[0], np.nonzero(obj["mask"].any(axis=0))[0]
    y0, y1, x0, x1 = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
    return (cy + 0.5 - y0) * SIZE / (y1 - y0) - 0.5, (cx + 0.5 - x0) * SIZE / (x1 - x0) - 0.5


def test_landmarks_follow_the_documented_rule_on_the_merged_raw_masks(root: Path):
    data = PascalPartAnimals(root, split="all", image_size=SIZE)
    for i, item in enumerate(data.items):
        sample = data[i]
        obj = _raw_objects(item.image_id)[item.object_index]
        groups = GROUPS[item.category]
        assert set(sample.landmarks) == set(groups)
        for name, raw_names in groups.items():
            expected = _expected_centre(obj, raw_names)
            if expected is None:
                assert sample.landmarks[name] is None and name not in sample.part_masks
            else:
                assert sample.landmarks[name] == pytest.approx(expected, abs=1e-6), (item, name)


def test_masks_line_up_with_the_crop(root: Path):
    data = PascalPartAnimals(root, split="all", image_size=SIZE)
    for i in range(len(data)):
        sample = data[i]
        assert sample.image.shape == (3, SIZE, SIZE)
        for name, mask in sample.part_masks.items():
            assert mask.shape == (SIZE, SIZE) and mask.dtype == torch.bool
            assert sample.image[0][mask].mean() > 0.85, name  # parts lie on the white object pixels
            ys, xs = np.nonzero(mask.numpy())
            if len(ys) > 20:  # the landmark lies on the part: within 1.5 px of a pixel of the resampled mask
                y, x = sample.landmarks[name]
                assert np.min((ys - y) ** 2 + (xs - x) ** 2) <= 1.5**2, name
    # the object box fills the crop: each border of the first dog crop touches the white object
    first = data[0].image[0]
    assert first[0].max() > 0.5 and first[-1].max() > 0.5 and first[:, 0].max() > 0.5 and first[:, -1].max() > 0.5


def test_hash_split_without_image_sets(root: Path):
    train = PascalPartAnimals(root, split="train", image_size=SIZE)
    val = PascalPartAnimals(root, split="val", image_size=SIZE)
    for data, name in ((train, "train"), (val, "val")):
        for item in data.items:
            even = hashlib.sha256(item.image_id.encode()).digest()[-1] % 2 == 0
            assert even == (name == "train")
    keys = {(item.image_id, item.object_index) for item in train.items + val.items}
    assert len(train) + len(val) == 6 and len(keys) == 6


def _voc_root(tmp_path: Path, root: Path, voc: str) -> Path:
    """A copy of ``root`` with the images under ``voc``/JPEGImages."""
    shutil.copytree(root / "Annotations_Part", tmp_path / "Annotations_Part")
    shutil.copytree(root / "JPEGImages", tmp_path / voc / "JPEGImages")
    return tmp_path


def test_image_sets_decide_the_split(tmp_path: Path, root: Path):
    voc_root = _voc_root(tmp_path, root, "VOCdevkit/VOC2010")
    lists = voc_root / "VOCdevkit" / "VOC2010" / "ImageSets" / "Main"
    lists.mkdir(parents=True)
    (lists / "train.txt").write_text("2008_006462\n2009_000001\n")
    (lists / "val.txt").write_text("2008_003497\n2010_000145\n2010_005511\n")
    assert [item.category for item in PascalPartAnimals(voc_root, split="train").items] == ["cat"]
    assert len(PascalPartAnimals(voc_root, split="val")) == 5
    (lists / "train.txt").write_text("2008_006462\n2009_000001 extra\n")
    with pytest.raises(DatasetRootError, match=r"train\.txt, line 2"):
        PascalPartAnimals(voc_root, split="train")


def test_voc2010_folder_is_accepted(tmp_path: Path, root: Path):
    assert len(PascalPartAnimals(_voc_root(tmp_path, root, "VOC2010"), split="all")) == 6


def test_missing_root_and_images_are_reported(tmp_path: Path, root: Path):
    with pytest.raises(DatasetRootError, match="does not exist") as error:
        PascalPartAnimals(tmp_path / "nowhere")
    assert "Annotations_Part/<image id>.mat" in str(error.value)
    shutil.copytree(root / "Annotations_Part", tmp_path / "Annotations_Part")
    with pytest.raises(DatasetRootError, match="no JPEGImages/ folder") as error:
        PascalPartAnimals(tmp_path)
    assert "VOCdevkit/VOC2010" in str(error.value)
    shutil.copytree(root / "JPEGImages", tmp_path / "JPEGImages")
    (tmp_path / "JPEGImages" / "2008_006462.jpg").unlink()
    with pytest.raises(DatasetRootError, match=r"2008_006462\.jpg is missing"):
        PascalPartAnimals(tmp_path, split="all")


def test_image_size_must_match_the_masks(tmp_path: Path, root: Path):
    voc_root = _voc_root(tmp_path, root, ".")
    Image.new("RGB", (100, 80)).save(voc_root / "JPEGImages" / "2008_006462.jpg")
    data = PascalPartAnimals(voc_root, categories="cat", split="all")
    message = r"2008_006462\.jpg is 100x80 but the masks in .*2008_006462\.mat are 500x375"
    with pytest.raises(DatasetRootError, match=message):
        data[0]


def test_malformed_annotation_is_named(tmp_path: Path, root: Path):
    voc_root = _voc_root(tmp_path, root, ".")
    (voc_root / "Annotations_Part" / "2008_006462.mat").write_bytes(b"not a MATLAB file")
    with pytest.raises(DatasetRootError, match=r"2008_006462\.mat is not a Pascal-Part annotation"):
        PascalPartAnimals(voc_root, split="all")


def test_unknown_part_name_is_reported():
    mask = np.ones((4, 4), dtype=bool)
    merged = merge_parts(PascalObject("dog", 12, mask, [("muzzle", mask), ("nose", mask), ("lbpa", mask)]))
    assert list(merged) == ["head", "back_legs"]
    with pytest.raises(DatasetRootError, match="unknown dog part 'wheel'"):
        merge_parts(PascalObject("dog", 12, mask, [("head", mask), ("wheel", mask)]), "x.mat")


def test_part_landmark_lies_on_multi_piece_and_curled_parts():
    legs = np.zeros((20, 20), dtype=bool)
    legs[5:18, 3:6] = True  # the bigger leg: 39 pixels, centre (11, 4)
    legs[8:18, 12:14] = True  # the smaller one: 20 pixels
    ys, xs = np.nonzero(legs)
    assert not legs[round(ys.mean()), round(xs.mean())], "the plain centroid falls between the legs"
    assert part_landmark(legs) == (11.0, 4.0)
    yy, xx = np.mgrid[:21, :21]
    ring = ((yy - 10) ** 2 + (xx - 10) ** 2 <= 81) & ((yy - 10) ** 2 + (xx - 10) ** 2 >= 36)
    curled = ring & ~((xx > 10) & (abs(yy - 10) < 3))  # a C: its centroid lies in the hole
    y, x = part_landmark(curled)
    assert curled[int(y), int(x)]
    ys, xs = np.nonzero(curled)
    centroid = ys.mean(), xs.mean()
    distances = (ys - centroid[0]) ** 2 + (xs - centroid[1]) ** 2
    assert (y - centroid[0]) ** 2 + (x - centroid[1]) ** 2 == pytest.approx(distances.min())
    disc = (yy - 7) ** 2 + (xx - 12) ** 2 <= 16
    assert part_landmark(disc) == pytest.approx((7.0, 12.0))
    with pytest.raises(ValueError, match="empty"):
        part_landmark(np.zeros((4, 4), dtype=bool))
