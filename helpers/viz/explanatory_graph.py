"""Plots of notebook 01, the explanatory graph: the layered graph (Fig. 4), node patches (Fig. 5), heat maps
(Fig. 6 arXiv), pattern-based synthesis (Fig. 7), location instability (Table 1) and semantic purity."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.colors import hsv_to_rgb

from ..explanatory_graph import ExplanatoryGraph
from ..explanatory_graph.analysis import InstabilityRow, PurityRow
from ..results import markdown_table
from .notice import notice

SKEW, DEPTH, GAP = 0.45, 0.35, 0.75  # oblique projection of a layer's unit square, vertical gap between layers


def _project(y: np.ndarray, x: np.ndarray, level: int) -> tuple[np.ndarray, np.ndarray]:
    """Screen coordinates of normalised (y, x) on the plane of graph layer ``level`` (0 = bottom)."""
    return x + SKEW * (1 - y), level * GAP + DEPTH * (1 - y)


def _filter_colour(filter_index: int) -> np.ndarray:
    return hsv_to_rgb([(filter_index * 0.618034) % 1.0, 0.75, 0.85])


def graph_layers(graph: ExplanatoryGraph, share: float = 0.05, edge_share: float = 0.1, seed: int = 0
                 ) -> plt.Figure:
    """Fig. 4: every layer as a plane (image coordinates in perspective), its ``share`` best-ranked nodes at mu_V
    (coloured by filter) and ``edge_share`` of their edges to parents in the layer above, drawn at random."""
    generator = np.random.default_rng(seed)
    fig, ax = plt.subplots(figsize=(7.5, 2.2 + 1.6 * len(graph.layers)))
    shown = {}
    for level, name in enumerate(graph.layers):
        corners = np.array([[0, 0], [0, 1], [1, 1], [1, 0], [0, 0]], dtype=float)
        ax.fill(*_project(corners[:, 0], corners[:, 1], level), color="0.93", ec="0.6", lw=0.8, zorder=0)
        ax.text(-0.05, level * GAP + DEPTH / 2, name, ha="right", va="center", fontsize=9)
        ranked = graph.rank_nodes(name)
        shown[name] = ranked[: max(1, round(share * len(ranked)))].numpy()
    for level, name in enumerate(graph.layers):
        mu = graph.mu[name].reshape(-1, 2).numpy()
        upper = graph.upper(name)
        if upper is not None:
            parent_mu = graph.mu[upper].reshape(-1, 2).numpy()
            parents = graph.parents[name].reshape(len(mu), -1).numpy()
            for child in shown[name]:
                links = [p for p in parents[child] if p >= 0 and generator.random() < edge_share]
                for parent in links:
                    xs, ys = zip(_project(*mu[child], level), _project(*parent_mu[parent], level + 1), strict=True)
                    ax.plot(xs, ys, color="0.35", lw=0.4, alpha=0.6, zorder=1)
        per_filter = graph.nodes_per_filter(name)
        x, y = _project(mu[shown[name], 0], mu[shown[name], 1], level)
        ax.scatter(x, y, s=14, c=[_filter_colour(k // per_filter) for k in shown[name]], ec="k", lw=0.3, zorder=2)
    ax.set_title(f"explanatory graph: {share:.0%} of the nodes of each layer (colour = filter), "
                 f"{edge_share:.0%} of their edges", fontsize=9)
    ax.set_aspect("equal")
    ax.axis("off")
    fig.tight_layout()
    return fig


def _image(ax: plt.Axes, image: torch.Tensor) -> None:
    ax.imshow(image.permute(1, 2, 0).clamp(0, 1).numpy(), interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])


def node_patches(rows: Mapping[str, torch.Tensor]) -> plt.Figure:
    """Fig. 5: one row per node (its key as label), its top image patches left to right (best first)."""
    columns = max((len(p) for p in rows.values()), default=0)
    if not columns:
        return notice("no image to take patches from")
    fig, axes = plt.subplots(len(rows), columns, figsize=(0.9 * columns + 1.2, 0.95 * len(rows)), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for r, (label, patches) in enumerate(rows.items()):
        for c, patch in enumerate(patches):
            _image(axes[r, c], patch)
            axes[r, c].axis("on")
        axes[r, 0].set_ylabel(label, rotation=0, ha="right", va="center", fontsize=8)
    fig.tight_layout(pad=0.3)
    return fig


def heat_maps(images: torch.Tensor, maps: Mapping[str, torch.Tensor]) -> plt.Figure:
    """Fig. 6 (arXiv): each image (rows), then per layer its heat map of the top-50% nodes over the image."""
    if not len(images):
        return notice("no image to draw heat maps on")
    fig, axes = plt.subplots(len(images), 1 + len(maps), figsize=(1.7 * (1 + len(maps)), 1.75 * len(images)),
                             squeeze=False)
    for row, image in enumerate(images):
        _image(axes[row, 0], image.float() / (255 if image.dtype == torch.uint8 else 1))
        for col, (name, heat) in enumerate(maps.items(), start=1):
            ax = axes[row, col]
            ax.imshow(image.float().mean(0).numpy(), cmap="gray", interpolation="nearest")
            ax.imshow(heat[row].numpy(), cmap="jet", alpha=0.55, interpolation="bilinear")
            ax.set_xticks([])
            ax.set_yticks([])
            if row == 0:
                ax.set_title(name, fontsize=9)
    axes[0, 0].set_title("image", fontsize=9)
    fig.tight_layout(pad=0.3)
    return fig


def synthesis(columns: Mapping[str, torch.Tensor]) -> plt.Figure:
    """Fig. 7: one column per kind of image (original, decoded from all units, from the top-10% nodes' units)."""
    names = list(columns)
    count = len(columns[names[0]])
    if not count:
        return notice("no image to decode")
    fig, axes = plt.subplots(count, len(names), figsize=(1.9 * len(names), 1.9 * count), squeeze=False)
    for col, name in enumerate(names):
        for row, image in enumerate(columns[name]):
            _image(axes[row, col], image.float() / (255 if image.dtype == torch.uint8 else 1))
        axes[0, col].set_title(name, fontsize=8)
    fig.tight_layout(pad=0.3)
    return fig


def instability_bars(rows: Sequence[InstabilityRow], paper: Sequence[float] | None = None) -> plt.Figure:
    """Table 1 as bars: per layer and on average, graph nodes vs raw filters (and the random-position reference);
    the paper's VGG-16 [raw filter, nodes] beside them."""
    labels = [row.layer for row in rows] + ["mean"]
    series = {"graph nodes": [r.nodes for r in rows], "raw filters": [r.filters for r in rows],
              "raw filters, graph's orientation": [r.filters_aligned for r in rows],
              "random positions": [r.random for r in rows]}
    fig, ax = plt.subplots(figsize=(7.5, 3.0))
    width = 0.8 / len(series)
    for i, (name, values) in enumerate(series.items()):
        values = [*values, float(np.mean(values))]
        ax.bar(np.arange(len(labels)) + (i - (len(series) - 1) / 2) * width, values, width, label=name)
    if paper is not None:
        ax.bar([len(labels) - 0.2, len(labels) + 0.2], [paper[1], paper[0]], 0.4, color=["C0", "C1"], hatch="//",
               alpha=0.6)
        labels.append("paper\nVGG-16")
    ax.set_xticks(range(len(labels)), labels, fontsize=8)
    ax.set_ylabel("location instability (lower = better)")
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    return fig


def purity_bars(rows: Sequence[PurityRow]) -> plt.Figure:
    """Semantic purity per layer and on average: top-D graph nodes vs the D raw filters (higher = better)."""
    labels = [row.layer for row in rows] + ["mean"]
    fig, ax = plt.subplots(figsize=(5.5, 2.6))
    for i, (name, values) in enumerate((("graph nodes", [r.nodes for r in rows]),
                                        ("raw filters (peaks)", [r.filters for r in rows]))):
        ax.bar(np.arange(len(labels)) + (i - 0.5) * 0.38, [*values, float(np.mean(values))], 0.38, label=name)
    ax.set_xticks(range(len(labels)), labels, fontsize=8)
    ax.set_ylabel("semantic purity (higher = better)")
    ax.set_ylim(0, 1)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def graph_summary(graph: ExplanatoryGraph) -> str:
    """A Markdown table of the graph's layers: maps, nodes per filter, nodes, edges, median sigma_V in pixels."""
    rows = [[spec.name, f"{spec.channels} x {spec.height} x {spec.width}", graph.nodes_per_filter(spec.name),
             graph.mu[spec.name][..., 0].numel(), int((graph.parents[spec.name] >= 0).sum()),
             float(graph.sigma[spec.name].median() * graph.input_size)] for spec in graph.specs]
    return markdown_table(["layer", "maps", "N / filter", "nodes", "edges", "median sigma (px)"], rows, digits=2)


def _means(rows: Sequence[InstabilityRow]) -> list[float]:
    nodes, filters = np.mean([r.nodes for r in rows]), np.mean([r.filters for r in rows])
    return [float(nodes), float(filters), float(nodes / filters), float(np.mean([r.filters_aligned for r in rows])),
            float(np.mean([r.random for r in rows]))]


def instability_markdown(rows: Sequence[InstabilityRow], rms: Sequence[InstabilityRow],
                         paper: Mapping[str, float]) -> str:
    """Table 1: per layer and averaged (mean over landmarks, and the rms variant), with the paper's VGG-16 row."""
    table = [[r.layer, r.count, r.nodes, r.filters, r.ratio, r.filters_aligned, r.random] for r in rows]
    table += [["mean", "", *_means(rows)], ["mean (rms over landmarks)", "", *_means(rms)],
              ["paper (VGG-16, CUB)", 500, paper["instability_nodes"], paper["instability_raw_filters"],
               paper["instability_ratio"], "–", "≈0.14"]]
    return markdown_table(["layer", "K", "graph nodes", "raw filters", "nodes / filters",
                           "raw filters, graph's orientation", "random positions"], table)


def purity_markdown(rows: Sequence[PurityRow]) -> str:
    """Semantic purity per layer and averaged: top-D graph nodes vs the D raw filters' peaks."""
    table = [[r.layer, r.count, r.nodes, r.filters] for r in rows]
    table.append(["mean", "", float(np.mean([r.nodes for r in rows])), float(np.mean([r.filters for r in rows]))])
    return markdown_table(["layer", "D", "graph nodes", "raw filters (peaks)"], table, digits=3)


def ablation_markdown(plain: Sequence[InstabilityRow], aligned: Sequence[InstabilityRow],
                      plain_purity: Sequence[PurityRow], purity: Sequence[PurityRow]) -> str:
    """Per layer: instability and purity of the nodes mined without and with flip alignment, beside raw filters."""
    table = [[a.layer, a.nodes, b.nodes, a.filters, a.ratio, b.ratio, p.nodes, q.nodes, p.filters]
             for a, b, p, q in zip(plain, aligned, plain_purity, purity, strict=True)]
    return markdown_table(["layer", "instability: nodes, no flip", "nodes, flip-aligned", "raw filters",
                           "ratio, no flip", "ratio, flip-aligned", "purity: nodes, no flip", "nodes, flip-aligned",
                           "raw filters"], table, digits=3)
