"""Zhang et al.'s ILSVRC 2013 DET Animal-Part data (30 animal synsets) as :class:`PartSample` object crops.

Root layout, per synset ``<wnid>``: ``<wnid>_obj/img/data.mat`` (MATLAB v7.3, ``samples(i).obj.bndbox``),
``<wnid>_obj/img/img/%05d.jpg`` (image i, 1-based) and the part truth ``truth_part01.mat`` (head) and
``truth_part02.mat`` (frontal legs; the goldfish has none) in ``<wnid>_obj/`` or, as in Zhang's code release,
``<wnid>/``. Truth files are read with h5py when they are v7.3 (ILSVRC) and with scipy when they are v5 (VOC).

The object crop follows Zhang's code: the box values are MATLAB indices, rows ymin..ymax and columns xmin..xmax
inclusive (clamped to the image), resized anisotropically to the input size. A part can have several instances:
``landmarks[name]`` is the first, ``meta["instances"][name]`` lists all, ``meta["part_scales"][name]`` their part-box
(height, width).

Coordinates of ``pHW_center`` (evidence from the fixture files and Zhang's code release):

* They are MATLAB 1-based pixel coordinates of the 224 x 224 crop, and :func:`read_truth_file` subtracts 1.
  Zhang's evaluation compares them with unit centres ``centerStart + (x - 1) * stride`` (``x2p_.m``), where conv1's
  first unit sits at 1, the first pixel (VGG-16 conv5: 8.5, our 0-based 7.5); subtracting 1 therefore reproduces the
  distances of the papers exactly.
* ILSVRC (v7.3): the part boxes ``pHW_center -+ pHW_scale / 2`` have integer edges in the 224 frame (all 432 values of
  the dog file), from -2 to 228: they were drawn on the 224 x 224 crops. Along x, 7 boxes start before 1 and 7 end
  after 225, symmetric about the 1-based frame [1, 225] (against 1 and 17 for a 0-based [0, 224]).
* VOC (v5): the values are exactly ``((pmin + pmax) / 2 - omin) * 224 / (omax - omin)`` with the file's own
  ``obj.bndbox`` (Zhang's ``readPartTruth.m``; all 377 records recover integer part boxes to 1e-13), i.e. 0 at the
  object's first pixel. Read as 1-based, such a point lands at most one pixel (of 224) off its exact position.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import scipy.io
from torch.utils.data import Dataset

from .common import PartSample, Point
from .root_check import (
    DatasetRootError,
    RawObject,
    RootLayout,
    check_image_size,
    check_index,
    clamp_box,
    object_sample,
    raw_object,
    read_image,
)

DATASET = "ilsvrc_part"
TRUTH_SIZE = 224  # the truth files' crop frame
# The 30 animal synsets of the data set and their ILSVRC DET names.
SYNSETS: dict[str, str] = {
    "n01443537": "goldfish", "n01503061": "bird", "n01639765": "frog", "n01662784": "turtle",
    "n01674464": "lizard", "n01882714": "koala", "n01982650": "lobster", "n02084071": "dog",
    "n02118333": "fox", "n02121808": "domestic cat", "n02129165": "lion", "n02129604": "tiger",
    "n02131653": "bear", "n02324045": "rabbit", "n02342885": "hamster", "n02355227": "squirrel",
    "n02374451": "horse", "n02391049": "zebra", "n02395003": "swine", "n02398521": "hippopotamus",
    "n02402425": "cattle", "n02411705": "sheep", "n02419796": "antelope", "n02437136": "camel",
    "n02444819": "otter", "n02454379": "armadillo", "n02484322": "monkey", "n02503517": "elephant",
    "n02509815": "red panda", "n02510455": "giant panda",
}
PART_FILES: dict[str, int] = {"head": 1, "frontal_legs": 2}  # landmark -> truth_partNN.mat
HEAD_ONLY_SYNSETS = frozenset({"n01443537"})  # goldfish: no frontal-legs truth file
LAYOUT = (
    "<wnid>_obj/img/data.mat  (MATLAB v7.3: samples(i).obj.bndbox.{xmin,xmax,ymin,ymax})",
    "<wnid>_obj/img/img/00001.jpg, 00002.jpg, ...  (image i of data.mat)",
    "<wnid>_obj/truth_part01.mat (head), truth_part02.mat (frontal legs)  (or <wnid>/truth_partNN.mat)",
)


def _is_reference(node: Any) -> bool:
    return isinstance(node, h5py.Dataset) and h5py.check_dtype(ref=node.dtype) is not None


def _elements(file: h5py.File, node: Any) -> list[Any]:
    """The elements of a v7.3 cell/struct-array field (a dataset of references), or ``[node]`` for a plain value."""
    if _is_reference(node):
        return [file[ref] for ref in node[()].ravel()]
    return [node]


def _matrix(node: h5py.Dataset) -> np.ndarray:
    """A numeric v7.3 array in MATLAB's orientation (h5py reads it transposed); ``[]`` gives a (0, 0) array."""
    if node.attrs.get("MATLAB_empty", 0):
        return np.zeros((0, 0))
    return np.atleast_2d(np.asarray(node[()], dtype=float)).T


def _number(node: h5py.Dataset) -> float:
    """A scalar stored as a number or as a MATLAB char array (e.g. ``'123'``)."""
    if node.attrs.get("MATLAB_class") == b"char":
        return float("".join(map(chr, node[()].ravel())))
    return float(np.asarray(node[()]).ravel()[0])


def _truth_arrays_mat73(path: Path) -> tuple[list[np.ndarray], list[np.ndarray]]:
    with h5py.File(path, "r") as file:
        truth = file["truth"]
        centres = [_matrix(node) for node in _elements(file, truth["pHW_center"])]
        scales = [_matrix(node) for node in _elements(file, truth["pHW_scale"])]
    return centres, scales


def _truth_arrays_v5(path: Path) -> tuple[list[np.ndarray], list[np.ndarray]]:
    records = scipy.io.loadmat(path)["truth"].ravel()
    return ([np.asarray(r["pHW_center"], dtype=float) for r in records],
            [np.asarray(r["pHW_scale"], dtype=float) for r in records])


def _truth_arrays(path: str | Path) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Per record, the 2 x K ``pHW_center`` and ``pHW_scale`` arrays as stored (K = 0 when the part is absent)."""
    path = Path(path)
    if not path.exists():
        raise DatasetRootError(f"{path} is missing")
    try:
        centres, scales = (_truth_arrays_mat73 if h5py.is_hdf5(path) else _truth_arrays_v5)(path)
    except (KeyError, IndexError, ValueError, TypeError, OSError, scipy.io.matlab.MatReadError) as error:
        raise DatasetRootError(f"{path} is not a truth file ({type(error).__name__}: {error})") from None
    for i, (centre, scale) in enumerate(zip(centres, scales, strict=True), start=1):
        if centre.size and (centre.shape[0] != 2 or centre.shape != scale.shape):
            raise DatasetRootError(f"{path}: truth({i}) has pHW_center {centre.shape} and pHW_scale {scale.shape}, "
                                   "expected two 2 x K arrays")
    return centres, scales


def _columns(array: np.ndarray, offset: float = 0.0) -> list[tuple[float, float]]:
    return [(float(h) + offset, float(w) + offset) for h, w in array.T] if array.size else []


def read_truth_file(path: str | Path) -> list[list[Point]]:
    """Per record (image), the part instances' centres (y, x), 0-based, in the 224 x 224 crop frame."""
    return [_columns(centre, -1.0) for centre in _truth_arrays(path)[0]]


def read_truth_scales(path: str | Path) -> list[list[tuple[float, float]]]:
    """Per record, the part boxes' (height, width) in the 224 x 224 crop frame, matching :func:`read_truth_file`."""
    return [_columns(scale) for scale in _truth_arrays(path)[1]]


def read_object_boxes(path: str | Path) -> list[tuple[float, float, float, float]]:
    """``samples(i).obj.bndbox`` of a v7.3 ``data.mat`` as (xmin, ymin, xmax, ymax), in file order."""
    try:
        with h5py.File(path, "r") as file:
            boxes = []
            for obj in _elements(file, file["samples"]["obj"]):
                bndbox = _elements(file, obj["bndbox"])[0]
                boxes.append(tuple(_number(_elements(file, bndbox[k])[0]) for k in ("xmin", "ymin", "xmax", "ymax")))
        return boxes
    except (KeyError, IndexError, ValueError, TypeError, OSError) as error:
        raise DatasetRootError(f"{path} is not an object-box file ({type(error).__name__}: {error})") from None


def frame_point(point: Point, size: int) -> Point:
    """A (y, x) of the 224 x 224 truth frame in a ``size`` x ``size`` frame (pixel centres scale about pixel edges)."""
    scale = size / TRUTH_SIZE
    return (point[0] + 0.5) * scale - 0.5, (point[1] + 0.5) * scale - 0.5


@dataclass(frozen=True)
class ILSVRCItem:
    synset: str
    number: int  # the image number i of ``%05d.jpg`` and ``samples(i)`` (1-based)
    bndbox: tuple[float, float, float, float]  # (xmin, ymin, xmax, ymax) MATLAB indices
    centres: dict[str, list[Point]]  # 0-based, 224 frame
    scales: dict[str, list[tuple[float, float]]]


class ILSVRCAnimalParts(Dataset):
    """The ILSVRC Animal-Part objects of ``synsets`` (default: every ``<wnid>_obj`` folder of the root).

    :attr:`classes` / :attr:`categories` are the synsets' names (:data:`SYNSETS`; the wnid for unknown synsets);
    ``label`` indexes them. Items follow synset order, then image number.
    """

    def __init__(self, root: str | Path, synsets: Sequence[str] | str | None = None, image_size: int = 224):
        self.root = Path(root).expanduser()
        self.image_size = check_image_size(image_size)
        self._layout = RootLayout("ILSVRC Animal-Part", self.root, LAYOUT)
        self._layout.require()
        self.synsets = self._synsets(synsets)
        self.classes = tuple(SYNSETS.get(wnid, wnid) for wnid in self.synsets)
        self.categories = self.classes
        self.items = [item for wnid in self.synsets for item in self._read_synset(wnid)]

    def _synsets(self, synsets: Sequence[str] | str | None) -> tuple[str, ...]:
        if synsets is None:
            found = tuple(sorted(p.name[: -len("_obj")] for p in self.root.glob("*_obj") if p.is_dir()))
            if not found:
                raise self._layout.error(f"no <wnid>_obj folder in {self.root}")
            return found
        synsets = (synsets,) if isinstance(synsets, str) else tuple(synsets)
        if not synsets or len(set(synsets)) != len(synsets):
            raise ValueError(f"synsets must be distinct and at least one, got {synsets}")
        return synsets

    def _truth_path(self, wnid: str, part: int) -> Path | None:
        for folder in (f"{wnid}_obj", wnid):
            path = self.root / folder / f"truth_part{part:02d}.mat"
            if path.exists():
                return path
        return None

    def _read_synset(self, wnid: str) -> list[ILSVRCItem]:
        """One item per sample of ``<wnid>_obj/img/data.mat``, with the part instances of the truth files."""
        self._layout.require(f"{wnid}_obj/img/data.mat", f"{wnid}_obj/img/img")
        centres, scales = {}, {}
        try:
            boxes = read_object_boxes(self.root / f"{wnid}_obj/img/data.mat")
            for name, part in PART_FILES.items():
                path = self._truth_path(wnid, part)
                if path is None and (part == 1 or wnid not in HEAD_ONLY_SYNSETS):
                    raise DatasetRootError(f"truth_part{part:02d}.mat of {wnid} is missing")
                centres[name] = read_truth_file(path) if path else [[] for _ in boxes]
                scales[name] = read_truth_scales(path) if path else [[] for _ in boxes]
                if len(centres[name]) != len(boxes):
                    raise DatasetRootError(f"{path} has {len(centres[name])} records but data.mat has "
                                           f"{len(boxes)} samples")
        except DatasetRootError as error:
            raise self._layout.error(str(error)) from None
        return [ILSVRCItem(wnid, i + 1, box, {n: c[i] for n, c in centres.items()},
                           {n: s[i] for n, s in scales.items()}) for i, box in enumerate(boxes)]

    def __len__(self) -> int:
        return len(self.items)

    def config(self) -> dict:
        """Everything that decides the content (the key of caches built from this dataset)."""
        return {"dataset": DATASET, "root": str(self.root.resolve()), "synsets": list(self.synsets),
                "image_size": self.image_size}

    def load_raw(self, i: int) -> RawObject:
        """Read item ``i`` with numpy only (safe in forked worker processes; see ``arrays.materialize``)."""
        item = self.items[check_index(i, len(self))]
        path = self.root / f"{item.synset}_obj/img/img/{item.number:05d}.jpg"
        image = read_image(self._layout, path)
        xmin, ymin, xmax, ymax = item.bndbox
        try:
            box = clamp_box((ymin - 1, xmin - 1, ymax, xmax), image.shape)
        except ValueError as error:
            raise self._layout.error(f"{path}: {error}") from None
        points = {name: [frame_point(p, self.image_size) for p in pts] for name, pts in item.centres.items()}
        return raw_object(image, box, points)

    def from_raw(self, i: int, raw: RawObject) -> PartSample:
        """The :class:`PartSample` of item ``i`` from its :meth:`load_raw` result."""
        item = self.items[check_index(i, len(self))]
        scale = self.image_size / TRUTH_SIZE
        meta = {
            "synset": item.synset,
            "number": item.number,
            "part_scales": {n: [(h * scale, w * scale) for h, w in s] for n, s in item.scales.items()},
        }
        label = self.synsets.index(item.synset)
        return object_sample(raw, self.image_size, label, self.classes[label], meta)

    def __getitem__(self, i: int) -> PartSample:
        return self.from_raw(i, self.load_raw(i))
