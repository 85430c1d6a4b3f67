"""The analyses of notebook 01 (explanatory graph paper, Experiments 1-2): graph nodes and raw filters observed on
images, location instability at equal counts (Table 1), semantic purity (Fig. 6 / Fig. 8 AAAI), top image
patches (Fig. 5), heat maps (Fig. 6 arXiv) and the pattern masks of the synthesis (Fig. 7).

Positions here are image-plane (y, x) pixels, as the metrics take them (docs/metrics.md); the graph's own are
normalised by the input size.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as nnf
from torch import Tensor, nn

from ..data.arrays import PartArrays
from ..evaluation import CUB_LANDMARKS, protocol_landmarks
from ..metrics import explanatory_graph_instability, random_position_instability, semantic_purity
from ..metrics.instability import Combine
from ..models.geometry import LayerGeometry, layer_geometry
from ..results import claim, paper_numbers
from .graph import ExplanatoryGraph
from .inference import Inference, infer, unmirror
from .miner import mine_graph
from .params import MinerParams
from .source import net_features

PAPER_TABLE_SHARE = 167 / 512  # the authors' code: 167 patterns per layer of VGG-16's 512 filters (Table 1)
PATCH_SHARE = 70 / 224  # Fig. 5: 70 x 70 pixel patches on 224 x 224 crops


@dataclass
class Views:
    """Rectified conv maps ``{layer: (n, C, H, W)}`` of images and of their horizontal mirror images."""

    maps: dict[str, Tensor]
    mirrored: dict[str, Tensor]


def views(net: nn.Module, images: Tensor, layers: Sequence[str], device: str | torch.device = "auto",
          batch_size: int = 64) -> Views:
    """:class:`Views` of ``images`` (uint8 or float (n, 3, H, W)) through the performer ``net``."""
    return Views(net_features(net, images, layers, batch_size, device),
                 net_features(net, images, layers, batch_size, device, mirror=True))


@dataclass
class Observations:
    """Per layer, U units (graph nodes, flat in the graph's order, or filters) observed on n images: ``positions``
    (n, U, 2) image-plane (y, x) pixels and ``scores`` (n, U)."""

    positions: dict[str, Tensor]
    scores: dict[str, Tensor]


def node_observations(graph: ExplanatoryGraph, seen: Views) -> tuple[Observations, Inference]:
    """Inference of every node on the images of ``seen`` (with flip alignment when the graph was mined with it):
    p_V^I (pixels) and S_V^I per layer, and the inference itself."""
    flip = bool(graph.meta["params"].get("flip"))
    inference = infer(graph, seen.maps, mirrored=seen.mirrored if flip else None)
    positions = {name: inference.positions[name].flatten(1, 2) * graph.input_size for name in graph.layers}
    return Observations(positions, {name: inference.scores[name].flatten(1, 2) for name in graph.layers}), inference


def filter_observations(graph: ExplanatoryGraph, seen: Views, flips: Tensor | None = None) -> Observations:
    """Raw filters as pattern detectors (the paper's baseline after Zhou et al.): each filter's highest unit
    (after the ReLU) and its response. With ``flips`` (n,) the mirror image's maps are read where True and the
    peaks mapped back (the raw filters seen in the graph's orientation, a control)."""
    positions, scores = {}, {}
    for spec in graph.specs:
        maps = seen.maps[spec.name]
        if flips is not None:
            maps = torch.where(flips[:, None, None, None].to(maps.device), seen.mirrored[spec.name], maps)
        value, unit = maps.flatten(2).max(-1)
        rows, cols = spec.axes(graph.input_size, maps.device)
        where = torch.stack([rows[unit // spec.width], cols[unit % spec.width]], -1)
        if flips is not None:
            where, _ = unmirror(spec, graph.input_size, where, unit, flips)
        positions[spec.name], scores[spec.name] = where * graph.input_size, value.float()
    return Observations(positions, scores)


def top_units(scores: Tensor, count: int, top_k: int = 20) -> Tensor:
    """The ``count`` units with the highest mean of their top-``top_k`` image scores (Table 1's ranking), best
    first; ``scores`` (n, U)."""
    best = scores.topk(min(top_k, len(scores)), dim=0).values.double().mean(0)
    return best.argsort(descending=True, stable=True)[:count]


def showcase_nodes(graph: ExplanatoryGraph, nodes: Observations, layer: str, count: int) -> list[int]:
    """Flat indices of the ``count`` best nodes of ``layer`` (mean top-20 score) that belong to distinct filters."""
    per_filter, chosen, filters = graph.nodes_per_filter(layer), [], set()
    for flat in top_units(nodes.scores[layer], nodes.scores[layer].shape[1]).tolist():
        if flat // per_filter not in filters:
            chosen.append(flat)
            filters.add(flat // per_filter)
        if len(chosen) == count:
            break
    return chosen


def showcase_patches(graph: ExplanatoryGraph, nodes: Observations, images: Tensor, per_layer: int = 3,
                     count: int = 8) -> dict[str, Tensor]:
    """Fig. 5: node key -> its ``count`` top patches, for the ``per_layer`` best nodes of distinct filters of every
    layer (top layer first)."""
    size = patch_size(graph.input_size)
    return {graph.node_key(name, flat): patches(images, nodes.positions[name][:, flat].cpu(),
                                                nodes.scores[name][:, flat].cpu(), count, size)
            for name in graph.layers[::-1] for flat in showcase_nodes(graph, nodes, name, per_layer)}


def layer_heat_maps(graph: ExplanatoryGraph, nodes: Observations, index: Sequence[int],
                    fraction: float = 0.5) -> dict[str, Tensor]:
    """Fig. 6 (arXiv) for the images ``index``: per layer (k, H, W), the :func:`heat_map` of its nodes."""
    size = (graph.input_size, graph.input_size)
    if not len(index):
        return {name: torch.zeros(0, *size) for name in graph.layers}
    return {name: torch.stack([heat_map(nodes.positions[name][i].cpu(), graph.sigma[name].flatten() * graph.input_size,
                                        nodes.scores[name][i].cpu(), size, fraction) for i in index])
            for name in graph.layers}


def table_count(channels: int, share: float = PAPER_TABLE_SHARE) -> int:
    """Units compared per layer in Table 1: ``share`` of the layer's filters (at least 2)."""
    return max(2, round(share * channels))


@dataclass
class InstabilityRow:
    """Table 1 for one layer: ``count`` top nodes vs as many top raw filters (and the same filters read in the
    graph's orientation), beside uniformly random positions. Lower is better."""

    layer: str
    count: int
    nodes: float
    filters: float
    filters_aligned: float
    random: float

    @property
    def ratio(self) -> float:
        return self.nodes / self.filters


def instability_table(graph: ExplanatoryGraph, nodes: Observations, filters: Observations,
                      filters_aligned: Observations, arrays: PartArrays, landmarks: Sequence[str],
                      geometry: Mapping[str, LayerGeometry], share: float = PAPER_TABLE_SHARE, top_k: int = 20,
                      combine: Combine = "mean_std", seed: int = 0) -> list[InstabilityRow]:
    """Location instability (Experiment 2, Table 1; docs/metrics.md) per layer: the top ``table_count`` nodes and as
    many raw filters, each ranked by its mean top-``top_k`` score and judged on its top-``top_k`` images.
    ``geometry``: the layer geometry per layer (:func:`layer_geometries`) for the random-position reference."""
    points, counts = arrays.select_landmarks(landmarks)
    size = arrays.image_size
    rows = []
    for spec in graph.specs:
        count = table_count(spec.channels, share)
        values = [explanatory_graph_instability(observed.positions[spec.name], observed.scores[spec.name], points,
                                                size, count, top_k=top_k, counts=counts, combine=combine).value
                  for observed in (nodes, filters, filters_aligned)]
        random = random_position_instability(points, size, geometry[spec.name], (spec.height, spec.width),
                                             top_k=top_k, counts=counts, combine=combine, seed=seed).value
        rows.append(InstabilityRow(spec.name, count, *values, random))
    return rows


def table_landmarks(dataset: str) -> tuple[str, ...]:
    """The landmarks of Table 1: the paper's head, back and tail (CUB-200-2011; the synthetic data has them too),
    elsewhere the dataset's protocol landmarks (:func:`~helpers.evaluation.protocol_landmarks`; Pascal-Part and
    ILSVRC Animal-Part annotate no back)."""
    return CUB_LANDMARKS if dataset in ("synthetic", "cub200") else protocol_landmarks(dataset)


def layer_geometries(net: nn.Module, layers: Sequence[str]) -> dict[str, LayerGeometry]:
    """The receptive-field geometry of each conv layer's rectified output (its units' image-plane positions)."""
    return {name: layer_geometry(net.features, net.relu_of(name)) for name in layers}


@dataclass
class PurityRow:
    """Semantic purity of one layer: the top-D nodes by total score vs the layer's D raw filters (peaks)."""

    layer: str
    count: int
    nodes: float
    filters: float


def purity_table(graph: ExplanatoryGraph, nodes: Observations, filters: Observations, part_labels: Tensor,
                 energy_fraction: float = 0.3) -> list[PurityRow]:
    """Semantic purity (Experiment 2 "Part interpretability"; automatic stand-in for the human raters): per layer
    of D filters, the D nodes with the highest sum_I S_V^I against the D raw filters' peaks, each judged on its
    top inferences holding ``energy_fraction`` of its total score."""
    rows = []
    for spec in graph.specs:
        name, count = spec.name, spec.channels
        ours = semantic_purity(nodes.positions[name], nodes.scores[name], part_labels,
                               energy_fraction=energy_fraction, num_units=count).value
        raw = semantic_purity(filters.positions[name], filters.scores[name], part_labels,
                              energy_fraction=energy_fraction).value
        rows.append(PurityRow(name, count, ours, raw))
    return rows


def patches(images: Tensor, positions: Tensor, scores: Tensor, count: int, size: int) -> Tensor:
    """Fig. 5: the ``size`` x ``size`` patches around a unit's positions (n, 2) pixels on its ``count`` images with
    the highest scores (n,), best first; float (count, 3, size, size) in [0, 1], zero beyond the image border."""
    best = scores.argsort(descending=True, stable=True)[:count]
    padded = nnf.pad(images[best].float() / (255 if images.dtype == torch.uint8 else 1), [size] * 4)
    out = []
    for image, (y, x) in zip(padded, positions[best].round().long().tolist(), strict=True):
        top, left = y + size - size // 2, x + size - size // 2
        out.append(image[:, top : top + size, left : left + size])
    return torch.stack(out) if out else torch.zeros(0, 3, size, size)


def patch_size(input_size: int) -> int:
    """Fig. 5's patch side (70 px of 224) at ``input_size``."""
    return max(3, round(PATCH_SHARE * input_size))


def heat_map(positions: Tensor, sigmas: Tensor, scores: Tensor, size: tuple[int, int],
             fraction: float = 0.5) -> Tensor:
    """Fig. 6 (arXiv): the nodes of one layer on one image, each of the top-``fraction`` by score drawn as a
    Gaussian bump S_V exp(-|p - p_V|^2 / 2 sigma_V^2) at its position p_V (pixels, (U, 2)) with its sigma_V
    (pixels, (U,)); (H, W)."""
    keep = scores.argsort(descending=True, stable=True)[: max(1, math.ceil(fraction * len(scores)))]
    rows = torch.arange(size[0], dtype=torch.float32)[None, :, None]
    cols = torch.arange(size[1], dtype=torch.float32)[None, None, :]
    p, sigma, s = positions[keep].float(), sigmas[keep].float()[:, None, None], scores[keep].float()[:, None, None]
    distance = (rows - p[:, 0, None, None]).pow(2) + (cols - p[:, 1, None, None]).pow(2)
    return (s * torch.exp(-distance / (2 * sigma.pow(2)))).sum(0)


def pattern_mask(units: Tensor, scores: Tensor, shape: tuple[int, int, int], fraction: float = 0.1) -> Tensor:
    """Fig. 7: per image, the units assigned to the top-``fraction`` nodes of a layer by S_V^I (the valid
    patterns); ``units`` and ``scores`` (n, C, N) from :class:`Inference`, ``shape`` = (C, H, W); (n, C, H, W)
    bool, True where a unit is kept (every other response is set to zero)."""
    n, channels, per_filter = scores.shape
    keep = max(1, math.ceil(fraction * channels * per_filter))
    best = scores.flatten(1).topk(keep, dim=1).indices  # flat node indices c * N + k
    flat = (best // per_filter) * (shape[1] * shape[2]) + units.flatten(1).gather(1, best)
    mask = torch.zeros(n, math.prod(shape), dtype=torch.bool, device=scores.device)
    return mask.scatter_(1, flat, True).reshape(n, *shape)


def remine(graph: ExplanatoryGraph, seen: Views, layers: Sequence[str], params: MinerParams,
           images: int | None = None) -> ExplanatoryGraph:
    """A graph of ``layers`` (of ``graph``'s, the top one included for its parents) mined afresh with ``params``
    from the first ``images`` images of ``seen`` (all by default): what the widget re-mines when N, M or tau
    change."""
    specs = [graph.spec(name) for name in graph.layers if name in layers]
    pick = slice(None, images)
    maps = {spec.name: seen.maps[spec.name][pick] for spec in specs}
    mirrored = {spec.name: seen.mirrored[spec.name][pick] for spec in specs} if params.flip else None
    return mine_graph(maps, specs, params, input_size=graph.input_size, mirrored=mirrored,
                      meta={key: graph.meta[key] for key in ("net", "category") if key in graph.meta})


def paper_values() -> dict[str, float]:
    """The paper's Table 1 (CUB, VGG-16): raw filters 0.1398, graph nodes 0.0638, and their ratio."""
    raw, nodes = paper_numbers()["explanatory_graph"]["location_instability_cub"]["VGG-16"]
    return {"instability_raw_filters": raw, "instability_nodes": nodes, "instability_ratio": nodes / raw}


def _mean(rows: Sequence[object], field: str) -> float:
    return float(sum(getattr(row, field) for row in rows) / len(rows))


def summary(instability: Sequence[InstabilityRow], instability_rms: Sequence[InstabilityRow],
            purity: Sequence[PurityRow]) -> dict[str, object]:
    """The notebook's metrics: per layer and averaged over layers (the authors' code averages Table 1 over
    layers), instability with D combined over landmarks as mean_k D (AAAI text, docs/metrics.md) and, ``_rms``, as
    sqrt(mean_k D^2) (arXiv text)."""
    metrics: dict[str, object] = {
        "instability_nodes": _mean(instability, "nodes"),
        "instability_raw_filters": _mean(instability, "filters"),
        "instability_raw_filters_graph_orientation": _mean(instability, "filters_aligned"),
        "instability_random_positions": _mean(instability, "random"),
        "instability_nodes_rms": _mean(instability_rms, "nodes"),
        "instability_raw_filters_rms": _mean(instability_rms, "filters"),
        "purity_nodes": _mean(purity, "nodes"),
        "purity_raw_filters": _mean(purity, "filters"),
    }
    metrics["instability_ratio"] = metrics["instability_nodes"] / metrics["instability_raw_filters"]
    metrics["instability_ratio_rms"] = metrics["instability_nodes_rms"] / metrics["instability_raw_filters_rms"]
    metrics["instability_per_layer"] = {row.layer: asdict(row) for row in instability}
    metrics["purity_per_layer"] = {row.layer: asdict(row) for row in purity}
    return metrics


def check_claims(metrics: Mapping[str, object], mining_s: float, paper: Mapping[str, float]) -> list[dict]:
    """The claims of Experiment 2 this project checks: nodes at most 0.7 x as unstable as raw filters (the paper:
    0.46), purer part semantics than raw filters, and the teach graph mined within 3 minutes."""
    ratio, purity = metrics["instability_ratio"], metrics["purity_nodes"] / metrics["purity_raw_filters"]
    return [claim("location instability: graph nodes / raw filters <= 0.7", ratio, paper["instability_ratio"],
                  ratio <= 0.7),
            claim("semantic purity: graph nodes / raw filters > 1", purity, None, purity > 1),
            claim("mining the graph takes <= 180 s", mining_s, None, mining_s <= 180)]


def ablation_summary(instability: Sequence[InstabilityRow], purity: Sequence[PurityRow]) -> dict[str, float]:
    """The metrics of the graph mined without flip alignment (suffix ``_no_flip``)."""
    return {"instability_nodes_no_flip": _mean(instability, "nodes"),
            "instability_ratio_no_flip": _mean(instability, "nodes") / _mean(instability, "filters"),
            "purity_nodes_no_flip": _mean(purity, "nodes")}


def random_mask_like(mask: Tensor, seed: int = 0) -> Tensor:
    """A control for :func:`pattern_mask`: per image, as many units as ``mask`` keeps (n, C, H, W), drawn
    uniformly at random."""
    generator = torch.Generator().manual_seed(seed)
    flat = mask.flatten(1).cpu()
    order = torch.rand(flat.shape, generator=generator).argsort(dim=1)
    rank = torch.empty_like(order).scatter_(1, order, torch.arange(flat.shape[1]).expand_as(order))
    return (rank < flat.sum(1, keepdim=True)).reshape(mask.shape).to(mask.device)
