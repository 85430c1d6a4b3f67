"""Metrics of a net's layer on a dataset: stream the layer's maps through the accumulators of ``helpers.metrics``."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from .data.arrays import PartArrays
from .metrics import InstabilityResult, LocationInstability, random_position_instability
from .models.features import iter_features
from .models.geometry import feature_size, layer_geometry
from .models.nets import Performer

PASCAL_LANDMARKS = ("head", "neck", "torso")  # ICNN / explainer protocol on Pascal-Part (and the synthetic data)
CUB_LANDMARKS = ("head", "back", "tail")  # explanatory graph / ICNN protocol on CUB-200-2011
ILSVRC_LANDMARKS = ("head", "frontal_legs")


def protocol_landmarks(dataset: str) -> tuple[str, ...]:
    """The landmarks the papers' instability tables use for ``dataset``."""
    return {"cub200": CUB_LANDMARKS, "ilsvrc_part": ILSVRC_LANDMARKS}.get(dataset, PASCAL_LANDMARKS)


def layer_instability(net: Performer, conv: str, arrays: PartArrays, landmarks: Sequence[str], top_k: int = 100,
                      batch_size: int = 128, device: str | torch.device = "auto") -> InstabilityResult:
    """Location instability (ICNN Sec. 5.2.2 protocol) of every filter of conv layer ``conv`` (after its ReLU)
    on the positive images of ``arrays``."""
    positives = arrays.positives()
    relu = net.relu_of(conv)
    geometry = layer_geometry(net.features, relu)
    points, counts = positives.select_landmarks(landmarks)
    accumulator = LocationInstability(positives.image_size, top_k=top_k)
    start = 0
    for out in iter_features(net, positives.images, [relu], batch_size, device):
        maps = out[relu]
        stop = start + len(maps)
        accumulator.update_maps(maps, geometry, points[start:stop].to(maps.device),
                                counts=counts[start:stop].to(maps.device))
        start = stop
    return accumulator.result()


def random_reference_instability(net: Performer, conv: str, arrays: PartArrays, landmarks: Sequence[str],
                                 top_k: int = 100, seed: int = 0) -> InstabilityResult:
    """The instability that uniformly random unit positions of layer ``conv`` give on the same images and
    landmarks (the reference the papers' ordinary nets sit close to)."""
    positives = arrays.positives()
    relu = net.relu_of(conv)
    points, counts = positives.select_landmarks(landmarks)
    return random_position_instability(points, positives.image_size, layer_geometry(net.features, relu),
                                       feature_size(net.features, relu, positives.image_size[0]), top_k=top_k,
                                       counts=counts, seed=seed)
