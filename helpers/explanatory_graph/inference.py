"""Inference of node positions and scores on images (explanatory graph paper, "Inference of pattern positions").

Top-down per batch: the top layer's nodes are placed with Delta = 0, every lower layer's with the positions just
inferred above it (R_{L+1}). Tensors stay on the device of the feature batches.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import torch

from . import model
from .graph import ExplanatoryGraph
from .source import Batch, FeatureSource, as_source, iterate


@dataclass
class Inference:
    """Per layer: ``positions`` (n, C, N, 2) normalised (y, x) p_V^I, ``scores`` (n, C, N) S_V^I and ``units``
    (n, C, N) the inferred unit x_hat of each node as a flat index h * W + w into its channel's map."""

    positions: dict[str, torch.Tensor]
    scores: dict[str, torch.Tensor]
    units: dict[str, torch.Tensor]


def infer_batch(graph: ExplanatoryGraph, batch: Batch, flipped: bool = False,
                dtype: torch.dtype = torch.float32) -> Inference:
    """Infer every node on one batch ``{layer: (b, C, H, W)}``: x_hat = argmax_x S_{V->x}, S_{V->x} = F(x)
    P(p_x | V, R_{L+1}). With ``flipped`` the maps come from horizontally flipped images: the mirrored graph is used,
    so positions mirror those of the unflipped images."""
    graph = graph.mirrored() if flipped else graph
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
        above = (p.reshape(size, -1, 2), mu.reshape(-1, 2), sigma.flatten())
    return Inference(positions, scores, units)


def infer(graph: ExplanatoryGraph, features: Mapping[str, torch.Tensor] | FeatureSource | Iterable[Batch],
          batch_size: int = 64, flipped: bool = False, dtype: torch.dtype = torch.float32) -> Inference:
    """:func:`infer_batch` over all images of ``features`` (whole tensors or a source, see :func:`as_source`),
    streamed in batches and concatenated."""
    batches = iterate(as_source(features, batch_size), graph.specs)
    parts = [infer_batch(graph, batch, flipped, dtype) for _, batch in batches]
    if not parts:
        raise ValueError("the features hold no images")
    return Inference(*({name: torch.cat([getattr(p, field)[name] for p in parts]) for name in graph.layers}
                       for field in ("positions", "scores", "units")))

