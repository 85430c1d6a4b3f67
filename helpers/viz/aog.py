"""Plots of notebook 04: the And-Or graph of a semantic part (Fig. 8 arXiv / Fig. 10 AAAI), part localizations on
test crops, and the normalized distances of every method next to the paper's (Tables 2-5)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from matplotlib.patches import FancyBboxPatch, Rectangle

from ..aog import AndOrGraph
from .data import PART_COLOURS

METHOD_STYLE = {"aog": ("X", "red"), "aog_raw_units": ("P", "orange"), "raw_filters": ("v", "violet"),
                "patch_svm": ("s", "deepskyblue"), "mean_offset_prior": ("D", "grey")}


def _image(ax: plt.Axes, image: torch.Tensor) -> None:
    ax.imshow(image.permute(1, 2, 0).numpy(), interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])


def _box(ax: plt.Axes, box: torch.Tensor, colour: str = "lime") -> None:
    if box.isfinite().all():
        y0, x0, y1, x1 = box.tolist()
        ax.add_patch(Rectangle((x0 - 0.5, y0 - 0.5), x1 - x0 + 1, y1 - y0 + 1, fill=False, ec=colour, lw=1))


def _node(ax: plt.Axes, xy: tuple[float, float], text: str, colour: str, shape: str = "round") -> None:
    style = "round,pad=0.02,rounding_size=0.05" if shape == "round" else "square,pad=0.02"
    width, height = 0.16, 0.07
    ax.add_patch(FancyBboxPatch((xy[0] - width / 2, xy[1] - height / 2), width, height, boxstyle=style, fc=colour,
                                ec="k", lw=0.8))
    ax.text(*xy, text, ha="center", va="center", fontsize=7.5)


def _structure(ax: plt.Axes, model: AndOrGraph, part: str, layers: Sequence[str], counts: np.ndarray) -> None:
    """The four levels: part (OR) -> templates (AND) -> latent patterns per layer (OR) -> units (terminals)."""
    templates = len(counts)
    ax.set(xlim=(0, 1), ylim=(0, 1))
    ax.axis("off")
    top = (0.5, 0.92)
    _node(ax, top, f"{part} (OR)", "gold")
    for t in range(templates):
        x = (t + 0.5) / templates
        ax.plot([top[0], x], [top[1] - 0.035, 0.695], color="k", lw=0.6)
        _node(ax, (x, 0.66), f"template {t + 1} (AND)", "lightskyblue", "square")
        for j in range(len(layers)):
            lx = x + (j - (len(layers) - 1) / 2) * 0.8 / (templates * len(layers))
            ax.plot([x, lx], [0.625, 0.43], color="grey", lw=0.5)
            ax.add_patch(plt.Circle((lx, 0.40), 0.025, fc=PART_COLOURS[j % 10], ec="k", lw=0.6))
            ax.text(lx, 0.40, str(counts[t, j]), ha="center", va="center", fontsize=6)
            for dx in (-0.008, 0.0, 0.008):
                ax.plot([lx, lx + dx], [0.375, 0.2], color=PART_COLOURS[j % 10], lw=0.4)
            ax.add_patch(Rectangle((lx - 0.012, 0.14), 0.024, 0.06, fc="whitesmoke", ec=PART_COLOURS[j % 10], lw=0.6))
    ax.text(0.0, 0.4, f"latent patterns (OR),\nK = {model.k} per template:\nnodes per layer", fontsize=7, va="center")
    ax.text(0.0, 0.17, "units of the node's\nfilter map (terminals)", fontsize=7, va="center")


def and_or_graph(model: AndOrGraph, images: torch.Tensor, centres: torch.Tensor, boxes: torch.Tensor, part: str,
                 shown: int = 40) -> plt.Figure:
    """The AOG learned from m annotated crops (Fig. 8 arXiv / Fig. 10 AAAI): the And-Or structure with the number of
    selected nodes per layer, and each template's crop with its ``shown`` best-ranked nodes (coloured by layer) at
    their inferred positions p_V, joined to the annotated part centre by their displacement delta_V."""
    if model.chosen is None or model.delta is None:
        raise RuntimeError("fit the AOG first")
    layers = model.patterns.layers
    layer_of = model.patterns.layer_index()[model.chosen.cpu()]  # (T, K)
    counts = np.stack([np.bincount(row.numpy(), minlength=len(layers)) for row in layer_of])
    templates, size = len(model.chosen), images.shape[-1]
    fig = plt.figure(figsize=(3.0 * templates + 1.0, 6.2))
    grid = fig.add_gridspec(2, templates, height_ratios=(1.0, 1.15))
    _structure(fig.add_subplot(grid[0, :]), model, part, layers, counts)
    for t in range(templates):
        ax = fig.add_subplot(grid[1, t])
        _image(ax, images[t])
        _box(ax, boxes[t])
        nodes = (centres[t] / size - model.delta[t].cpu()) * size  # p_V = centre - delta_V, pixels
        for k in range(min(shown, len(nodes)) - 1, -1, -1):
            colour = PART_COLOURS[int(layer_of[t, k]) % 10]
            ax.plot([nodes[k, 1], centres[t, 1]], [nodes[k, 0], centres[t, 0]], color=colour, lw=0.5, alpha=0.6)
            ax.plot(nodes[k, 1], nodes[k, 0], "o", ms=3.5, color=colour, mec="k", mew=0.3)
        ax.plot(centres[t, 1], centres[t, 0], "*", ms=11, color="yellow", mec="k", mew=0.6)
        ax.set_title(f"template {t + 1}: annotated {part}", fontsize=8)
    handles = [plt.Line2D([], [], marker="o", ls="", color=PART_COLOURS[j % 10], label=name)
               for j, name in enumerate(layers)]
    handles.append(plt.Line2D([], [], marker="*", ls="", color="yellow", mec="k", label=f"{part} centre"))
    fig.legend(handles=handles, loc="lower center", ncol=len(handles), fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    return fig


def localizations(images: torch.Tensor, truth: torch.Tensor, boxes: torch.Tensor,
                  predictions: Mapping[str, torch.Tensor], distances: torch.Tensor, count: int = 6,
                  labels: Mapping[str, str] | None = None) -> plt.Figure:
    """Test crops where ours (``predictions["aog"]``) did best (top row) and worst (bottom row), by its
    normalized ``distances`` (n,): ground-truth part box and centre, and every method's predicted centre."""
    order = torch.argsort(distances)
    rows = {"correct (lowest distance)": order[:count], "failed (highest distance)": order.flip(0)[:count]}
    fig, axes = plt.subplots(2, count, figsize=(1.9 * count, 4.4), squeeze=False)
    for r, (title, picked) in enumerate(rows.items()):
        for ax, i in zip(axes[r], picked.tolist(), strict=False):
            _image(ax, images[i])
            _box(ax, boxes[i])
            ax.plot(truth[i, 1], truth[i, 0], "o", ms=6, color="lime", mec="k", mew=0.6)
            for method, centres in predictions.items():
                marker, colour = METHOD_STYLE.get(method, ("o", "white"))
                ax.plot(centres[i, 1], centres[i, 0], marker, ms=6, color=colour, mec="k", mew=0.5)
            ax.set_title(f"d = {distances[i]:.3f}", fontsize=8)
        axes[r, 0].set_ylabel(title, fontsize=8)
    labels = labels or {}
    handles = [plt.Line2D([], [], marker="o", ls="", color="lime", mec="k", label="ground truth")]
    handles += [plt.Line2D([], [], marker=METHOD_STYLE.get(m, ("o", "white"))[0], ls="", mec="k",
                           color=METHOD_STYLE.get(m, ("o", "white"))[1], label=labels.get(m, m)) for m in predictions]
    fig.legend(handles=handles, loc="lower center", ncol=3, fontsize=7.5, frameon=False)
    fig.tight_layout(rect=(0, 0.1, 1, 1))
    return fig


def distance_bars(table: pd.DataFrame) -> plt.Figure:
    """Normalized distance per method (bars grouped by method): ours per category and their mean (left), the
    paper's datasets (right; missing where the paper has no such row). Lower is better."""
    paper = [c for c in table.columns if c.startswith("paper ")]
    ours = [c for c in table.columns if c not in paper]
    fig, axes = plt.subplots(1, 2, figsize=(13, 3.8), gridspec_kw={"width_ratios": (len(ours) + 1, len(paper) + 1)})
    for ax, columns, title in ((axes[0], ours, "here (synthetic data, small VGG)"), (axes[1], paper, "paper")):
        width = 0.8 / len(table.index)
        for k, method in enumerate(table.index):
            values = table.loc[method, columns].to_numpy(dtype=float)
            ax.bar(np.arange(len(columns)) + (k - (len(table.index) - 1) / 2) * width, np.nan_to_num(values),
                   width, color=PART_COLOURS[k % 10], label=method)
        ax.set_xticks(np.arange(len(columns)), [c.removeprefix("paper ") for c in columns], fontsize=8)
        ax.set(title=title, ylabel="normalized distance (lower is better)")
    axes[0].legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    return fig
