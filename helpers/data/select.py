"""Pick the dataset a notebook runs on: ``DATASET=`` and ``DATA_ROOT=`` -> a Dataset of ``PartSample``s.

Real datasets hold object crops only; when a task needs negatives (single-category classification), procedural
background images from the synthetic generator are appended (the papers used random images of other datasets).
Real datasets are used whole (``n_per_category`` applies to the synthetic data only); their ``val`` split is the
held-out split of the dataset (CUB: test; Pascal-Part: val; ILSVRC Animal-Part has no split).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from torch.utils.data import Dataset

from ..config import DATASETS, check_choice
from .common import PartSample
from .synthetic import NEGATIVE, SyntheticParts

SPLIT_MAP = {
    "cub200": {"train": "train", "val": "test", "test": "test"},
    "pascal_part": {"train": "train", "val": "val", "test": "val"},
}
ILSVRC_SYNSETS = {"bird": "n01503061", "cat": "n02121808", "cow": "n02402425", "dog": "n02084071",
                  "horse": "n02374451", "sheep": "n02411705"}


class WithNegatives(Dataset):
    """A dataset of object crops followed by ``n_negatives`` procedural background images (label: last class)."""

    def __init__(self, positives: Dataset, n_negatives: int, split: str, image_size: int, seed: int):
        self.positives = positives
        self.negatives = SyntheticParts(("bird",), split, 0, n_negatives, image_size, seed)
        self.classes = tuple(positives.classes) + (NEGATIVE,)

    def __len__(self) -> int:
        return len(self.positives) + len(self.negatives)

    def config(self) -> dict:
        return {**self.positives.config(), "negatives": self.negatives.config()}

    def _split(self, i: int) -> tuple[Dataset, int]:
        return (self.positives, i) if i < len(self.positives) else (self.negatives, i - len(self.positives))

    def load_raw(self, i: int):
        dataset, j = self._split(i)
        return dataset.load_raw(j)

    def from_raw(self, i: int, raw) -> PartSample:
        dataset, j = self._split(i)
        return self._relabel(dataset.from_raw(j, raw))

    def __getitem__(self, i: int) -> PartSample:
        dataset, j = self._split(i)
        return self._relabel(dataset[j])

    def _relabel(self, sample: PartSample) -> PartSample:
        sample.label = self.classes.index(NEGATIVE) if sample.is_negative else sample.label
        return sample


def _real_dataset(name: str, root: Path, split: str, categories: Sequence[str], image_size: int) -> Dataset:
    if name == "cub200":
        if tuple(categories) != ("bird",):
            raise ValueError(f"CUB-200-2011 holds birds only; use categories=('bird',), got {tuple(categories)}")
        from .cub import CUBParts

        return CUBParts(root, SPLIT_MAP[name][split], image_size)
    if name == "pascal_part":
        from .pascal_part import PascalPartAnimals

        return PascalPartAnimals(root, categories, SPLIT_MAP[name][split], image_size)
    from .ilsvrc_part import ILSVRCAnimalParts

    return ILSVRCAnimalParts(root, [ILSVRC_SYNSETS[c] for c in categories], image_size)


def open_dataset(settings: dict[str, Any], split: str, categories: Sequence[str], n_per_category: int,
                 n_negatives: int = 0) -> Dataset:
    """The dataset named by ``settings["dataset"]`` (``synthetic`` by default) for ``split`` and ``categories``.

    Uses ``settings["image_size"]``, ``settings["data_seed"]`` (synthetic data and negatives) and, for real
    datasets, ``settings["data_root"]``.
    """
    name = check_choice("dataset", settings.get("dataset", "synthetic"), DATASETS)
    seed = settings.get("data_seed", 0)
    if name == "synthetic":
        return SyntheticParts(categories, split, n_per_category, n_negatives, settings["image_size"], seed)
    if not settings.get("data_root"):
        raise ValueError(f"DATASET={name!r} needs DATA_ROOT, the folder holding the dataset (see data/README.md)")
    positives = _real_dataset(name, Path(settings["data_root"]), split, categories, settings["image_size"])
    if n_negatives:
        return WithNegatives(positives, n_negatives, split, settings["image_size"], seed)
    return positives
