"""Latent patterns an AOG template can retrieve (the OR nodes of its third level, Fig. 8 arXiv / Fig. 10 AAAI):
explanatory-graph nodes, or raw filters for the baselines. Each OR node's children are all units of its filter's
map (its deformation candidates); on a crop it is parsed to one unit, giving a position and a score.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence

import torch
from torch import Tensor

from ..explanatory_graph import ExplanatoryGraph, LayerSpec, infer


class Patterns(ABC):
    """Patterns on crops: ``raw(maps)`` -> positions (n, P, 2) normalised (y, x) and raw scores (n, P).
    Calling the source divides every score by the pattern's mean score on unannotated crops (:meth:`fit`), so that
    "strongly triggered" means the same for every pattern."""

    scale: Tensor | None = None

    @property
    @abstractmethod
    def layers(self) -> list[str]:
        """The layers of the patterns, bottom to top."""

    @abstractmethod
    def layer_index(self) -> Tensor:
        """(P,) index into :attr:`layers` of every pattern."""

    @abstractmethod
    def raw(self, maps: Mapping[str, Tensor]) -> tuple[Tensor, Tensor]:
        """Positions (n, P, 2) normalised and scores (n, P) of every pattern."""

    def fit(self, pool: Mapping[str, Tensor]) -> Patterns:
        """Learn each pattern's mean score on the unannotated crops ``pool`` (patterns that never fire score 0)."""
        mean = self.raw(pool)[1].mean(0)
        self.scale = torch.where(mean > 0, mean, torch.inf)
        return self

    def __call__(self, maps: Mapping[str, Tensor]) -> tuple[Tensor, Tensor]:
        if self.scale is None:
            raise RuntimeError("fit the patterns on unannotated crops first")
        positions, scores = self.raw(maps)
        return positions, scores / self.scale.to(scores.device)


class GraphNodes(Patterns):
    """Nodes of an explanatory graph, parsed top-down by graph inference (explanatory graph paper, "Inference"):
    p_V and S_V of every node of ``layers`` (default all), flat in layer order, then filter-major as in the graph."""

    def __init__(self, graph: ExplanatoryGraph, layers: Sequence[str] | None = None) -> None:
        self.graph = graph
        self._layers = [name for name in graph.layers if layers is None or name in layers]

    @property
    def layers(self) -> list[str]:
        return self._layers

    def layer_index(self) -> Tensor:
        return torch.cat([torch.full((self.graph.mu[name][..., 0].numel(),), i) for i, name in enumerate(self.layers)])

    def raw(self, maps: Mapping[str, Tensor]) -> tuple[Tensor, Tensor]:
        inference = infer(self.graph, maps)
        n = len(next(iter(maps.values())))
        positions = torch.cat([inference.positions[name].reshape(n, -1, 2) for name in self.layers], 1)
        return positions, torch.cat([inference.scores[name].reshape(n, -1) for name in self.layers], 1)


class FilterPeaks(Patterns):
    """Raw filters of ``specs``' layers as patterns: a filter's position is its highest-responding unit (projected
    through the receptive-field geometry, docs/metrics.md) and its score that response."""

    def __init__(self, specs: Sequence[LayerSpec], input_size: int) -> None:
        self.specs, self.input_size = list(specs), input_size

    @property
    def layers(self) -> list[str]:
        return [spec.name for spec in self.specs]

    def layer_index(self) -> Tensor:
        return torch.cat([torch.full((spec.channels,), i) for i, spec in enumerate(self.specs)])

    def raw(self, maps: Mapping[str, Tensor]) -> tuple[Tensor, Tensor]:
        positions, scores = [], []
        for spec in self.specs:
            value, index = maps[spec.name].flatten(2).max(-1)  # (n, C)
            rows, cols = spec.axes(self.input_size, value.device)
            positions.append(torch.stack([rows[index // spec.width], cols[index % spec.width]], -1))
            scores.append(value.float())
        return torch.cat(positions, 1), torch.cat(scores, 1)
