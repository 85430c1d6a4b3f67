"""Pascal-Part animals as :class:`PartSample` object crops with part masks named like the synthetic data.

Root layout: ``Annotations_Part/<id>.mat`` (MATLAB v5) and the VOC2010 images at ``JPEGImages/``,
``VOC2010/JPEGImages/`` or ``VOCdevkit/VOC2010/JPEGImages/``. One sample per object of the requested categories that
has parts; the object box is the bounding box of the object mask. Raw Pascal part names are merged into our part
names (:data:`PART_NAME_MAP`); landmarks are points on the merged masks (``root_check.part_landmark``: the
centroid of the largest piece, moved onto the piece when it falls off), mapped into the crop frame.

Splits: ``ImageSets/Main/{train,val}.txt`` beside ``JPEGImages/`` when present. Without them the split is
deterministic: an image is "train" when the SHA-256 digest of its id (e.g. ``2008_003497``) is even, else "val".
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.io
from torch.utils.data import Dataset

from ..config import CATEGORIES, cache_dir, check_categories, check_choice, progress
from ..io import atomic_torch_save, config_hash, load_torch_cache
from .common import PartSample, crop_box_to_frame
from .root_check import (
    DatasetRootError,
    RawObject,
    RootLayout,
    check_image_size,
    check_index,
    object_sample,
    part_landmark,
    raw_object,
    read_image,
)

DATASET = "pascal_part"
SPLITS = ("train", "val", "all")
VOC_DIRS = (".", "VOC2010", "VOCdevkit/VOC2010")
QUADRUPED_PARTS = ("head", "neck", "torso", "frontal_legs", "back_legs", "tail")
BIRD_PARTS = ("head", "neck", "torso", "wings", "legs", "tail")
PART_NAMES: dict[str, tuple[str, ...]] = {c: BIRD_PARTS if c == "bird" else QUADRUPED_PARTS for c in CATEGORIES}

_CAT = {
    **dict.fromkeys(("head", "leye", "reye", "lear", "rear", "nose"), "head"),
    "neck": "neck",
    "torso": "torso",
    **dict.fromkeys(("lfleg", "lfpa", "rfleg", "rfpa"), "frontal_legs"),
    **dict.fromkeys(("lbleg", "lbpa", "rbleg", "rbpa"), "back_legs"),
    "tail": "tail",
}
_COW = {
    **dict.fromkeys(("head", "leye", "reye", "lear", "rear", "muzzle", "lhorn", "rhorn"), "head"),
    "neck": "neck",
    "torso": "torso",
    **dict.fromkeys(("lfuleg", "lflleg", "rfuleg", "rflleg"), "frontal_legs"),
    **dict.fromkeys(("lbuleg", "lblleg", "rbuleg", "rblleg"), "back_legs"),
    "tail": "tail",
}
_HORSE = {
    **{raw: ours for raw, ours in _COW.items() if raw not in ("lhorn", "rhorn")},
    **dict.fromkeys(("lfho", "rfho"), "frontal_legs"),
    **dict.fromkeys(("lbho", "rbho"), "back_legs"),
}
# Raw Pascal-Part part names -> our part names, per category.
PART_NAME_MAP: dict[str, dict[str, str]] = {
    "bird": {
        **dict.fromkeys(("head", "leye", "reye", "beak"), "head"),
        "neck": "neck",
        "torso": "torso",
        **dict.fromkeys(("lwing", "rwing"), "wings"),
        **dict.fromkeys(("lleg", "lfoot", "rleg", "rfoot"), "legs"),
        "tail": "tail",
    },
    "cat": _CAT,
    "dog": {**_CAT, "muzzle": "head"},
    "cow": _COW,
    "horse": _HORSE,
    "sheep": _COW,
}
LAYOUT = (
    "Annotations_Part/<image id>.mat  (Pascal-Part annotations, MATLAB v5)",
    "JPEGImages/<image id>.jpg  (or VOC2010/JPEGImages/ or VOCdevkit/VOC2010/JPEGImages/)",
    "ImageSets/Main/{train,val}.txt  (optional, beside JPEGImages/; one image id per line)",
)
_INDEX_VERSION = 1


@dataclass
class PascalObject:
    """One annotated object: class name, VOC class index, bool mask and its (raw name, bool mask) parts."""

    category: str
    class_ind: int
    mask: np.ndarray
    parts: list[tuple[str, np.ndarray]]


@dataclass
class PascalAnnotation:
    imname: str
    objects: list[PascalObject]


def _text(value: np.ndarray) -> str:
    """A MATLAB char array as loaded by scipy (a 1-element array of str)."""
    return str(np.asarray(value).ravel()[0])


def _read_object(record: np.void, shape: tuple[int, ...] | None) -> PascalObject:
    mask = np.asarray(record["mask"]).astype(bool)
    if mask.ndim != 2 or (shape is not None and mask.shape != shape):
        raise ValueError(f"object mask of shape {mask.shape}, expected a 2-D mask like the others")
    parts = []
    for part in np.asarray(record["parts"]).ravel():
        part_mask = np.asarray(part["mask"]).astype(bool)
        if part_mask.shape != mask.shape:
            raise ValueError(f"part mask of shape {part_mask.shape} for an object mask of shape {mask.shape}")
        parts.append((_text(part["part_name"]), part_mask))
    return PascalObject(_text(record["class"]), int(np.asarray(record["class_ind"]).ravel()[0]), mask, parts)


def read_annotation(path: str | Path) -> PascalAnnotation:
    """Parse one ``Annotations_Part/*.mat`` file (``anno.imname``, ``anno.objects`` with masks and parts)."""
    try:
        anno = scipy.io.loadmat(path)["anno"][0, 0]
        objects: list[PascalObject] = []
        for record in np.asarray(anno["objects"]).ravel():
            objects.append(_read_object(record, objects[0].mask.shape if objects else None))
        return PascalAnnotation(_text(anno["imname"]), objects)
    except FileNotFoundError:
        raise DatasetRootError(f"{path} is missing") from None
    except (KeyError, IndexError, ValueError, TypeError, OSError, scipy.io.matlab.MatReadError) as error:
        raise DatasetRootError(f"{path} is not a Pascal-Part annotation ({type(error).__name__}: {error})") from None


def merge_parts(obj: PascalObject, source: str | Path = "") -> dict[str, np.ndarray]:
    """Union of the raw part masks of ``obj`` under our part names (see :data:`PART_NAME_MAP`); empty ones left out."""
    names = PART_NAME_MAP[obj.category]
    merged = {name: np.zeros(obj.mask.shape, dtype=bool) for name in PART_NAMES[obj.category]}
    for raw, mask in obj.parts:
        if raw not in names:
            raise DatasetRootError(f"{source}: unknown {obj.category} part {raw!r}; known parts: {', '.join(names)}")
        merged[names[raw]] |= mask
    return {name: mask for name, mask in merged.items() if mask.any()}


def mask_box(mask: np.ndarray) -> tuple[float, float, float, float]:
    """Bounding box (y0, x0, y1, x1) of a bool mask, in pixel edges."""
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if len(rows) == 0:
        raise ValueError("the object mask is empty")
    return float(rows[0]), float(cols[0]), float(rows[-1] + 1), float(cols[-1] + 1)


def split_of(image_id: str) -> str:
    """The deterministic split of an image when the root has no ImageSets lists."""
    return "train" if hashlib.sha256(image_id.encode()).digest()[-1] % 2 == 0 else "val"


def _image_id(text: str) -> str:
    """One VOC image id (no spaces), as on a line of ImageSets/Main/<split>.txt."""
    if len(text.split()) != 1:
        raise ValueError(text)
    return text


def _find_voc_dir(layout: RootLayout) -> Path:
    for relpath in VOC_DIRS:
        if (layout.root / relpath / "JPEGImages").is_dir():
            return layout.root / relpath
    raise layout.error("no JPEGImages/ folder in any of: " + ", ".join(str(layout.root / d) for d in VOC_DIRS))


def _split_ids(layout: RootLayout, voc_dir: Path, split: str) -> set[str] | None:
    """Image ids of ``split`` from ImageSets/Main/<split>.txt, or None when the hash split applies."""
    lists = voc_dir / "ImageSets" / "Main"
    if split == "all" or not any((lists / f"{s}.txt").exists() for s in ("train", "val")):
        return None
    if not (lists / f"{split}.txt").exists():
        raise layout.error(f"{lists / f'{split}.txt'} is missing (the other split list is there)")
    relpath = str((lists / f"{split}.txt").relative_to(layout.root))
    return {image_id for _, (image_id,) in layout.read_table(relpath, (("image id", _image_id),))}


def _index_file(path: Path) -> dict:
    """What the dataset index needs from one annotation file: image name and (class, has parts) per object."""
    annotation = read_annotation(path)
    return {"imname": annotation.imname, "objects": [(o.category, bool(o.parts)) for o in annotation.objects]}


def annotation_index(layout: RootLayout, files: Sequence[Path]) -> dict[str, dict]:
    """:func:`_index_file` of every file, keyed by file stem; cached under ``data/cache/datasets``."""
    stats = [(f.name, f.stat().st_size, f.stat().st_mtime_ns) for f in files]
    key = {"version": _INDEX_VERSION, "folder": str(layout.root.resolve()), "files": config_hash({"s": stats}, 32)}
    path = cache_dir("datasets") / f"pascal_part-index-{config_hash(key)}.pt"
    index = load_torch_cache(path)
    if index is None:
        index = {}
        for f in progress(files, desc="indexing Pascal-Part annotations"):
            try:
                index[f.stem] = _index_file(f)
            except DatasetRootError as error:
                raise layout.error(str(error)) from None
        atomic_torch_save(path, index)
    return index


@dataclass(frozen=True)
class PascalItem:
    image_id: str
    imname: str
    object_index: int  # position in anno.objects (0-based)
    category: str


class PascalPartAnimals(Dataset):
    """Pascal-Part animal objects with parts, as object crops with part masks and part-centre landmarks.

    ``label`` is the index of the object's category in :attr:`classes` (= ``categories``). Items are ordered by image
    id, then by object order in the annotation file.
    """

    def __init__(self, root: str | Path, categories: Sequence[str] | str = CATEGORIES, split: str = "train",
                 image_size: int = 224):
        self.root = Path(root).expanduser()
        self.categories = check_categories(categories)
        self.classes = self.categories
        self.split = check_choice("split", split, SPLITS)
        self.image_size = check_image_size(image_size)
        self._layout = RootLayout("Pascal-Part", self.root, LAYOUT)
        self._layout.require("Annotations_Part")
        self._images = _find_voc_dir(self._layout) / "JPEGImages"
        self.items = self._select(_split_ids(self._layout, self._images.parent, self.split))

    def _select(self, split_ids: set[str] | None) -> list[PascalItem]:
        """The objects of the split and categories, checking that their images exist."""
        files = sorted((self.root / "Annotations_Part").glob("*.mat"))
        if not files:
            raise self._layout.error(f"no .mat files in {self.root / 'Annotations_Part'}")
        if split_ids is not None:
            files = [f for f in files if f.stem in split_ids]
        elif self.split != "all":
            files = [f for f in files if split_of(f.stem) == self.split]
        items = []
        for stem, entry in annotation_index(self._layout, files).items():
            for k, (category, has_parts) in enumerate(entry["objects"]):
                if has_parts and category in self.categories:
                    items.append(PascalItem(stem, entry["imname"], k, category))
        for item in items:
            if not self._image_path(item).exists():
                raise self._layout.error(f"the image {self._image_path(item)} is missing")
        return items

    def _image_path(self, item: PascalItem) -> Path:
        return self._images / f"{item.imname}.jpg"

    def __len__(self) -> int:
        return len(self.items)

    def config(self) -> dict:
        """Everything that decides the content (the key of caches built from this dataset)."""
        return {"dataset": DATASET, "root": str(self.root.resolve()), "categories": list(self.categories),
                "split": self.split, "image_size": self.image_size}

    def load_raw(self, i: int) -> RawObject:
        """Read item ``i`` with numpy only (safe in forked worker processes; see ``arrays.materialize``)."""
        item = self.items[check_index(i, len(self))]
        source = self.root / "Annotations_Part" / f"{item.image_id}.mat"
        try:
            obj = read_annotation(source).objects[item.object_index]
            masks = merge_parts(obj, source)
            box = mask_box(obj.mask)
        except ValueError as error:  # DatasetRootError included
            raise self._layout.error(f"{source}, object {item.object_index + 1}: {error}") from None
        image = read_image(self._layout, self._image_path(item))
        if image.shape[:2] != obj.mask.shape:
            raise self._layout.error(f"the image {self._image_path(item)} is {image.shape[1]}x{image.shape[0]} "
                                     f"but the masks in {source} are {obj.mask.shape[1]}x{obj.mask.shape[0]}")
        frame = (self.image_size, self.image_size)
        points = {name: [] for name in PART_NAMES[item.category]}
        for name, mask in masks.items():
            points[name] = [crop_box_to_frame(part_landmark(mask), box, frame)]
        return raw_object(image, box, points, masks)

    def from_raw(self, i: int, raw: RawObject) -> PartSample:
        """The :class:`PartSample` of item ``i`` from its :meth:`load_raw` result."""
        item = self.items[check_index(i, len(self))]
        meta = {"image_id": item.image_id, "object_index": item.object_index, "split": self.split}
        return object_sample(raw, self.image_size, self.classes.index(item.category), item.category, meta)

    def __getitem__(self, i: int) -> PartSample:
        return self.from_raw(i, self.load_raw(i))
