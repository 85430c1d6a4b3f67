"""Inference of node positions and scores on images (explanatory graph paper, "Inference of pattern positions").

Top-down per batch: the top layer's nodes are placed with Delta = 0, every lower layer's with the positions just
inferred above it (R_{L+1}). Tensors stay on the device of the feature batches. Given the features of the mirror
images too, each image is explained as is or mirrored, as its top layer fits better (flip alignment, see
:class:`~.params.MinerParams`), and the positions are mapped back to the image.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import torch

from . import model
from .graph import ExplanatoryGraph, LayerSpec
from .miner import cpu_threads
from .source import Batch, FeatureSource, as_source, iterate_pairs


@dataclass
class Inference:
    """Per layer: ``positions`` (n, C, N, 2) normalised (y, x) p_V^I, ``scores`` (n, C, N) S_V^I and ``units``
    (n, C, N) the inferred unit x_hat of each node as a flat index h * W + w into its channel's map, all in the
    frame of the (unmirrored) image. ``flips`` (n,) bool: images explained mirrored (None without mirror images)."""

    positions: dict[str, torch.Tensor]
    scores: dict[str, torch.Tensor]
    units: dict[str, torch.Tensor]
    flips: torch.Tensor | None = None


def choose_orientation(graph: ExplanatoryGraph, batch: Batch, mirror: Batch,
                       dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """(b,) bool: True where the mirror image's top-layer maps fit the top graph layer better (higher term of
    Eq. 1), the criterion the miner aligns its images with."""
    spec = graph.specs[-1]
    beta, tau = float(graph.meta["params"]["beta"]), float(graph.meta["params"]["tau"])
    maps = batch[spec.name]
    rows, cols = spec.axes(graph.input_size, maps.device, dtype)
    mu, sigma = graph.mu[spec.name].to(maps.device, dtype), graph.sigma[spec.name].to(maps.device, dtype)
    log_rows, log_cols = model.log_factors(rows, cols, mu.expand(len(maps), *mu.shape), sigma)
    norm = graph.norm[spec.name].to(maps.device)
    fits = [model.image_objective(model.entities(m[spec.name].to(dtype), norm, beta), log_rows, log_cols, tau)
            for m in (batch, mirror)]
    return fits[1] > fits[0]


def infer_batch(graph: ExplanatoryGraph, batch: Batch, flipped: bool = False, dtype: torch.dtype = torch.float32,
                mirror: Batch | None = None) -> Inference:
    """Infer every node on one batch ``{layer: (b, C, H, W)}``: x_hat = argmax_x S_{V->x}, S_{V->x} = F(x)
    P(p_x | V, R_{L+1}). With ``flipped`` the maps come from horizontally flipped images: the mirrored graph is used,
    so positions mirror those of the unflipped images. ``mirror``: the maps of the mirror images, for flip
    alignment (:func:`choose_orientation`)."""
    graph = graph.mirrored() if flipped else graph
    flips = None
    if mirror is not None:
        flips = choose_orientation(graph, batch, mirror, dtype)
        batch = {spec.name: torch.where(flips[:, None, None, None].to(batch[spec.name].device), mirror[spec.name],
                                        batch[spec.name]) for spec in graph.specs}
    beta = float(graph.meta["params"]["beta"])
    positions, scores, units = {}, {}, {}
    above = None
    for spec in reversed(graph.specs):
        maps = batch[spec.name]
        device, size = maps.device, len(maps)
        rows, cols = spec.axes(graph.input_size, device, dtype)
        mu, sigma = graph.mu[spec.name].to(device, dtype), graph.sigma[spec.name].to(device, dtype)
        f = model.entities(maps.to(dtype), graph.norm[spec.name].to(device), beta)
        centres = model.node_centres(mu, size, above, graph.parents[spec.name].to(device))
        p, s, x = model.infer_units(f, *model.log_factors(rows, cols, centres, sigma), rows, cols)
        positions[spec.name], scores[spec.name], units[spec.name] = p, s, x
        above = (p.flatten(1, 2), mu.reshape(-1, 2), sigma.flatten())
    if flips is not None:
        for spec in graph.specs:
            positions[spec.name], units[spec.name] = unmirror(spec, graph.input_size, positions[spec.name],
                                                              units[spec.name], flips)
    return Inference(positions, scores, units, flips)


def unmirror(spec: LayerSpec, input_size: int, positions: torch.Tensor, units: torch.Tensor,
             flips: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Positions (b, ..., 2) and units (b, ...) found on mirror images, where ``flips`` (b,), mapped back to the
    image: unit column w becomes W - 1 - w."""
    rows, cols = spec.axes(input_size, positions.device, positions.dtype)
    column = units % spec.width
    mirrored_units = units - column + (spec.width - 1 - column)
    mirrored = torch.stack([positions[..., 0], cols[spec.width - 1 - column]], -1)
    where = flips.to(units.device).reshape(-1, *[1] * (units.dim() - 1))
    return torch.where(where[..., None], mirrored, positions), torch.where(where, mirrored_units, units)


def infer(graph: ExplanatoryGraph, features: Mapping[str, torch.Tensor] | FeatureSource | Iterable[Batch],
          batch_size: int = 64, flipped: bool = False, dtype: torch.dtype = torch.float32,
          mirrored: Mapping[str, torch.Tensor] | FeatureSource | Iterable[Batch] | None = None,
          threads: int | None = 1) -> Inference:
    """:func:`infer_batch` over all images of ``features`` (whole tensors or a source, see :func:`as_source`),
    streamed in batches and concatenated; ``mirrored``: the same for the mirror images (flip alignment). CPU work
    uses at most ``threads`` threads (:func:`~.miner.cpu_threads`)."""
    mirror_source = None if mirrored is None else as_source(mirrored, batch_size)
    batches = iterate_pairs(as_source(features, batch_size), mirror_source, graph.specs)
    with cpu_threads(torch.device("cpu"), threads):
        parts = [infer_batch(graph, batch, flipped, dtype, mirror) for _, batch, mirror in batches]
    if not parts:  # no image: the (empty) inference of an empty batch
        empty = {spec.name: torch.zeros(0, spec.channels, spec.height, spec.width) for spec in graph.specs}
        parts = [infer_batch(graph, empty, flipped, dtype, None if mirrored is None else empty)]
    joined = ({name: torch.cat([getattr(p, field)[name] for p in parts]) for name in graph.layers}
               for field in ("positions", "scores", "units"))
    return Inference(*joined, None if mirrored is None else torch.cat([p.flips for p in parts]))
