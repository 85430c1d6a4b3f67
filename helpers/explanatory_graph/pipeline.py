"""The explanatory graph of a notebook-00 performer, mined once and cached (notebooks 01 and 04 share it).

:data:`PROFILES` is the explanatory graph's section of the profiles (``config.resolve(..., sections=[PROFILES])``).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import torch

from ..config import cache_dir, get_device
from ..data.arrays import PartArrays
from ..io import config_hash
from ..models.performers import SplitData, performer_settings, single_category_performer
from ..models.training import TrainingRun
from .graph import ExplanatoryGraph, GraphFileError
from .miner import mine_graph
from .params import MinerParams
from .source import layer_specs, net_source

PROFILES: dict[str, dict[str, Any]] = {
    "smoke": {"eg_category": "bird", "eg_layers": ("conv4_1", "conv4_2"), "eg_nodes_per_filter": 2,
              "eg_parents": 3, "eg_iterations": 2, "eg_tau": 0.1, "eg_images": 16},
    "teach": {"eg_category": "bird", "eg_layers": ("conv3_1", "conv3_2", "conv4_1", "conv4_2"),
              "eg_nodes_per_filter": 5, "eg_parents": 15, "eg_iterations": 15, "eg_tau": 0.1, "eg_images": 300},
    "paper": {"eg_category": "bird", "eg_layers": ("conv4_2", "conv4_3", "conv5_2", "conv5_3"),
              "eg_nodes_per_filter": {"conv4_2": 40, "conv4_3": 40, "conv5_2": 20, "conv5_3": 20},
              "eg_parents": 15, "eg_iterations": 20, "eg_tau": 0.1, "eg_images": 2000},
}


@dataclass
class MinedGraph:
    graph: ExplanatoryGraph
    performer: TrainingRun
    data: SplitData
    images: PartArrays  # the positives the graph was mined from
    from_cache: bool


def miner_params(settings: dict[str, Any], seed: int = 0) -> MinerParams:
    """The miner's knobs from the profile section (N per filter, M, T, tau)."""
    return MinerParams(nodes_per_filter=settings["eg_nodes_per_filter"], n_parents=settings["eg_parents"],
                       iterations=settings["eg_iterations"], tau=settings["eg_tau"], seed=seed)


def mined_graph(settings: dict[str, Any], category: str | None = None, seed: int = 0, device: str = "auto",
                use_cache: bool = True) -> MinedGraph:
    """Mine (or load) the graph of the single-category performer of ``category`` from the first ``eg_images``
    positive training images. Cached under ``data/cache/graphs/`` by a hash of everything that decides it."""
    category = category or settings["eg_category"]
    run, data = single_category_performer(settings, category, seed, device)
    positives = data.train.positives()
    images = positives.subset(torch.arange(min(settings["eg_images"], len(positives))))
    params = miner_params(settings, seed)
    key = {"performer": performer_settings(settings), "seed": seed, "category": category,
           "layers": list(settings["eg_layers"]), "params": params.to_dict(), "images": len(images)}
    path = cache_dir("graphs") / f"{category}-{config_hash(key)}"
    if use_cache and path.with_suffix(".json").exists():
        try:
            return MinedGraph(ExplanatoryGraph.load(path), run, data, images, True)
        except GraphFileError as error:
            warnings.warn(f"cached graph unreadable ({error}); mining it again", stacklevel=2)
    specs = layer_specs(run.net, settings["eg_layers"])
    device = get_device(device)
    source = net_source(run.net, images.images, settings["eg_layers"], device=device)
    graph = mine_graph(source, specs, params, input_size=settings["image_size"], device=device,
                       meta={"net": settings["net"], "category": category, "cache_key": key})
    if use_cache:
        graph.save(path)
    return MinedGraph(graph, run, data, images, False)
