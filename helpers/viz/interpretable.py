"""Plots of notebook 02 (interpretable CNN, CVPR 2018): templates (Fig. 3), feature map / mask / masked map /
receptive field (Fig. 4), receptive fields of filters (Fig. 5), heat maps of the parts filters cover (Fig. 6), and
ordinary-vs-interpretable bar charts beside the paper's values."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch

from ..interpretable import BETA, mask_of_template, negative_template, positive_templates, template_tau
from ..metrics import upsample_to_image
from ..models.geometry import LayerGeometry
from ..results import markdown_table
from .data import PART_COLOURS, part_colour
from .notice import notice

KIND_COLOURS = {"ordinary": PART_COLOURS[7], "interpretable": PART_COLOURS[1]}


def _image(ax: plt.Axes, image: torch.Tensor) -> None:
    """Show a (3, H, W) float image in [0, 1] without axes."""
    ax.imshow(image.permute(1, 2, 0).clamp(0, 1).cpu().numpy(), interpolation="nearest")
    ax.axis("off")


def _map(ax: plt.Axes, values: torch.Tensor, title: str, vmin: float | None = None, vmax: float | None = None,
         cmap: str = "viridis") -> None:
    """Show an (h, w) map with its title, no axes."""
    ax.imshow(values.cpu().numpy(), cmap=cmap, vmin=vmin, vmax=vmax, interpolation="nearest")
    ax.set_title(title, fontsize=8)
    ax.axis("off")


def field_weight(image_size: tuple[int, int], feature_map: torch.Tensor, geometry: LayerGeometry,
                 scale: float | None = None) -> np.ndarray:
    """(H, W) image-resolution receptive field of a map's activations in [0, 1]: the map upsampled bilinearly to
    the image through the layer geometry (as S_f^I of Sec. 5.2.1), divided by ``scale`` (default: its maximum)."""
    field = upsample_to_image(feature_map[None, None].float().cpu(), tuple(image_size), geometry)[0, 0]
    top = float(field.max()) if scale is None else scale
    return (field / top).clamp(0, 1).numpy() if top > 0 else np.zeros(tuple(image_size))


def show_field(ax: plt.Axes, image: torch.Tensor, weight: np.ndarray) -> None:
    """The image, dimmed where the receptive field ``weight`` is weak, with its half-maximum contour in red."""
    picture = image.permute(1, 2, 0).clamp(0, 1).cpu().numpy()
    ax.imshow(picture * (0.25 + 0.75 * weight[..., None]), interpolation="nearest")
    if weight.max() > 0.5:
        ax.contour(weight, levels=[0.5], colors="red", linewidths=0.8)
    ax.axis("off")


def templates_figure(h: int, w: int, mus: Sequence[tuple[int, int]], tau: float | None = None,
                     beta: float = BETA) -> plt.Figure:
    """Fig. 3: positive templates T_mu for some mu, the negative template T-, and the masks max(T_mu / tau, 0)."""
    tau = template_tau(h, w) if tau is None else tau
    templates = positive_templates(h, w, tau=tau, beta=beta)
    fig, axes = plt.subplots(2, len(mus) + 1, figsize=(1.9 * (len(mus) + 1), 4.0), squeeze=False)
    for k, (i, j) in enumerate(mus):
        template = templates[i * w + j]
        _map(axes[0, k], template, f"T_mu, mu=({i},{j})", -tau, tau, "RdBu_r")
        _map(axes[1, k], mask_of_template(template, tau), f"mask, mu=({i},{j})", 0, 1, "gray")
    _map(axes[0, -1], negative_template(h, w, tau=tau), "T- (negative)", -tau, tau, "RdBu_r")
    axes[1, -1].axis("off")
    fig.suptitle(f"{h}x{w} templates, tau = {tau:.2g}, beta = {beta:g} (red > 0, blue < 0)", fontsize=9)
    fig.tight_layout()
    return fig


def mask_steps(images: torch.Tensor, feature_maps: torch.Tensor, masks: torch.Tensor, geometry: LayerGeometry,
               titles: Sequence[str]) -> plt.Figure:
    """Fig. 4, one row per (image, filter): the image, the filter's map x after ReLU, the chosen mask T_mu^ / tau,
    the masked map x_masked and the image-resolution receptive field of x_masked."""
    rows = len(images)
    if not rows:
        return notice("no image to show")
    fig, axes = plt.subplots(rows, 5, figsize=(9.5, 2.0 * rows), squeeze=False)
    for row in range(rows):
        x, mask = feature_maps[row], masks[row]
        masked = x * mask
        _image(axes[row, 0], images[row])
        axes[row, 0].set_title(titles[row], fontsize=8)
        _map(axes[row, 1], x, "feature map x", 0, float(x.max()) or 1.0)
        _map(axes[row, 2], mask, "mask (T_mu^ / tau)+", 0, 1, "gray")
        _map(axes[row, 3], masked, "masked x", 0, float(x.max()) or 1.0)
        show_field(axes[row, 4], images[row], field_weight(images.shape[-2:], masked, geometry))
        axes[row, 4].set_title("receptive field", fontsize=8)
    fig.tight_layout()
    return fig


def receptive_fields(panels: Mapping[str, Sequence[tuple[int, torch.Tensor, torch.Tensor]]],
                     geometry: LayerGeometry) -> plt.Figure:
    """Fig. 5: per net (key), rows of filters, each shown on its top images: ``(filter, images (T, 3, H, W),
    maps (T, h, w))``; receptive fields are scaled by the filter's strongest response in the row."""
    rows = [(name, *row) for name, filters in panels.items() for row in filters]
    columns = max((len(images) for _, _, images, _ in rows), default=0)
    if not columns:
        return notice("no image to show")
    fig, axes = plt.subplots(len(rows), columns, figsize=(1.45 * columns, 1.55 * len(rows)), squeeze=False)
    for r, (name, unit, images, maps) in enumerate(rows):
        scale = float(maps.max())
        for c in range(columns):
            axes[r, c].axis("off")
            if c < len(images):
                show_field(axes[r, c], images[c], field_weight(images.shape[-2:], maps[c], geometry, scale))
        axes[r, 0].set_title(f"{name}, filter {unit}", fontsize=7, loc="left")
    fig.tight_layout()
    return fig


def _splat(positions: torch.Tensor, weights: torch.Tensor, size: tuple[int, int], sigma: float) -> torch.Tensor:
    """(H, W) sum of Gaussians of ``sigma`` pixels at image-plane (y, x) ``positions`` (P, 2), weighted (P,)."""
    points = positions.float().cpu()
    ys, xs = (torch.arange(n, dtype=torch.float32) for n in size)
    rows = torch.exp(-((ys[None] - points[:, :1]) ** 2) / (2 * sigma**2)) * weights.float().cpu()[:, None]
    cols = torch.exp(-((xs[None] - points[:, 1:]) ** 2) / (2 * sigma**2))
    return rows.T @ cols


def part_heatmaps(images: torch.Tensor, panels: Mapping[str, tuple[torch.Tensor, torch.Tensor]],
                  sigma: float) -> plt.Figure:
    """Fig. 6: per net (row) and image (column), a heat map of where the top conv layer's filters fire: each
    filter's peak position (``panels[name][0]`` (T, C, 2)) splatted with weight = its peak relative to its strongest
    response over the test images (``panels[name][1]`` (T, C)), so the filters that really fire on the image count."""
    size = tuple(images.shape[-2:])
    if not len(images):
        return notice("no image to show")
    fig, axes = plt.subplots(len(panels), len(images), figsize=(1.9 * len(images), 2.0 * len(panels)),
                             squeeze=False)
    for r, (name, (positions, weights)) in enumerate(panels.items()):
        for c, image in enumerate(images):
            heat = _splat(positions[c], weights[c], size, sigma)
            _image(axes[r, c], image)
            axes[r, c].imshow((heat / heat.max().clamp_min(1e-12)).numpy(), cmap="inferno", alpha=0.55)
        axes[r, 0].set_title(name, fontsize=8, loc="left")
    fig.tight_layout()
    return fig


def part_counts(counts: Mapping[str, Mapping[str, int]]) -> plt.Figure:
    """Number of filters whose best part (argmax_k P_{f,k}, Sec. 5.2.1) is each part, per net."""
    names = list(counts)
    parts = list(dict.fromkeys(part for c in counts.values() for part in c))
    fig, ax = plt.subplots(figsize=(1.2 * len(parts) + 2.5, 3))
    width = 0.8 / max(1, len(names))
    for k, name in enumerate(names):
        values = [counts[name].get(part, 0) for part in parts]
        ax.bar(np.arange(len(parts)) + (k - (len(names) - 1) / 2) * width, values, width, label=name,
               color=KIND_COLOURS.get(name.split()[0], PART_COLOURS[k % 10]))
    ax.set_xticks(np.arange(len(parts)), parts)
    for tick, part in zip(ax.get_xticklabels(), parts, strict=True):
        tick.set_color(part_colour(part))
    ax.set(ylabel="filters", title="best-matching part of each filter")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def comparison_bars(values: Mapping[str, Mapping[str, float]], title: str, ylabel: str,
                    reference: Mapping[str, float] | None = None, paper: Mapping[str, float] | None = None
                    ) -> plt.Figure:
    """Ordinary vs interpretable per category (``values[kind][category]``), with an optional per-category
    reference (dotted: random positions) and the paper's averages (dashed, by kind)."""
    kinds = list(values)
    categories = list(values[kinds[0]])
    fig, ax = plt.subplots(figsize=(1.3 * len(categories) + 3, 3.2))
    width = 0.8 / len(kinds)
    for k, kind in enumerate(kinds):
        x = np.arange(len(categories)) + (k - (len(kinds) - 1) / 2) * width
        heights = [values[kind][c] for c in categories]
        ax.bar(x, heights, width, label=kind, color=KIND_COLOURS.get(kind, PART_COLOURS[k % 10]))
        for xi, height in zip(x, heights, strict=True):
            ax.text(xi, height, f"{height:.3f}", ha="center", va="bottom", fontsize=7)
    if reference:
        for c, category in enumerate(categories):
            ax.plot([c - 0.45, c + 0.45], [reference[category]] * 2, "k:", lw=1.2,
                    label="random positions" if c == 0 else None)
    for kind, value in (paper or {}).items():
        ax.axhline(value, ls="--", lw=1, color=KIND_COLOURS.get(kind, "k"), label=f"paper, {kind}")
    ax.set_xticks(np.arange(len(categories)), categories)
    ax.set(title=title, ylabel=ylabel)
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1, 0.5))
    fig.tight_layout()
    return fig


def comparison_table(values: Mapping[str, Mapping[str, float]], paper: Mapping[str, float] | None = None,
                     reference: Mapping[str, float] | None = None, digits: int = 3) -> str:
    """A Markdown table, one row per net (``values[net][category]``) with the average over categories, the paper's
    average for that net (``paper[net]``, if given) and optionally a row of random-position references."""
    categories = list(next(iter(values.values())))
    header = ["net", *categories, "avg."] + (["paper avg."] if paper is not None else [])
    rows = []
    for name, by_category in values.items():
        row = [by_category[c] for c in categories]
        rows.append([name, *row, float(np.mean(row))] + ([paper.get(name, "–")] if paper is not None else []))
    if reference is not None:
        row = [reference[c] for c in categories]
        rows.append(["random positions", *row, float(np.mean(row))] + (["–"] if paper is not None else []))
    return markdown_table(header, rows, digits)


def metric_table(rows: Mapping[str, Mapping[str, float | str]], digits: int = 3) -> str:
    """A Markdown table: one row per name, one column per key of the first row (floats rounded)."""
    header = list(next(iter(rows.values())))
    return markdown_table(["", *header], [[name, *(row.get(key, "–") for key in header)] for name, row in rows.items()],
                          digits)
