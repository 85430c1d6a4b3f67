"""ILSVRC Animal-Part reader: Zhang et al.'s truth files (tests/fixtures/zhang_truth) and a small fake root.

Inspected with h5py: the ILSVRC dog head file (v7.3) has 688 records, 211 with a head, 5 of them with two heads
(216 instances); its first centre is [105; 101]. Inspected with scipy: the VOC bird head file (v5) has 388 records,
377 with a head.
"""

from pathlib import Path

import h5py
import numpy as np
import pytest
import scipy.io
from PIL import Image

from helpers.data.ilsvrc_part import ILSVRCAnimalParts, read_object_boxes, read_truth_file, read_truth_scales
from helpers.data.root_check import DatasetRootError

TRUTH = Path(__file__).parent / "fixtures" / "zhang_truth"
DOG = TRUTH / "ilsvrc_n02084071_truth_part01.mat"
VOC_BIRD = TRUTH / "voc_bird_truth_part01.mat"


def _write_value(parent: h5py.Group, name: str, value) -> h5py.HLObject:
    """Store ``value`` as MATLAB v7.3 does: arrays transposed, [] as its dimensions, str as char, dict as a struct."""
    if isinstance(value, dict):
        node = parent.create_group(name)
        for key, item in value.items():
            _write_value(node, key, item)
        node.attrs["MATLAB_class"] = np.bytes_("struct")
        return node
    if isinstance(value, str):
        node = parent.create_dataset(name, data=np.array([[ord(c)] for c in value], dtype=np.uint16))
        node.attrs["MATLAB_class"] = np.bytes_("char")
        return node
    array = np.atleast_2d(np.asarray(value, dtype=float))
    if array.size == 0:
        node = parent.create_dataset(name, data=np.array(array.shape, dtype=np.uint64))
        node.attrs["MATLAB_empty"] = np.uint8(1)
    else:
        node = parent.create_dataset(name, data=array.T)
    node.attrs["MATLAB_class"] = np.bytes_("double")
    return node


def write_mat73(path: Path, name: str, fields: dict[str, list]) -> None:
    """A 1 x N struct array ``name`` in the MATLAB v7.3 layout: one column of references per field."""
    with h5py.File(path, "w", userblock_size=512) as file:
        refs = file.create_group("#refs#")
        group = file.create_group(name)
        group.attrs["MATLAB_class"] = np.bytes_("struct")
        for key, values in fields.items():
            column = group.create_dataset(key, (len(values), 1), dtype=h5py.ref_dtype)
            for i, value in enumerate(values):
                column[i, 0] = _write_value(refs, f"{key}{i}", value).ref


def write_v5_truth(path: Path, centres: list, scales: list) -> None:
    records = np.empty((1, len(centres)), dtype=[("pHW_center", object), ("pHW_scale", object)])
    for i, (centre, scale) in enumerate(zip(centres, scales, strict=True)):
        records[0, i] = (centre, scale)
    scipy.io.savemat(path, {"truth": records})


def write_truth(path: Path, centres: list, scales: list) -> None:
    write_mat73(path, "truth", {"pHW_center": centres, "pHW_scale": scales})


def same_points(points: list, expected: list) -> bool:
    """Two lists of (y, x) pairs agree to 1e-9."""
    got, want = np.array(points, dtype=float).reshape(-1, 2), np.array(expected, dtype=float).reshape(-1, 2)
    return got.shape == want.shape and np.allclose(got, want, rtol=0, atol=1e-9)


def _h5_centres(path: Path) -> list[list[tuple[float, float]]]:
    """The stored centres of a v7.3 truth file as (h, w) rows, read directly with h5py."""
    with h5py.File(path, "r") as file:
        out = []
        for ref in file["truth"]["pHW_center"][:, 0]:
            node = file[ref]
            out.append([] if node.attrs.get("MATLAB_empty", 0) else [tuple(row) for row in node[()]])
    return out


def test_ilsvrc_dog_truth_file():
    centres = read_truth_file(DOG)
    assert len(centres) == 688
    assert sum(bool(c) for c in centres) == 211 and sum(len(c) == 2 for c in centres) == 5
    assert sum(len(c) for c in centres) == 216
    assert same_points(centres[0], [(104.0, 100.0)])  # stored [105; 101], 1-based
    stored = _h5_centres(DOG)
    for ours, raw in zip(centres, stored, strict=True):
        assert same_points(ours, [(h - 1, w - 1) for h, w in raw])
    scales = read_truth_scales(DOG)
    assert same_points(scales[0], [(150.0, 162.0)])
    assert [len(s) for s in scales] == [len(c) for c in centres]


def test_voc_bird_truth_file_reads_with_scipy():
    assert not h5py.is_hdf5(VOC_BIRD)
    centres = read_truth_file(VOC_BIRD)
    records = scipy.io.loadmat(VOC_BIRD)["truth"].ravel()
    assert len(centres) == len(records) == 388 and sum(bool(c) for c in centres) == 377
    for ours, record in zip(centres, records, strict=True):
        stored = record["pHW_center"]
        assert same_points(ours, [(h - 1, w - 1) for h, w in stored.T] if stored.size else [])
    # part box of 6 x 13 pixels in a 60 x 81 object box, scaled to the 224 frame
    assert same_points(read_truth_scales(VOC_BIRD)[0], [(6 * 224 / 60, 13 * 224 / 81)])


CENTRES = [np.array([[101.0], [61.0]]), np.zeros((0, 0)), np.array([[30.0, 80.0], [40.0, 90.0]])]
SCALES = [np.array([[20.0], [30.0]]), np.zeros((0, 0)), np.array([[10.0, 12.0], [14.0, 16.0]])]


def test_v73_and_v5_files_read_the_same(tmp_path: Path):
    write_truth(tmp_path / "v73.mat", CENTRES, SCALES)
    write_v5_truth(tmp_path / "v5.mat", CENTRES, SCALES)
    assert h5py.is_hdf5(tmp_path / "v73.mat") and not h5py.is_hdf5(tmp_path / "v5.mat")
    expected = [[(100.0, 60.0)], [], [(29.0, 39.0), (79.0, 89.0)]]
    assert read_truth_file(tmp_path / "v73.mat") == expected
    assert read_truth_file(tmp_path / "v5.mat") == expected
    scales = [[(20.0, 30.0)], [], [(10.0, 14.0), (12.0, 16.0)]]
    assert read_truth_scales(tmp_path / "v73.mat") == read_truth_scales(tmp_path / "v5.mat") == scales


def test_malformed_truth_files_are_named(tmp_path: Path):
    (tmp_path / "junk.mat").write_bytes(b"junk")
    with pytest.raises(DatasetRootError, match=r"junk\.mat is not a truth file"):
        read_truth_file(tmp_path / "junk.mat")
    write_truth(tmp_path / "bad.mat", [np.array([[1.0], [2.0], [3.0]])], [np.array([[1.0], [2.0], [3.0]])])
    with pytest.raises(DatasetRootError, match=r"bad\.mat: truth\(1\) has pHW_center \(3, 1\)"):
        read_truth_file(tmp_path / "bad.mat")


def _box(xmin, ymin, xmax, ymax) -> dict:
    return {"bndbox": {"xmin": xmin, "ymin": ymin, "xmax": xmax, "ymax": ymax}}


def _image(path: Path, width: int, height: int, block: tuple[int, int] | None = None) -> None:
    """A black JPEG, with a white 13x13 block centred at ``block`` = (row, col)."""
    pixels = np.zeros((height, width, 3), dtype=np.uint8)
    if block is not None:
        pixels[block[0] - 6: block[0] + 7, block[1] - 6: block[1] + 7] = 255
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path, quality=95)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """A dog synset (3 images; truth as in Zhang's code release, in <wnid>/ and <wnid>_obj/) and a goldfish (1)."""
    dog = tmp_path / "n02084071_obj"
    (dog / "img").mkdir(parents=True)
    # image 1: 200x160, box rows 21..132 and columns 41..152 (MATLAB, inclusive): 112 x 112 pixels
    write_mat73(dog / "img" / "data.mat", "samples", {"obj": [
        _box(41, 21, 152, 132), _box(1, 1, 120, 100), _box("0", "5", "90", "70")]})
    _image(dog / "img" / "img" / "00001.jpg", 200, 160, block=(70, 70))
    _image(dog / "img" / "img" / "00002.jpg", 120, 100)
    _image(dog / "img" / "img" / "00003.jpg", 100, 80)
    (tmp_path / "n02084071").mkdir()
    write_truth(tmp_path / "n02084071" / "truth_part01.mat", [CENTRES[0], CENTRES[1], np.array([[50.0], [60.0]])],
                [SCALES[0], SCALES[1], np.array([[8.0], [8.0]])])
    write_truth(dog / "truth_part02.mat", [CENTRES[1], CENTRES[2], CENTRES[1]], [SCALES[1], SCALES[2], SCALES[1]])
    fish = tmp_path / "n01443537_obj"
    (fish / "img").mkdir(parents=True)
    write_mat73(fish / "img" / "data.mat", "samples", {"obj": [_box(11, 11, 60, 50)]})
    _image(fish / "img" / "img" / "00001.jpg", 64, 64)
    write_v5_truth(fish / "truth_part01.mat", [CENTRES[0]], [SCALES[0]])
    return tmp_path


def test_object_boxes_numbers_and_chars(root: Path):
    boxes = read_object_boxes(root / "n02084071_obj" / "img" / "data.mat")
    assert boxes == [(41.0, 21.0, 152.0, 132.0), (1.0, 1.0, 120.0, 100.0), (0.0, 5.0, 90.0, 70.0)]


def test_dataset_items_and_classes(root: Path):
    data = ILSVRCAnimalParts(root, image_size=112)
    assert data.synsets == ("n01443537", "n02084071") and data.classes == ("goldfish", "dog")
    assert len(data) == 4
    assert [(data[i].label, data[i].category, data[i].meta["number"]) for i in range(4)] == [
        (0, "goldfish", 1), (1, "dog", 1), (1, "dog", 2), (1, "dog", 3)]
    dogs = ILSVRCAnimalParts(root, synsets="n02084071", image_size=112)
    assert dogs.classes == ("dog",) and len(dogs) == 3
    assert data.config()["synsets"] == ["n01443537", "n02084071"]


def test_landmarks_rescaled_to_the_input_size(root: Path):
    data = ILSVRCAnimalParts(root, synsets=["n02084071"], image_size=112)
    first = data[0]
    # head stored at [101; 61] (1-based, 224 frame) -> 0-based (100, 60) -> at 112 px: (100.5 / 2 - 0.5, 60.5 / 2 - 0.5)
    assert first.landmarks["head"] == pytest.approx((49.75, 29.75))
    assert first.landmarks["frontal_legs"] is None and first.meta["instances"]["frontal_legs"] == []
    assert same_points(first.meta["part_scales"]["head"], [(10.0, 15.0)])
    second = data[1]
    assert second.landmarks["head"] is None
    # two frontal-leg instances [30 80; 40 90] -> 0-based (29, 39) and (79, 89) -> halved about pixel edges
    expected = [(29.5 / 2 - 0.5, 39.5 / 2 - 0.5), (79.5 / 2 - 0.5, 89.5 / 2 - 0.5)]
    assert same_points(second.meta["instances"]["frontal_legs"], expected)
    assert second.landmarks["frontal_legs"] == pytest.approx(expected[0])
    assert second.part_masks == {}


def test_crop_follows_matlab_inclusive_boxes(root: Path):
    sample = ILSVRCAnimalParts(root, synsets=["n02084071"], image_size=112)[0]
    source = np.asarray(Image.open(root / "n02084071_obj" / "img" / "img" / "00001.jpg").convert("RGB"))
    # rows 21..132 and columns 41..152 (1-based) are 112 pixels each: the crop is that region, pixel for pixel
    crop = sample.image.permute(1, 2, 0).numpy() * 255
    assert np.allclose(crop, source[20:132, 40:152], atol=1e-3)
    y, x = sample.landmarks["head"]
    assert sample.image[:, round(y), round(x)].min() > 0.8  # the white block drawn at the head


def test_goldfish_needs_no_frontal_legs_file(root: Path):
    fish = ILSVRCAnimalParts(root, synsets=["n01443537"], image_size=224)[0]
    assert fish.landmarks["head"] == pytest.approx((100.0, 60.0))
    assert fish.landmarks["frontal_legs"] is None


def test_missing_root_and_files_are_reported(tmp_path: Path, root: Path):
    with pytest.raises(DatasetRootError, match="does not exist") as error:
        ILSVRCAnimalParts(tmp_path / "nowhere")
    assert "<wnid>_obj/img/data.mat" in str(error.value)
    with pytest.raises(DatasetRootError, match=r"n02391049_obj/img/data\.mat is missing"):
        ILSVRCAnimalParts(root, synsets=["n02391049"])
    (root / "n02084071_obj" / "truth_part02.mat").unlink()
    with pytest.raises(DatasetRootError, match=r"truth_part02\.mat of n02084071 is missing"):
        ILSVRCAnimalParts(root)


def test_record_count_must_match_the_samples(root: Path):
    write_truth(root / "n02084071" / "truth_part01.mat", CENTRES[:2], SCALES[:2])
    with pytest.raises(DatasetRootError, match=r"truth_part01\.mat has 2 records but data\.mat has 3 samples"):
        ILSVRCAnimalParts(root)
