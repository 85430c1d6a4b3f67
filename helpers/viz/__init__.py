"""Every plot of the notebooks, one module per notebook (``data`` also holds the shared pieces).

Functions return the matplotlib Figure; :func:`save` writes it to ``figures/``.
"""

from .data import (
    accuracy_bars,
    gallery,
    landmark_spread,
    part_colour,
    part_statistics,
    samples_per_class,
    save,
    show_sample,
    training_curves,
)

__all__ = [
    "accuracy_bars",
    "gallery",
    "landmark_spread",
    "part_colour",
    "part_statistics",
    "samples_per_class",
    "save",
    "show_sample",
    "training_curves",
]
