"""CUB-200-2011 reader on a hand-written tree in the official format (tests/fixtures/cub_mini).

The tree has four images: 1 (test, 96x80, box x=10 y=20 w=64 h=50), 2 (train), 3 (test, 40x30 box: dropped by the
50x50 rule) and 4 (test, grey 72x72 JPEG, box = whole image). A red 9x9 block sits on each forehead and a blue one on
each back.
"""

import shutil
from pathlib import Path

import pytest
import torch

from helpers.data.arrays import materialize
from helpers.data.cub import CUBParts
from helpers.data.root_check import DatasetRootError

ROOT = Path(__file__).parent / "fixtures" / "cub_mini"
BASE = "CUB_200_2011"


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """A writable copy of the mini tree."""
    shutil.copytree(ROOT, tmp_path / "cub")
    return tmp_path / "cub"


def _replace_line(path: Path, number: int, text: str) -> None:
    lines = path.read_text().splitlines(keepends=True)
    lines[number - 1] = text
    path.write_text("".join(lines))


def test_test_split_drops_small_boxes_and_train_images():
    data = CUBParts(ROOT, image_size=64)
    assert [r.image_id for r in data.records] == [1, 4]  # 2 is a training image, 3 has a 40x30 box
    assert len(CUBParts(ROOT, split="train")) == 1
    assert len(CUBParts(ROOT, split="all")) == 3
    assert len(CUBParts(ROOT, split="all", min_box_side=0)) == 4


def test_landmark_mapped_into_the_crop_frame_by_hand():
    sample = CUBParts(ROOT, image_size=64)[0]
    # forehead of image 1 at (x, y) = (42, 30); box x=10, y=20, w=64, h=50, resized to 64x64:
    # y' = (30 + 0.5 - 20) * 64 / 50 - 0.5 = 10.5 * 1.28 - 0.5 = 12.94
    # x' = (42 + 0.5 - 10) * 64 / 64 - 0.5 = 32.0
    assert sample.landmarks["forehead"] == pytest.approx((12.94, 32.0))
    assert sample.landmarks["head"] == sample.landmarks["forehead"]
    # back (part 1) at (30, 40): y' = 20.5 * 1.28 - 0.5 = 25.74, x' = 20.5 - 0.5 = 20.0
    assert sample.landmarks["back"] == pytest.approx((25.74, 20.0))


def test_invisible_parts_are_none_and_names_are_snake_case():
    sample = CUBParts(ROOT, image_size=64)[0]
    assert list(sample.landmarks)[:3] == ["head", "back", "tail"]
    assert set(sample.landmarks) == {
        "head", "back", "tail", "beak", "belly", "breast", "crown", "forehead", "left_eye", "left_leg", "left_wing",
        "nape", "right_eye", "right_leg", "right_wing", "throat",
    }
    visible = {name for name, point in sample.landmarks.items() if point is not None}
    assert visible == {"head", "back", "beak", "breast", "forehead", "left_eye", "nape"}  # parts 1, 2, 4, 6, 7, 10
    assert sample.meta["instances"]["tail"] == []
    assert sample.part_masks == {}


def test_crop_pixels_agree_with_landmarks():
    sample = CUBParts(ROOT, image_size=64)[0]
    red = sample.image[:, round(sample.landmarks["head"][0]), round(sample.landmarks["head"][1])]
    blue = sample.image[:, round(sample.landmarks["back"][0]), round(sample.landmarks["back"][1])]
    assert red[0] > 0.7 and red[1] < 0.3 and red[2] < 0.3
    assert blue[2] > 0.7 and blue[0] < 0.3 and blue[1] < 0.3


def test_sample_schema_and_grey_image():
    data = CUBParts(ROOT, image_size=48)
    assert data.classes == ("bird",) and data.categories == ("bird",)
    sample = data[1]  # image 4, a grey JPEG
    assert sample.image.shape == (3, 48, 48) and sample.image.dtype == torch.float32
    assert torch.equal(sample.image[0], sample.image[1]) and torch.equal(sample.image[1], sample.image[2])
    assert sample.label == 0 and sample.category == "bird" and not sample.is_negative
    assert sample.meta["image_id"] == 4 and sample.meta["species"] == 2
    # forehead (36, 18) of the 72x72 whole-image box: y' = 18.5 * 48 / 72 - 0.5 = 11.8333, x' = 36.5 * 48/72 - 0.5
    assert sample.landmarks["head"] == pytest.approx((18.5 * 48 / 72 - 0.5, 36.5 * 48 / 72 - 0.5))
    assert data[-1].meta["image_id"] == 4
    with pytest.raises(IndexError):
        data[2]


def test_materialize_gives_columnar_arrays():
    arrays = materialize(CUBParts(ROOT, image_size=32), workers=1)
    assert arrays.images.shape == (2, 3, 32, 32)
    assert arrays.landmark_names[:3] == ("head", "back", "tail")
    assert torch.isnan(arrays.landmark("tail")[0]).all()  # invisible in image 1
    # image 4: tail (60, 60) in the 72x72 box at 32 px: 60.5 * 32 / 72 - 0.5 on both axes
    assert arrays.landmark("tail")[1].tolist() == pytest.approx([60.5 * 32 / 72 - 0.5] * 2)
    assert not torch.isnan(arrays.landmark("head")).any()


def test_config_names_the_content():
    config = CUBParts(ROOT, image_size=64).config()
    assert config["dataset"] == "cub200" and config["split"] == "test" and config["image_size"] == 64
    assert config["min_box_side"] == 50


def test_missing_root_lists_expected_files(tmp_path: Path):
    with pytest.raises(DatasetRootError) as error:
        CUBParts(tmp_path / "nowhere")
    message = str(error.value)
    assert "does not exist" in message
    for name in ("images.txt", "bounding_boxes.txt", "parts/part_locs.txt", "train_test_split.txt"):
        assert f"{BASE}/{name}" in message


def test_missing_file_is_named(tree: Path):
    (tree / BASE / "train_test_split.txt").unlink()
    with pytest.raises(DatasetRootError, match=r"train_test_split\.txt is missing"):
        CUBParts(tree)


def test_malformed_line_names_file_and_line(tree: Path):
    _replace_line(tree / BASE / "bounding_boxes.txt", 3, "3 30.0 25.0 forty 30.0\n")
    with pytest.raises(DatasetRootError, match=r"bounding_boxes\.txt, line 3: expected '<image_id> <x> <y>"):
        CUBParts(tree)


def test_bad_visibility_flag_names_file_and_line(tree: Path):
    _replace_line(tree / BASE / "parts" / "part_locs.txt", 17, "2 2 0.0 0.0 2\n")
    with pytest.raises(DatasetRootError, match=r"part_locs\.txt, line 17"):
        CUBParts(tree)


def test_wrong_parts_list_names_file_and_line(tree: Path):
    _replace_line(tree / BASE / "parts" / "parts.txt", 6, "6 crown\n")
    with pytest.raises(DatasetRootError, match=r"parts\.txt, line 6: part 6 should be 'forehead'"):
        CUBParts(tree)


def test_missing_rows_are_reported(tree: Path):
    path = tree / BASE / "parts" / "part_locs.txt"
    path.write_text("".join(path.read_text().splitlines(keepends=True)[:-1]))
    with pytest.raises(DatasetRootError, match=r"part_locs\.txt has 14 rows for image id 4"):
        CUBParts(tree)
    _replace_line(tree / BASE / "image_class_labels.txt", 2, "\n")
    with pytest.raises(DatasetRootError, match=r"image_class_labels\.txt has no row for image id 2"):
        CUBParts(tree)


def test_missing_image_fails_at_construction(tree: Path):
    image = tree / BASE / "images" / "002.Laysan_Albatross" / "Laysan_Albatross_0002_1027.jpg"
    image.unlink()
    with pytest.raises(DatasetRootError, match="Laysan_Albatross_0002_1027.jpg is missing"):
        CUBParts(tree)
