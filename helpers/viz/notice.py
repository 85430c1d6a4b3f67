"""A figure that says why there is nothing to plot (e.g. a split without images), so a notebook cell still shows and
saves a figure."""

from __future__ import annotations

import matplotlib.pyplot as plt


def notice(message: str) -> plt.Figure:
    """A small figure holding only ``message``."""
    fig, ax = plt.subplots(figsize=(5.0, 0.8))
    ax.text(0.5, 0.5, message, ha="center", va="center", fontsize=9, wrap=True)
    ax.axis("off")
    return fig
