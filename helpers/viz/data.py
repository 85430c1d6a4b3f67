"""Plots of the data and the performers (notebook 00), and the pieces every figure shares."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import seaborn as sns
import torch

from ..config import active_run, figures_dir, profile_name
from ..data.arrays import PartArrays
from ..data.common import PartSample

PART_COLOURS = sns.color_palette("tab10")
PART_ORDER = ("head", "neck", "torso", "wings", "legs", "frontal_legs", "back_legs", "tail", "back")


def part_colour(name: str) -> tuple[float, float, float]:
    """One colour per part name, the same in every figure."""
    index = PART_ORDER.index(name) if name in PART_ORDER else len(PART_ORDER) + sum(map(ord, name))
    return PART_COLOURS[index % len(PART_COLOURS)]


def stamp_text() -> str:
    """'profile teach · seed 0' for the running notebook (see :func:`helpers.config.activate`)."""
    run = active_run()
    return f"profile {run.profile} \u00b7 seed {run.seed}" if run else f"profile {profile_name()}"


def save(fig: plt.Figure, name: str, dpi: int = 110) -> Path:
    """Stamp ``fig`` with the profile and seed in its lower right corner, save it as
    ``figures/<profile>/<name>.png`` (see :func:`helpers.config.figures_dir`) and return the path."""
    fig.text(0.995, 0.005, stamp_text(), ha="right", va="bottom", fontsize=7, color="0.45")
    path = figures_dir() / f"{name}.png"
    fig.savefig(path, dpi=dpi, bbox_inches="tight")
    return path


def show_sample(ax: plt.Axes, sample: PartSample, masks: bool = True, landmarks: bool = True,
                alpha: float = 0.45) -> None:
    """Draw one sample with its part masks tinted and its landmarks marked."""
    image = sample.image.permute(1, 2, 0).numpy().copy()
    if masks:
        for name, mask in sample.part_masks.items():
            mask = mask.numpy()
            image[mask] = (1 - alpha) * image[mask] + alpha * np.array(part_colour(name))
    ax.imshow(image, interpolation="nearest")
    if landmarks:
        for name, point in sample.landmarks.items():
            if point is not None:
                ax.plot(point[1], point[0], "o", ms=4, mec="white", mew=0.8, color=part_colour(name))
    ax.set_title(sample.category, fontsize=8)
    ax.axis("off")


def samples_per_class(dataset: Any, per_class: int = 2, scan: int = 64) -> list[PartSample]:
    """Up to ``per_class`` samples of each class of ``dataset``, row by row (row r holds the r-th sample of every
    class found), looking at its first ``scan`` items and its last ``per_class`` (where background images sit). Makes
    no assumption on how many items a dataset holds or how they are ordered."""
    length = len(dataset)
    found: dict[int, list[PartSample]] = {}
    for i in dict.fromkeys([*range(min(scan, length)), *range(max(0, length - per_class), length)]):
        sample = dataset[i]
        if len(found.setdefault(sample.label, [])) < per_class:
            found[sample.label].append(sample)
    kinds = sorted(found)
    return [found[kind][row] for row in range(per_class) for kind in kinds if row < len(found[kind])]


def gallery(samples: Sequence[PartSample], columns: int = 6, masks: bool = True) -> plt.Figure:
    """A grid of samples with part masks and landmarks (one legend for the part colours)."""
    rows = max(1, -(-len(samples) // columns))
    fig, axes = plt.subplots(rows, columns, figsize=(1.9 * columns, 2.0 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, sample in zip(axes.flat, samples, strict=False):
        show_sample(ax, sample, masks=masks)
    names = list(dict.fromkeys(name for s in samples for name in (*s.part_masks, *s.landmarks)))
    handles = [plt.Line2D([], [], marker="s", ls="", color=part_colour(n), label=n) for n in names]
    if handles:
        fig.legend(handles=handles, loc="lower center", ncol=min(len(handles), 9), fontsize=8, frameon=False,
                   title="parts (tinted masks) and landmarks (dots)", title_fontsize=8)
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    return fig


def part_statistics(arrays: PartArrays) -> plt.Figure:
    """Per category: mean visible area of each part (fraction of the crop) and each landmark's visibility rate."""
    positives = arrays.positives()
    categories = sorted(set(positives.categories))
    area = np.full((len(categories), len(positives.part_names)), np.nan)
    visible = np.full((len(categories), len(positives.landmark_names)), np.nan)
    pixels = positives.image_size[0] * positives.image_size[1]
    for row, category in enumerate(categories):
        index = torch.tensor([c == category for c in positives.categories])
        labels = positives.part_labels[index]
        for col in range(len(positives.part_names)):
            fraction = (labels == col + 1).flatten(1).float().sum(1) / pixels
            area[row, col] = float(fraction.mean()) if bool((fraction > 0).any()) else np.nan
        visible[row] = (~torch.isnan(positives.landmarks[index, :, 0])).float().mean(0).numpy()
    fig, axes = plt.subplots(1, 2, figsize=(12, 0.55 * len(categories) + 1.8))
    sns.heatmap(100 * area, annot=True, fmt=".1f", xticklabels=positives.part_names, yticklabels=categories,
                cmap="mako_r", ax=axes[0], cbar=False)
    axes[0].set_title("mean visible part area (% of the crop)")
    sns.heatmap(visible, annot=True, fmt=".2f", xticklabels=positives.landmark_names, yticklabels=categories,
                cmap="rocket_r", vmin=0, vmax=1, ax=axes[1], cbar=False)
    axes[1].set_title("landmark present (fraction of images)")
    fig.tight_layout()
    return fig


def landmark_spread(arrays: PartArrays, names: Sequence[str] = ("head", "torso", "tail")) -> plt.Figure:
    """Scatter of landmark positions in the crop frame, per category: parts move from image to image."""
    positives = arrays.positives()
    categories = sorted(set(positives.categories))
    fig, axes = plt.subplots(1, len(categories), figsize=(2.4 * len(categories), 2.6), squeeze=False)
    height, width = positives.image_size
    for ax, category in zip(axes[0], categories, strict=True):
        index = torch.tensor([c == category for c in positives.categories])
        for name in names:
            if name not in positives.landmark_names:
                continue
            points = positives.landmark(name)[index].numpy()
            ax.scatter(points[:, 1], points[:, 0], s=4, alpha=0.5, color=part_colour(name), label=name)
        ax.set_xlim(0, width)
        ax.set_ylim(height, 0)
        ax.set_aspect("equal")
        ax.set_title(category, fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    axes[0, 0].legend(fontsize=7, markerscale=2, loc="lower left")
    fig.tight_layout()
    return fig


def training_curves(histories: Mapping[str, Mapping[str, Sequence[float]]]) -> plt.Figure:
    """Training loss and train/validation accuracy per epoch for each named run."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.6))
    for k, (name, history) in enumerate(histories.items()):
        colour = PART_COLOURS[k % 10]
        epochs = np.arange(1, len(history["loss"]) + 1)
        axes[0].plot(epochs, history["loss"], color=colour, label=name)
        axes[1].plot(epochs, history["train_accuracy"], color=colour, ls="--", alpha=0.6)
        if "val_accuracy" in history:
            axes[1].plot(epochs, history["val_accuracy"], color=colour, label=name)
    axes[0].set(xlabel="epoch", ylabel="training loss", title="loss")
    axes[1].set(xlabel="epoch", ylabel="accuracy", title="accuracy (solid: validation, dashed: training)", ylim=(0, 1))
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    return fig


def accuracy_bars(accuracies: Mapping[str, float], target: float | None = None) -> plt.Figure:
    """Bar chart of test accuracies, with an optional target line."""
    fig, ax = plt.subplots(figsize=(1.1 * len(accuracies) + 2, 3))
    names = list(accuracies)
    ax.bar(names, [accuracies[n] for n in names], color=[PART_COLOURS[k % 10] for k in range(len(names))])
    for k, name in enumerate(names):
        ax.text(k, accuracies[name] + 0.01, f"{accuracies[name]:.3f}", ha="center", fontsize=8)
    if target is not None:
        ax.axhline(target, color="k", ls=":", lw=1)
    ax.set(ylim=(0, 1.05), ylabel="test accuracy")
    fig.tight_layout()
    return fig
