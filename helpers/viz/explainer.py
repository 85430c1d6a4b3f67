"""Plots of notebook 03 (explainer network): learning curves, p values (Table 2/4), location instability
(Tables 1/5/6), classification errors (Tables 3/7), feature maps (Fig. 4), Grad-CAM and part contributions (Fig. 5),
and the eta / filter-loss trade-off."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn.functional as F

from ..explainer.analysis import PartContribution
from .data import PART_COLOURS, part_colour
from .notice import notice

SERIES_COLOURS = {"input layer": "#9e9e9e", "top conv": "#e07b39", "explainer": "#2a9d8f",
                  "random positions": "#6c757d", "fixed position": "#adb5bd", "performer": "#e07b39",
                  "explainer+cls": "#264653"}


def _colour(name: str, k: int) -> str | tuple[float, float, float]:
    return SERIES_COLOURS.get(name, PART_COLOURS[k % len(PART_COLOURS)])


def distillation_curves(histories: Mapping[str, Mapping[str, Sequence[float]]]) -> plt.Figure:
    """Per epoch and explainer: the reconstruction loss of Eq. (1), the relative fc7 error ||x - x*|| / ||x*|| and
    p = sigmoid(w_p)."""
    panels = (("task_loss", "reconstruction loss (Eq. 1)", True), ("fc7_error", "relative fc7 error", False),
              ("p", "p (share of the interpretable track)", False))
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.4))
    for k, (name, history) in enumerate(histories.items()):
        for ax, (key, _, _) in zip(axes, panels, strict=True):
            values = history.get(key, [])
            ax.plot(np.arange(1, len(values) + 1), values, marker="o", ms=3, color=PART_COLOURS[k % 10], label=name)
    for ax, (_, title, log) in zip(axes, panels, strict=True):
        ax.set(xlabel="epoch", title=title)
        if log:
            ax.set_yscale("log")
    axes[2].set_ylim(0, 1)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    return fig


def p_values(ours: Mapping[str, float], paper_range: Sequence[float], paper_vgg: Sequence[float] | None = None
             ) -> plt.Figure:
    """Our p per explainer beside the paper's range (Table 2/4; shaded) and its VGG range (dashed)."""
    fig, ax = plt.subplots(figsize=(1.0 * len(ours) + 2.5, 3.2))
    names = list(ours)
    ax.axhspan(*paper_range, color="#2a9d8f", alpha=0.12, label=f"paper, all nets {paper_range[0]}-{paper_range[1]}")
    if paper_vgg is not None:
        for value in paper_vgg:
            ax.axhline(value, color="#2a9d8f", ls="--", lw=0.8)
        ax.plot([], [], color="#2a9d8f", ls="--", lw=0.8, label=f"paper, VGG nets {paper_vgg[0]}-{paper_vgg[1]}")
    ax.bar(names, [ours[n] for n in names], color="#2a9d8f", width=0.6)
    for k, name in enumerate(names):
        ax.text(k, ours[name] + 0.015, f"{ours[name]:.2f}", ha="center", fontsize=8)
    ax.set(ylim=(0, 1.05), ylabel="p", title="p: share of x_enc from the interpretable track (Table 2/4)")
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    return fig


def grouped_bars(table: Mapping[str, Mapping[str, float]], ylabel: str, title: str, fmt: str = "{:.3f}"
                 ) -> plt.Figure:
    """Bars per row (e.g. category) and series (e.g. layer); ``table[row][series]``."""
    rows = list(table)
    series = list(dict.fromkeys(name for row in table.values() for name in row))
    width = 0.8 / len(series)
    fig, ax = plt.subplots(figsize=(max(6.0, 1.6 * len(rows) + 2), 3.6))
    for k, name in enumerate(series):
        x = np.arange(len(rows)) + (k - (len(series) - 1) / 2) * width
        values = [table[row].get(name, np.nan) for row in rows]
        ax.bar(x, values, width, color=_colour(name, k), label=name)
        for xi, value in zip(x, values, strict=True):
            if np.isfinite(value):
                ax.text(xi, value, fmt.format(value), ha="center", va="bottom", fontsize=6, rotation=90)
    ax.set_xticks(np.arange(len(rows)), rows)
    ax.set(ylabel=ylabel, title=title)
    ax.margins(y=0.2)
    ax.legend(fontsize=7, ncol=min(len(series), 5), loc="upper left")
    fig.tight_layout()
    return fig


def _heat(image: torch.Tensor, heat: torch.Tensor) -> np.ndarray:
    """``heat`` (h, w) upsampled bilinearly to the image (the filter's receptive-field map, max-normalised) and blended
    over it with the jet colour map."""
    heat = F.interpolate(heat[None, None].float(), size=image.shape[-2:], mode="bilinear", align_corners=False)[0, 0]
    heat = (heat / heat.max().clamp_min(1e-12)).clamp(0, 1).numpy()
    return (0.5 * image.permute(1, 2, 0).numpy() + 0.5 * plt.get_cmap("jet")(heat)[..., :3]).clip(0, 1)


def feature_maps(images: torch.Tensor, rows: Mapping[str, tuple[torch.Tensor, torch.Tensor]]) -> plt.Figure:
    """Fig. 4: per named filter, its feature maps on its strongest images, laid over them.

    ``images`` (N, 3, H, W) float; ``rows[name] = (image indices (k,), maps (k, h, w))``."""
    columns = max((len(index) for index, _ in rows.values()), default=0)
    if not columns:
        return notice("no filter or no image to show")
    fig, axes = plt.subplots(len(rows), columns, figsize=(1.5 * columns + 1.2, 1.55 * len(rows)), squeeze=False)
    for r, (name, (index, maps)) in enumerate(rows.items()):
        for c in range(columns):
            ax = axes[r, c]
            ax.set_xticks([])
            ax.set_yticks([])
            if c < len(index):
                ax.imshow(_heat(images[int(index[c])], maps[c]))
        axes[r, 0].set_ylabel(name, fontsize=7, rotation=0, ha="right", va="center")
    fig.suptitle("feature maps on each filter's strongest images (upsampled)", fontsize=9)
    fig.tight_layout()
    return fig


def grad_cam_grid(images: torch.Tensor, cams: Mapping[str, np.ndarray], titles: Sequence[str] | None = None
                  ) -> plt.Figure:
    """Fig. 5 (left): each image, then its Grad-CAM map for every named layer (``cams[name]`` (N, H, W))."""
    names = list(cams)
    if not len(images):
        return notice("no image to show")
    fig, axes = plt.subplots(len(names) + 1, len(images), figsize=(1.6 * len(images), 1.7 * (len(names) + 1)),
                             squeeze=False)
    for c, image in enumerate(images):
        axes[0, c].imshow(image.permute(1, 2, 0).numpy())
        if titles is not None:
            axes[0, c].set_title(titles[c], fontsize=7)
        for r, name in enumerate(names, start=1):
            axes[r, c].imshow(_heat(image, torch.as_tensor(cams[name][c])))
    for r, name in enumerate(["input", *names]):
        axes[r, 0].set_ylabel(name, fontsize=8)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    return fig


def part_contribution_bars(result: PartContribution, title: str = "") -> plt.Figure:
    """Fig. 5 (right): how many conv-interp-2 filters each part has, and its share of the classification score."""
    parts = list(result.parts)
    shares = [100 * result.contribution[p] for p in parts]
    fig, ax = plt.subplots(figsize=(1.1 * len(parts) + 2, 3.2))
    colours = [part_colour(p) if p != "other" else "#adb5bd" for p in parts]
    ax.bar(parts, shares, color=colours)
    for k, part in enumerate(parts):
        ax.text(k, max(shares[k], 0) + 1, f"{result.filters[part]} filters\n{shares[k]:.1f}%", ha="center",
                fontsize=7)
    ax.axhline(0, color="black", lw=0.6)
    ax.set(ylabel="share of the score (%)", title=title or "contribution of each part (gradient x activation)")
    ax.margins(y=0.25)
    fig.tight_layout()
    return fig


def tradeoff(points: Sequence[Mapping[str, float]], highlight: Mapping[str, float] | None = None) -> plt.Figure:
    """p against the relative fc7 error for explainers learned with different eta / filter-loss weights; colour:
    location instability of conv-interp-2 (each point: ``{"p", "fc7_error", "instability", "eta", "ratio"}``)."""
    fig, ax = plt.subplots(figsize=(5.2, 3.6))
    if points:
        p = [pt["p"] for pt in points]
        error = [pt["fc7_error"] for pt in points]
        scatter = ax.scatter(error, p, c=[pt["instability"] for pt in points], cmap="viridis_r", s=40,
                             edgecolor="black", lw=0.4)
        fig.colorbar(scatter, ax=ax, label="instability (conv-interp-2)")
        for pt in points:
            ax.annotate(f"eta={pt['eta']:g}\nr={pt['ratio']:.2g}", (pt["fc7_error"], pt["p"]), fontsize=6,
                        xytext=(4, 2), textcoords="offset points")
    if highlight is not None:
        ax.scatter([highlight["fc7_error"]], [highlight["p"]], marker="*", s=160, color="#e07b39",
                   label="notebook's explainer")
        ax.legend(fontsize=7)
    ax.set(xlabel="relative fc7 reconstruction error", ylabel="p", ylim=(0, 1), title="eta and lambda_f trade-off")
    fig.tight_layout()
    return fig


def format_table(table: Mapping[str, Mapping[str, float | str]], fmt: str = "{:.3f}", first: str = "") -> str:
    """A plain-text table: one row per key of ``table``, one column per series (missing: blank)."""
    columns = list(dict.fromkeys(name for row in table.values() for name in row))
    cells = [[first, *columns]] + [[str(name)] + [fmt.format(row[c]) if isinstance(row.get(c), float) else
                                                  str(row.get(c, "")) for c in columns]
                                   for name, row in table.items()]
    widths = [max(len(line[k]) for line in cells) for k in range(len(columns) + 1)]
    return "\n".join("  ".join(cell.rjust(width) if k else cell.ljust(width) for k, (cell, width) in
                               enumerate(zip(line, widths, strict=True))) for line in cells)
