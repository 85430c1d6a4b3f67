"""CUB-200-2011 as :class:`PartSample` object crops: all 200 species form the single category "bird".

Protocol (explanatory-graph and interpretable-CNN papers): the test split, boxes with an area below ``min_box_side``
squared dropped, the box cropped and resized (anisotropically) to the input size, landmarks mapped into that frame.
Landmarks: the papers' ``head`` (= forehead), ``back`` and ``tail``, plus every CUB part under a snake_case name
(``left_eye``, ...); None when the part is invisible. No part masks.

Coordinates in ``bounding_boxes.txt`` and ``part_locs.txt`` are used as 0-based pixel coordinates: the box covers
x <= u < x + width, a part sits at pixel (y, x).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from torch.utils.data import Dataset

from ..config import check_choice
from .common import PartSample, crop_box_to_frame
from .root_check import (
    RawObject,
    RootLayout,
    check_image_size,
    check_index,
    clamp_box,
    object_sample,
    raw_object,
    read_image,
)

DATASET = "cub200"
CATEGORY = "bird"
SPLITS = ("train", "test", "all")
# parts/parts.txt of CUB-200-2011: part id k is CUB_PARTS[k - 1].
CUB_PARTS = ("back", "beak", "belly", "breast", "crown", "forehead", "left eye", "left leg", "left wing", "nape",
             "right eye", "right leg", "right wing", "tail", "throat")
PART_IDS: dict[str, int] = {name.replace(" ", "_"): k for k, name in enumerate(CUB_PARTS, start=1)}
PAPER_LANDMARKS: dict[str, int] = {"head": 6, "back": 1, "tail": 14}  # the papers' landmarks: forehead, back, tail
LANDMARK_IDS: dict[str, int] = {**PAPER_LANDMARKS, **PART_IDS}
LANDMARK_NAMES = tuple(LANDMARK_IDS)
BASE = "CUB_200_2011"
LAYOUT = tuple(f"{BASE}/{item}" for item in (
    "images.txt  (<image_id> <relative path>)",
    "image_class_labels.txt  (<image_id> <class_id>)",
    "train_test_split.txt  (<image_id> <1 = train | 0 = test>)",
    "bounding_boxes.txt  (<image_id> <x> <y> <width> <height>)",
    "parts/parts.txt  (<part_id> <part name>, the 15 CUB parts)",
    "parts/part_locs.txt  (<image_id> <part_id> <x> <y> <visible>, 15 rows per image)",
    "images/<relative path>  (the JPEG images)",
))
FILES = ("images.txt", "image_class_labels.txt", "train_test_split.txt", "bounding_boxes.txt", "parts/parts.txt",
         "parts/part_locs.txt", "images")


@dataclass(frozen=True)
class CUBRecord:
    """One image's annotations; ``box`` is (x, y, width, height) and ``parts[k - 1]`` = (x, y, visible) of part k."""

    image_id: int
    path: str
    species: int
    is_train: bool
    box: tuple[float, float, float, float]
    parts: tuple[tuple[float, float, int], ...]


def _flag(text: str) -> int:
    """A 0/1 column."""
    value = int(text)
    if value not in (0, 1):
        raise ValueError(text)
    return value


def _positive(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise ValueError(text)
    return value


def _check_parts_list(layout: RootLayout) -> None:
    """parts/parts.txt must list the 15 CUB parts in the official order (the landmark ids rely on it)."""
    relpath = f"{BASE}/parts/parts.txt"
    rows = layout.read_table(relpath, (("part_id", int), ("part name", str)))
    found = {part_id: (line, name) for line, (part_id, name) in rows}
    for part_id, expected in enumerate(CUB_PARTS, start=1):
        line, name = found.get(part_id, (None, None))
        if line is None:
            raise layout.error(f"{layout.root / relpath}: part {part_id} ({expected}) is not listed")
        if name != expected:
            raise layout.error_at(layout.root / relpath, line, f"part {part_id} should be {expected!r}, got {name!r}")


def _per_image(layout: RootLayout, relpath: str, columns: tuple, ids: dict[int, int]) -> dict[int, tuple]:
    """Values of a one-row-per-image table, keyed by image id; every image of images.txt must have exactly one row."""
    path = layout.root / relpath
    table: dict[int, tuple] = {}
    for line, (image_id, *values) in layout.read_table(relpath, (("image_id", int), *columns)):
        if image_id not in ids:
            raise layout.error_at(path, line, f"image id {image_id} is not in images.txt")
        if image_id in table:
            raise layout.error_at(path, line, f"a second row for image id {image_id}")
        table[image_id] = tuple(values)
    for image_id, line in ids.items():
        if image_id not in table:
            raise layout.error(f"{path} has no row for image id {image_id} (images.txt line {line})")
    return table


def _part_locations(layout: RootLayout, ids: dict[int, int]) -> dict[int, tuple[tuple[float, float, int], ...]]:
    """The 15 (x, y, visible) rows of each image from parts/part_locs.txt."""
    relpath = f"{BASE}/parts/part_locs.txt"
    path = layout.root / relpath
    columns = (("image_id", int), ("part_id", int), ("x", float), ("y", float), ("visible", _flag))
    found: dict[int, dict[int, tuple[float, float, int]]] = {image_id: {} for image_id in ids}
    for line, (image_id, part_id, x, y, visible) in layout.read_table(relpath, columns):
        if image_id not in ids:
            raise layout.error_at(path, line, f"image id {image_id} is not in images.txt")
        if not 1 <= part_id <= len(CUB_PARTS) or part_id in found[image_id]:
            raise layout.error_at(path, line, f"unexpected or repeated part id {part_id} for image id {image_id}")
        found[image_id][part_id] = (x, y, visible)
    for image_id, parts in found.items():
        if len(parts) != len(CUB_PARTS):
            raise layout.error(f"{path} has {len(parts)} rows for image id {image_id}, expected {len(CUB_PARTS)}")
    return {image_id: tuple(parts[k] for k in range(1, len(CUB_PARTS) + 1)) for image_id, parts in found.items()}


def read_cub_records(layout: RootLayout) -> list[CUBRecord]:
    """Every image's annotations, in images.txt order (the files are checked for consistency on the way)."""
    layout.require(*(f"{BASE}/{name}" for name in FILES))
    _check_parts_list(layout)
    images = layout.read_table(f"{BASE}/images.txt", (("image_id", int), ("relative path", str)))
    ids: dict[int, int] = {}
    for line, (image_id, _) in images:
        if image_id in ids:
            raise layout.error_at(layout.root / BASE / "images.txt", line, f"a second row for image id {image_id}")
        ids[image_id] = line
    species = _per_image(layout, f"{BASE}/image_class_labels.txt", (("class_id", int),), ids)
    train = _per_image(layout, f"{BASE}/train_test_split.txt", (("is_training_image", _flag),), ids)
    boxes = _per_image(layout, f"{BASE}/bounding_boxes.txt",
                       (("x", float), ("y", float), ("width", _positive), ("height", _positive)), ids)
    parts = _part_locations(layout, ids)
    return [CUBRecord(image_id, path, species[image_id][0], bool(train[image_id][0]), boxes[image_id], parts[image_id])
            for _, (image_id, path) in images]


class CUBParts(Dataset):
    """CUB-200-2011 birds (root contains ``CUB_200_2011/``) as object crops with part landmarks.

    ``split``: "test" (the papers' protocol), "train" or "all". Items follow images.txt order.
    """

    classes = (CATEGORY,)
    categories = (CATEGORY,)

    def __init__(self, root: str | Path, split: str = "test", image_size: int = 224, min_box_side: float = 50):
        self.root = Path(root).expanduser()
        self.split = check_choice("split", split, SPLITS)
        self.image_size = check_image_size(image_size)
        if not min_box_side >= 0:
            raise ValueError(f"min_box_side must be >= 0, got {min_box_side!r}")
        self.min_box_side = float(min_box_side)
        self._layout = RootLayout("CUB-200-2011", self.root, LAYOUT)
        self.records = [r for r in read_cub_records(self._layout) if self._keeps(r)]
        for record in self.records:
            if not self._image_path(record).exists():
                raise self._layout.error(f"the image {self._image_path(record)} is missing")

    def _image_path(self, record: CUBRecord) -> Path:
        return self.root / BASE / "images" / record.path

    def _keeps(self, record: CUBRecord) -> bool:
        in_split = self.split == "all" or record.is_train == (self.split == "train")
        return in_split and record.box[2] * record.box[3] >= self.min_box_side**2

    def __len__(self) -> int:
        return len(self.records)

    def config(self) -> dict:
        """Everything that decides the content (the key of caches built from this dataset)."""
        return {"dataset": DATASET, "root": str(self.root.resolve()), "split": self.split,
                "image_size": self.image_size, "min_box_side": self.min_box_side}

    def load_raw(self, i: int) -> RawObject:
        """Read item ``i`` with numpy only (safe in forked worker processes; see ``arrays.materialize``)."""
        record = self.records[check_index(i, len(self))]
        image = read_image(self._layout, self._image_path(record))
        x, y, width, height = record.box
        try:
            box = clamp_box((y, x, y + height, x + width), image.shape)
        except ValueError as error:
            raise self._layout.error(f"image id {record.image_id}: {error}") from None
        frame = (self.image_size, self.image_size)
        points = {}
        for name, part_id in LANDMARK_IDS.items():
            px, py, visible = record.parts[part_id - 1]
            points[name] = [crop_box_to_frame((py, px), box, frame)] if visible else []
        return raw_object(image, box, points)

    def from_raw(self, i: int, raw: RawObject) -> PartSample:
        """The :class:`PartSample` of item ``i`` from its :meth:`load_raw` result."""
        record = self.records[check_index(i, len(self))]
        meta = {"image_id": record.image_id, "path": record.path, "species": record.species, "split": self.split}
        return object_sample(raw, self.image_size, 0, CATEGORY, meta)

    def __getitem__(self, i: int) -> PartSample:
        return self.from_raw(i, self.load_raw(i))
