"""Metrics of a layer on a dataset: stream the layer's maps through the accumulators of ``helpers.metrics``.

Any model works: a :class:`MapSource` turns images into the layer's maps (a performer's named layer via
:func:`named_layer`, or any callable, e.g. an explainer's interpretable track) and carries the layer's geometry.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from .config import batch_slices, get_device, progress
from .data.arrays import PartArrays
from .data.common import ICNN_PART_GROUPS
from .metrics import (
    ActivationThreshold,
    DissectionResult,
    InstabilityResult,
    LocationInstability,
    PartInterpretabilityResult,
    PartIoU,
    random_position_instability,
)
from .metrics.instability import Protocol, present_once
from .metrics.parts import PartProtocol
from .models.features import FeatureRecorder
from .models.geometry import LayerGeometry, feature_size, layer_geometry
from .models.nets import Performer

PASCAL_LANDMARKS = ("head", "neck", "torso")  # ICNN / explainer protocol on Pascal-Part (and the synthetic data)
CUB_LANDMARKS = ("head", "back", "tail")  # explanatory graph / ICNN protocol on CUB-200-2011
ILSVRC_LANDMARKS = ("head", "frontal_legs")


def protocol_landmarks(dataset: str) -> tuple[str, ...]:
    """The landmarks the papers' instability tables use for ``dataset``."""
    return {"cub200": CUB_LANDMARKS, "ilsvrc_part": ILSVRC_LANDMARKS}.get(dataset, PASCAL_LANDMARKS)


@dataclass
class MapSource:
    """Images (float, on the device) -> a layer's maps (B, C, h, w); ``geometry`` places its units in the image."""

    maps: Callable[[torch.Tensor], torch.Tensor]
    geometry: LayerGeometry
    map_size: tuple[int, int]
    device: torch.device

    @torch.no_grad()
    def batches(self, arrays: PartArrays, batch_size: int = 128) -> Iterator[tuple[slice, torch.Tensor]]:
        """(index range, maps) for consecutive batches of ``arrays`` (one empty batch if it has no image)."""
        for index in progress(batch_slices(len(arrays), batch_size), desc="maps"):
            yield index, self.maps(arrays.float_images(index).to(self.device))


@dataclass
class PrecomputedMaps:
    """Maps computed already, ``computed`` (N, C, h, w) for the N images they are evaluated on (e.g. the positives),
    with the layer's ``geometry``: a stand-in for :class:`MapSource` in the metrics below."""

    computed: torch.Tensor
    geometry: LayerGeometry
    device: torch.device

    @property
    def map_size(self) -> tuple[int, int]:
        return tuple(self.computed.shape[-2:])

    def batches(self, arrays: PartArrays, batch_size: int = 128) -> Iterator[tuple[slice, torch.Tensor]]:
        """(index range, maps on the device) for consecutive batches (one empty batch if there is no image);
        ``arrays`` are the images of the maps."""
        if len(arrays) != len(self.computed):
            raise ValueError(f"maps of {len(self.computed)} images for {len(arrays)} images")
        for index in batch_slices(len(arrays), batch_size):
            yield index, self.computed[index].to(self.device)


AnyMapSource = MapSource | PrecomputedMaps  # what the metrics below stream maps from


def named_layer(net: Performer, layer: str, device: str | torch.device = "auto") -> MapSource:
    """The output of ``net``'s module ``layer`` (a conv name means its rectified output: ``net.relu_of``)."""
    device = get_device(device)
    name = net.relu_of(layer) if isinstance(net.layer(layer), nn.Conv2d) else layer
    net.eval().to(device)

    def maps(images: torch.Tensor) -> torch.Tensor:
        with FeatureRecorder(net, [name]) as recorder:
            net(images)
        return recorder.outputs[name]

    size = feature_size(net.features, name, net.input_size)
    return MapSource(maps, layer_geometry(net.features, name), size, device)


def first_with_positives(arrays: Mapping[str, PartArrays]) -> str:
    """The first key of ``arrays`` whose arrays hold a positive image, else the first key (e.g. the category whose
    test images a notebook's figures show)."""
    return next((key for key, held in arrays.items() if not held.is_negative.all()), next(iter(arrays)))


def mean_of_measured(values: Sequence[float], measured: Sequence[bool]) -> float | None:
    """The mean of the ``values`` whose ``measured`` flag is set (None when none is)."""
    kept = [value for value, ok in zip(values, measured, strict=True) if ok]
    return float(np.mean(kept)) if kept else None


def instability_shortfall(arrays: PartArrays, landmarks: Sequence[str], by_category: bool = False) -> str | None:
    """Why :func:`instability` cannot be measured on the positives of ``arrays``, or None when it can. Each D_{f,k}
    needs two positive images with exactly one landmark k. Pooled (the ``single`` protocol) every landmark needs
    them; ``by_category`` (the multi-category protocols) some category needs them for each landmark it has (once)
    on any of its images."""
    positives = arrays.positives()
    if not len(positives):
        return "no positive image"
    points, counts = positives.select_landmarks(landmarks)
    once = present_once(points, counts)
    groups = dict.fromkeys(positives.categories) if by_category else {"all": None}
    reasons = []
    for group in groups:
        members = torch.tensor([c == group for c in positives.categories]) if by_category else slice(None)
        images = once[members].sum(0).tolist()
        short = [f"{name} on {n}" for name, n in zip(landmarks, images, strict=True)
                 if n < 2 and (n > 0 or not by_category)]
        if not short and any(images):
            return None
        reason = (f"too few positive images with exactly one landmark ({', '.join(short)}; 2 needed)" if short
                  else "no landmark annotated exactly once")
        reasons.append(f"{group}: {reason}" if by_category else reason)
    return "; ".join(reasons)


def instability(source: AnyMapSource, arrays: PartArrays, landmarks: Sequence[str], top_k: int = 100,
                batch_size: int = 128, protocol: Protocol = "single", categories: torch.Tensor | None = None,
                num_categories: int = 1) -> InstabilityResult:
    """Location instability (ICNN Sec. 5.2.2 protocol) of every channel of ``source`` on the positives of ``arrays``.
    Multi-category ``protocol``s need each positive's category index (``categories``, among ``num_categories``)."""
    positives = arrays.positives()
    points, counts = positives.select_landmarks(landmarks)
    accumulator = LocationInstability(positives.image_size, top_k=top_k, num_categories=num_categories)
    for index, maps in source.batches(positives, batch_size):
        accumulator.update_maps(maps, source.geometry, points[index].to(maps.device),
                                categories=None if categories is None else categories[index].to(maps.device),
                                counts=counts[index].to(maps.device))
    return accumulator.result(protocol)


def layer_instability(net: Performer, conv: str, arrays: PartArrays, landmarks: Sequence[str], top_k: int = 100,
                      batch_size: int = 128, device: str | torch.device = "auto") -> InstabilityResult:
    """:func:`instability` of a performer's conv layer ``conv`` (after its ReLU)."""
    return instability(named_layer(net, conv, device), arrays, landmarks, top_k, batch_size)


def random_reference_instability(source: AnyMapSource, arrays: PartArrays, landmarks: Sequence[str], top_k: int = 100,
                                 seed: int = 0, protocol: Protocol = "single", categories: torch.Tensor | None = None,
                                 num_categories: int = 1) -> InstabilityResult:
    """The instability that uniformly random unit positions of the layer give on the same images and landmarks
    (the reference the papers' ordinary nets sit close to), under the same protocol as :func:`instability`."""
    positives = arrays.positives()
    points, counts = positives.select_landmarks(landmarks)
    return random_position_instability(points, positives.image_size, source.geometry, source.map_size, top_k=top_k,
                                       counts=counts, categories=categories, num_categories=num_categories,
                                       protocol=protocol, seed=seed)


def part_groups(arrays: PartArrays) -> dict[str, tuple[str, ...]]:
    """The merged part groups of the ICNN paper for the categories present in ``arrays`` (union over them)."""
    groups: dict[str, tuple[str, ...]] = {}
    for category in dict.fromkeys(arrays.positives().categories):
        for group, parts in ICNN_PART_GROUPS.get(category, {}).items():
            groups[group] = tuple(dict.fromkeys(groups.get(group, ()) + parts))
    return groups


def _part_accumulator(source: AnyMapSource, arrays: PartArrays, groups: Mapping[str, Sequence[str]],
                      batch_size: int, categories: torch.Tensor | None = None, num_categories: int = 1,
                      rf_radius: float | None = None) -> tuple[PartIoU, tuple[str, ...]]:
    """Two passes over the positives: per-channel 99.5th-percentile thresholds, then IoUs with the part groups."""
    positives = arrays.positives()
    names, labels = positives.merged_part_labels(groups)
    threshold = ActivationThreshold(len(positives))
    for _, maps in source.batches(positives, batch_size):
        threshold.update(maps)
    accumulator = PartIoU(threshold.result(), len(names), geometry=source.geometry, num_categories=num_categories,
                          rf_radius=rf_radius)
    for index, maps in source.batches(positives, batch_size):
        accumulator.update(maps, labels[index].to(maps.device),
                           None if categories is None else categories[index].to(maps.device))
    return accumulator, names


def part_interpretability(source: AnyMapSource, arrays: PartArrays, groups: Mapping[str, Sequence[str]] | None = None,
                          batch_size: int = 128, protocol: PartProtocol = "single",
                          categories: torch.Tensor | None = None, num_categories: int = 1,
                          rf_radius: float | None = None) -> tuple[PartInterpretabilityResult, tuple[str, ...]]:
    """Part interpretability (ICNN Sec. 5.2.1) of every channel against the merged part groups (default: the ICNN
    paper's groups for the categories present); returns the result and the group names (``best_part`` indexes).
    ``assigned_category`` needs each positive's category (``categories``); ``rf_radius``: round-RF regions."""
    accumulator, names = _part_accumulator(source, arrays, groups or part_groups(arrays), batch_size, categories,
                                           num_categories, rf_radius)
    return accumulator.interpretability(protocol), names


def dissection(source: MapSource, arrays: PartArrays, groups: Mapping[str, Sequence[str]] | None = None,
               batch_size: int = 128) -> tuple[DissectionResult, tuple[str, ...]]:
    """Network Dissection IoU (dataset-level, detector if IoU > 0.04) of every channel against the part groups."""
    accumulator, names = _part_accumulator(source, arrays, groups or part_groups(arrays), batch_size)
    return accumulator.dissection(), names
