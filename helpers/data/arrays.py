"""Columnar, cacheable form of a part-annotated dataset: what training loops and metrics consume.

A :class:`PartArrays` holds uint8 images, labels, landmarks as an (N, K, 2) tensor with NaN where a landmark is
absent, and visible parts as an (N, H, W) label map (0 = no part, k + 1 = ``part_names[k]``).
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, fields

import torch
from torch.utils.data import Dataset

from ..config import cache_dir
from ..io import atomic_torch_save, config_hash, load_torch_cache
from .common import PartSample

ARRAYS_FORMAT = 2  # bump when the cached fields change


@dataclass
class PartArrays:
    images: torch.Tensor  # (N, 3, H, W) uint8
    labels: torch.Tensor  # (N,) long, index into ``classes``
    is_negative: torch.Tensor  # (N,) bool
    categories: list[str]  # per sample
    classes: tuple[str, ...]
    landmark_names: tuple[str, ...]
    landmarks: torch.Tensor  # (N, K, 2) float32 (y, x); NaN = absent
    landmark_counts: torch.Tensor  # (N, K) uint8: instances of each landmark (real data may have several)
    part_names: tuple[str, ...]
    part_labels: torch.Tensor  # (N, H, W) uint8; 0 = no part

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def image_size(self) -> tuple[int, int]:
        return int(self.images.shape[-2]), int(self.images.shape[-1])

    def float_images(self, index: slice | torch.Tensor | Sequence[int] = slice(None)) -> torch.Tensor:
        """Images as float in [0, 1]."""
        return self.images[index].float().div_(255.0)

    def subset(self, index: torch.Tensor | Sequence[int]) -> PartArrays:
        """The samples at ``index`` (indices or a bool mask)."""
        index = torch.as_tensor(index)
        if index.dtype == torch.bool:
            index = index.nonzero().flatten()
        picked = [self.categories[i] for i in index.tolist()]
        return PartArrays(
            self.images[index], self.labels[index], self.is_negative[index], picked, self.classes,
            self.landmark_names, self.landmarks[index], self.landmark_counts[index], self.part_names,
            self.part_labels[index],
        )

    def positives(self) -> PartArrays:
        return self.subset(~self.is_negative)

    def part_mask(self, name: str) -> torch.Tensor:
        """(N, H, W) bool mask of part ``name``."""
        if name not in self.part_names:
            raise KeyError(f"unknown part {name!r}; parts: {', '.join(self.part_names)}")
        return self.part_labels == self.part_names.index(name) + 1

    def merged_part_labels(self, groups: Mapping[str, Sequence[str]]) -> tuple[tuple[str, ...], torch.Tensor]:
        """Relabel parts into ``groups`` (group -> part names); returns (group names, (N, H, W) label map)."""
        lookup = torch.zeros(len(self.part_names) + 1, dtype=torch.uint8)
        names = tuple(groups)
        for g, group in enumerate(names):
            for part in groups[group]:
                if part in self.part_names:
                    lookup[self.part_names.index(part) + 1] = g + 1
        return names, lookup[self.part_labels.long()]

    def landmark(self, name: str) -> torch.Tensor:
        """(N, 2) positions of landmark ``name`` (NaN where absent)."""
        return self.landmarks[:, self._landmark_index(name)]

    def select_landmarks(self, names: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """(N, K, 2) positions and (N, K) instance counts of the landmarks ``names``, in that order (any names for
        an empty set, which holds no landmark names)."""
        if not len(self):
            return torch.zeros((0, len(names), 2)), torch.zeros((0, len(names)), dtype=torch.uint8)
        index = [self._landmark_index(name) for name in names]
        return self.landmarks[:, index], self.landmark_counts[:, index]

    def _landmark_index(self, name: str) -> int:
        if name not in self.landmark_names:
            raise KeyError(f"unknown landmark {name!r}; landmarks: {', '.join(self.landmark_names)}")
        return self.landmark_names.index(name)

    def to_state(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @staticmethod
    def from_state(state: dict) -> PartArrays:
        state = dict(state)
        for key in ("classes", "landmark_names", "part_names"):
            state[key] = tuple(state[key])
        state["categories"] = list(state["categories"])
        return PartArrays(**state)

    @staticmethod
    def from_samples(samples: Sequence[PartSample], classes: Sequence[str]) -> PartArrays:
        """Stack samples (parts/landmarks absent in a sample are absent, not errors)."""
        landmark_names = _ordered_union(s.landmarks for s in samples)
        part_names = _ordered_union(s.part_masks for s in samples)
        n = len(samples)
        height, width = samples[0].size if samples else (0, 0)
        landmarks = torch.full((n, len(landmark_names), 2), float("nan"))
        counts = torch.zeros((n, len(landmark_names)), dtype=torch.uint8)
        part_labels = torch.zeros((n, height, width), dtype=torch.uint8)
        for i, sample in enumerate(samples):
            instances = sample.meta.get("instances", {})
            for name, point in sample.landmarks.items():
                if point is not None:
                    landmarks[i, landmark_names.index(name)] = torch.tensor(point)
                    counts[i, landmark_names.index(name)] = len(instances.get(name, (point,)))
            for name, mask in sample.part_masks.items():
                part_labels[i][mask] = part_names.index(name) + 1
        images = torch.stack([(s.image * 255).round().to(torch.uint8) for s in samples]) if samples else \
            torch.zeros((0, 3, 0, 0), dtype=torch.uint8)
        return PartArrays(
            images=images,
            labels=torch.tensor([s.label for s in samples], dtype=torch.long),
            is_negative=torch.tensor([s.is_negative for s in samples], dtype=torch.bool),
            categories=[s.category for s in samples],
            classes=tuple(classes),
            landmark_names=landmark_names,
            landmarks=landmarks,
            landmark_counts=counts,
            part_names=part_names,
            part_labels=part_labels,
        )


    @staticmethod
    def concat(parts: Sequence[PartArrays], classes: Sequence[str] | None = None) -> PartArrays:
        """Concatenate arrays whose landmark and part names may differ (names are unioned, part labels remapped).

        With ``classes``, labels are recomputed as each sample's category's index in ``classes``."""
        if len(parts) == 1 and classes is None:
            return parts[0]
        landmark_names = _ordered_union(p.landmark_names for p in parts)
        part_names = _ordered_union(p.part_names for p in parts)
        landmarks, counts, labels = [], [], []
        for part in parts:
            where = [landmark_names.index(n) for n in part.landmark_names]
            moved = torch.full((len(part), len(landmark_names), 2), float("nan"))
            moved[:, where] = part.landmarks
            landmarks.append(moved)
            moved_counts = torch.zeros((len(part), len(landmark_names)), dtype=torch.uint8)
            moved_counts[:, where] = part.landmark_counts
            counts.append(moved_counts)
            lookup = torch.tensor([0] + [part_names.index(n) + 1 for n in part.part_names], dtype=torch.uint8)
            labels.append(lookup[part.part_labels.long()])
        categories = [c for p in parts for c in p.categories]
        if classes is None:
            classes, label = parts[0].classes, torch.cat([p.labels for p in parts])
        else:
            classes = tuple(classes)
            label = torch.tensor([classes.index(c) for c in categories], dtype=torch.long)
        return PartArrays(
            torch.cat([p.images for p in parts]), label, torch.cat([p.is_negative for p in parts]), categories,
            classes, landmark_names, torch.cat(landmarks), torch.cat(counts), part_names, torch.cat(labels),
        )


def _ordered_union(groups) -> tuple[str, ...]:
    names: dict[str, None] = {}
    for group in groups:
        names.update(dict.fromkeys(group))
    return tuple(names)


def _load_raw_chunk(dataset: Dataset, indices: list[int]) -> list:
    return [dataset.load_raw(i) for i in indices]


def materialize(dataset: Dataset, workers: int | None = None, chunk: int = 64) -> PartArrays:
    """Load every sample of ``dataset`` into a :class:`PartArrays`, ``chunk`` samples at a time (memory stays at
    the uint8 result plus one chunk of float samples).

    Datasets with a torch-free ``load_raw(i)`` (and ``from_raw(i, raw)``) are loaded in ``workers`` forked processes
    (default: the CPU count, at most 4); torch work stays in this process, since torch's thread pool does not
    survive a fork. Other datasets are read serially.
    """
    n = len(dataset)
    classes = getattr(dataset, "classes", ())
    workers = workers if workers is not None else min(os.cpu_count() or 1, 4)
    chunks = [list(range(start, min(start + chunk, n))) for start in range(0, n, chunk)] or [[]]
    if not hasattr(dataset, "load_raw"):
        parts = [PartArrays.from_samples([dataset[i] for i in c], classes) for c in chunks]
    elif workers <= 1 or n < 2 * chunk:
        parts = [PartArrays.from_samples([dataset.from_raw(i, dataset.load_raw(i)) for i in c], classes)
                 for c in chunks]
    else:
        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork")) as pool:
            raws = pool.map(_load_raw_chunk, [dataset] * len(chunks), chunks)
            parts = [
                PartArrays.from_samples([dataset.from_raw(i, raw) for i, raw in zip(c, chunk_raws, strict=True)],
                                        classes)
                for c, chunk_raws in zip(chunks, raws, strict=True)
            ]
    return PartArrays.concat(parts)


def load_arrays(dataset: Dataset, workers: int | None = None, use_cache: bool = True) -> PartArrays:
    """:func:`materialize` with a disk cache keyed by ``dataset.config()`` (atomic write; corrupt files rebuilt).

    A dataset with ``blocks()`` (e.g. one block per category) is cached block by block, so datasets that share
    blocks (single- and multi-category data of the same split) render them once."""
    blocks = dataset.blocks() if hasattr(dataset, "blocks") else []
    if blocks:
        return PartArrays.concat([load_arrays(block, workers, use_cache) for block in blocks], classes=dataset.classes)
    if not use_cache or not hasattr(dataset, "config"):
        return materialize(dataset, workers)
    key = {**dataset.config(), "format": ARRAYS_FORMAT}
    path = cache_dir("datasets") / f"{key.get('dataset', 'data')}-{config_hash(key)}.pt"
    state = load_torch_cache(path)
    if state is not None:
        return PartArrays.from_state(state)
    arrays = materialize(dataset, workers)
    atomic_torch_save(path, arrays.to_state())
    return arrays
