"""The explanatory graph of a notebook-00 performer, mined once and cached (notebooks 01 and 04 share it).

:data:`PROFILES` is the explanatory graph's section of the profiles (``config.resolve(..., sections=[PROFILES])``).
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass
from typing import Any

import torch

from ..config import cache_dir, get_device
from ..data.arrays import PartArrays
from ..io import config_hash
from ..models.nets import Performer
from ..models.performers import SplitData, performer_settings, single_category_performer
from ..models.training import TrainingRun
from .graph import ExplanatoryGraph, GraphFileError, LayerSpec
from .miner import mine_graph
from .params import MinerParams
from .source import FeatureSource, layer_specs, net_features, net_source

PROFILES: dict[str, dict[str, Any]] = {
    "smoke": {"eg_category": "bird", "eg_layers": ("conv4_1", "conv4_2"), "eg_nodes_per_filter": 2,
              "eg_parents": 3, "eg_iterations": 2, "eg_tau": 0.1, "eg_images": 16, "eg_flip": True,
              "eg_inverter_epochs": 1},
    "teach": {"eg_category": "bird", "eg_layers": ("conv3_1", "conv3_2", "conv4_1", "conv4_2"),
              "eg_nodes_per_filter": 5, "eg_parents": 15, "eg_iterations": 15, "eg_tau": 0.1, "eg_images": 300,
              "eg_flip": True, "eg_inverter_epochs": 10},
    "paper": {"eg_category": "bird", "eg_layers": ("conv4_2", "conv4_3", "conv5_2", "conv5_3"),
              "eg_nodes_per_filter": {"conv4_2": 40, "conv4_3": 40, "conv5_2": 20, "conv5_3": 20},
              "eg_parents": 15, "eg_iterations": 20, "eg_tau": 0.1, "eg_images": 2000, "eg_flip": True,
              "eg_inverter_epochs": 30},
}
MINER_VERSION = 2  # part of the cache key: bump when the miner's results change for the same settings
FEATURE_MEMORY = 1 << 30  # bytes of mining features (both orientations) kept in memory; more are streamed


@dataclass
class MinedGraph:
    graph: ExplanatoryGraph
    performer: TrainingRun
    data: SplitData
    images: PartArrays  # the positives the graph was mined from
    from_cache: bool


def miner_params(settings: dict[str, Any], seed: int = 0) -> MinerParams:
    """The miner's knobs from the profile section (N per filter, M, T, tau, flip alignment)."""
    return MinerParams(nodes_per_filter=settings["eg_nodes_per_filter"], n_parents=settings["eg_parents"],
                       iterations=settings["eg_iterations"], tau=settings["eg_tau"], seed=seed,
                       flip=settings["eg_flip"])


def mining_features(net: Performer, images: torch.Tensor, specs: list[LayerSpec], mirror: bool,
                    device: torch.device) -> dict[str, torch.Tensor] | FeatureSource:
    """The performer's maps of ``images`` (or of their mirror images) for the miner: whole tensors when both
    orientations fit in :data:`FEATURE_MEMORY` (one forward pass in all), else a source re-run on every pass."""
    layers = [spec.name for spec in specs]
    size = 2 * len(images) * sum(spec.channels * spec.height * spec.width for spec in specs) * 4
    if size <= FEATURE_MEMORY:
        return net_features(net, images, layers, device=device, mirror=mirror)
    return net_source(net, images, layers, device=device, mirror=mirror)


def mined_graph(settings: dict[str, Any], category: str | None = None, seed: int = 0, device: str = "auto",
                use_cache: bool = True) -> MinedGraph:
    """Mine (or load) the graph of the single-category performer of ``category`` from the first ``eg_images``
    positive training images. Cached under ``data/cache/graphs/`` by a hash of everything that decides it; the
    graph's meta keeps the seconds its mining took (``features_s`` for the performer's maps, ``mining_s``)."""
    category = category or settings["eg_category"]
    run, data = single_category_performer(settings, category, seed, device)
    positives = data.train.positives()
    if not len(positives):
        raise ValueError(f"the training split of {settings['dataset']} holds no {category} image to mine the graph "
                         "from; choose a category that has training images (CATEGORY=...)")
    images = positives.subset(torch.arange(min(settings["eg_images"], len(positives))))
    params = miner_params(settings, seed)
    key = {"miner": MINER_VERSION, "performer": performer_settings(settings), "seed": seed, "category": category,
           "layers": list(settings["eg_layers"]), "params": params.to_dict(), "images": len(images)}
    path = cache_dir("graphs") / f"{category}-{config_hash(key)}"
    if use_cache and path.with_suffix(".json").exists():
        try:
            return MinedGraph(ExplanatoryGraph.load(path), run, data, images, True)
        except GraphFileError as error:
            warnings.warn(f"cached graph unreadable ({error}); mining it again", stacklevel=2)
    specs = layer_specs(run.net, settings["eg_layers"])
    device = get_device(device)
    tic = time.perf_counter()
    features = mining_features(run.net, images.images, specs, False, device)
    mirrored = mining_features(run.net, images.images, specs, True, device) if params.flip else None
    meta = {"net": settings["net"], "category": category, "cache_key": key, "features_s": time.perf_counter() - tic}
    graph = mine_graph(features, specs, params, input_size=settings["image_size"], device=device, meta=meta,
                       mirrored=mirrored)
    if use_cache:
        graph.save(path)
    return MinedGraph(graph, run, data, images, False)
