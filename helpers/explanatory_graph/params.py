"""Hyper-parameters of the explanatory-graph miner (Implementation details, explanatory graph paper)."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from ..config import check_positive


@dataclass(frozen=True)
class MinerParams:
    """Knobs of Algorithm 1. Lengths marked ``_units`` are in grid units of the layer concerned (its stride).

    ``nodes_per_filter``: N_{L,d}, one int for every layer or a dict layer -> int; missing layers get
    :meth:`default_nodes` (the paper's 20 at 14 x 14 and 40 at 28 x 28). ``n_parents``: M (paper 15).
    ``iterations``: T (paper 20). ``tau``: density of V_none in normalised image coordinates, where a uniform
    density over the image is 1 (paper 0.1). ``beta``: F(x) = beta * max(f_x, 0).
    sigma_V is clamped to [``sigma_min_units``, ``sigma_max``] (``sigma_max`` in normalised image units, so a node
    stays a part-sized pattern; the paper gives no value) and starts at ``sigma_init_units``.
    Edges: ``edge_scale_units`` is s of the spatial-stability kernel (in units of the upper layer);
    candidates moving less than ``min_motion_units`` (RMS over images) are degenerate.
    ``top_k``: the node score statistic averages the top-k image scores (Table 1 uses 20).
    ``flip``: flip alignment, as in the authors' code (the papers are silent): every image is explained as is or
    mirrored, whichever its top layer fits better, so objects facing either way share their nodes.
    """

    nodes_per_filter: int | dict[str, int] | None = None
    n_parents: int = 15
    iterations: int = 20
    tau: float = 0.1
    beta: float = 1.0
    sigma_min_units: float = 0.5
    sigma_init_units: float = 1.5
    sigma_max: float = 0.1
    edge_scale_units: float = 1.0
    min_motion_units: float = 0.3
    top_k: int = 20
    seed: int = 0
    flip: bool = False

    def __post_init__(self) -> None:
        for name in ("n_parents", "iterations", "tau", "beta", "sigma_min_units", "sigma_init_units", "sigma_max",
                     "edge_scale_units", "top_k"):
            check_positive(name, getattr(self, name))
        check_positive("min_motion_units", self.min_motion_units, allow_zero=True)
        counts = self.nodes_per_filter
        for value in (counts.values() if isinstance(counts, dict) else [] if counts is None else [counts]):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"nodes_per_filter must be a positive int or a dict of them, got {counts!r}")

    @staticmethod
    def default_nodes(height: int, width: int) -> int:
        """N_{L,d} scaled to the map size: 10/7 * sqrt(H W) gives the paper's 20 (14 x 14) and 40 (28 x 28)."""
        return max(2, round(math.sqrt(height * width) * 10 / 7))

    def nodes_for(self, layer: str, height: int, width: int) -> int:
        """N_{L,d} for ``layer`` (same for every filter of the layer, as in the paper)."""
        counts = self.nodes_per_filter
        if isinstance(counts, int):
            return counts
        if isinstance(counts, dict) and layer in counts:
            return counts[layer]
        return self.default_nodes(height, width)

    def sigma_bounds(self, spacing: float) -> tuple[float, float, float]:
        """(sigma_min, sigma_init, sigma_max) in normalised image units for a layer of grid spacing ``spacing``."""
        low = self.sigma_min_units * spacing
        high = max(self.sigma_max, low)
        return low, min(max(self.sigma_init_units * spacing, low), high), high

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
