"""Widgets of notebook 00: browse the part-annotated data."""

from __future__ import annotations

import ipywidgets as widgets
import matplotlib.pyplot as plt
from torch.utils.data import Dataset

from ..viz import show_sample
from .panel import live_panel


def sample_browser(dataset: Dataset) -> widgets.Widget:
    """Browse a part-annotated dataset: index slider, mask/landmark toggles, landmark coordinates listed."""
    index = widgets.IntSlider(0, 0, len(dataset) - 1, description="sample", continuous_update=False)
    masks = widgets.Checkbox(True, description="part masks")
    landmarks = widgets.Checkbox(True, description="landmarks")
    output = widgets.Output()

    def draw(*_):
        sample = dataset[index.value]
        with output:
            output.clear_output(wait=True)
            fig, ax = plt.subplots(figsize=(3.2, 3.2))
            show_sample(ax, sample, masks=masks.value, landmarks=landmarks.value)
            plt.show()
            marks = ", ".join(f"{n}: ({p[0]:.1f}, {p[1]:.1f})" if p else f"{n}: absent"
                              for n, p in sample.landmarks.items())
            print(f"{sample.category} (label {sample.label}); {marks or 'no landmarks (negative)'}")

    return live_panel([[index, masks, landmarks]], output, draw)
