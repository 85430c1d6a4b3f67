"""Widgets of notebook 03 (explainer network): the eta / filter-loss trade-off (retrains a small explainer on demand,
cached) and a browser of interpretable vs ordinary filters (Fig. 4)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

import ipywidgets as widgets
import matplotlib.pyplot as plt
import torch

from ..data.arrays import PartArrays
from ..evaluation import MapSource, instability
from ..explainer import DistillSettings, distill_cached, interpretable_source, strongest_images
from ..models.nets import Performer
from ..viz import explainer as explainer_viz
from .panel import live_panel


def tradeoff_explorer(net: Performer, train: PartArrays, test: PartArrays, base: DistillSettings,
                      landmarks: Sequence[str], images: int = 640, device: str | torch.device = "auto",
                      highlight: Mapping[str, float] | None = None) -> widgets.Widget:
    """Pick eta (weight of -log p) and the filter-loss ratio of lambda_f, press "learn": a small explainer is learned
    for the single-category performer ``net`` on ``images`` training images (cached, so revisiting a setting is
    instant) and placed in the p / fc7-error plane, coloured by the instability of conv-interp-2 on ``test``.
    ``highlight``: the notebook's explainer ({"p", "fc7_error"})."""
    eta = widgets.FloatLogSlider(base.eta, base=10, min=-1, max=3, step=0.25, description="eta")
    ratio = widgets.FloatLogSlider(base.filter_ratio, base=10, min=-3, max=1, step=0.25, description="ratio r")
    epochs = widgets.IntSlider(base.epochs, 1, 2 * base.epochs, description="epochs")
    button = widgets.Button(description="learn", icon="play")
    output = widgets.Output()
    points: list[dict[str, float]] = []
    subset = train.subset(torch.randperm(len(train), generator=torch.Generator().manual_seed(base.seed))[:images])

    def draw() -> None:
        with output:
            output.clear_output(wait=True)
            explainer_viz.tradeoff(points, highlight)
            plt.show()
            for point in points:
                print(", ".join(f"{key} {value:.3g}" for key, value in point.items()))

    def learn(_button: widgets.Button) -> None:
        settings = dataclasses.replace(base, eta=eta.value, filter_ratio=ratio.value, epochs=epochs.value)
        button.disabled = True
        try:
            run = distill_cached(net, subset, settings, device, name="explainer-widget")
            value = instability(interpretable_source(run.model, device), test, landmarks).value
            points.append({"eta": settings.eta, "ratio": settings.filter_ratio, "epochs": settings.epochs,
                           "p": run.p, "fc7_error": run.history["fc7_error"][-1], "instability": value})
        finally:
            button.disabled = False
        draw()

    button.on_click(learn)
    draw()
    return live_panel([[eta, ratio, epochs, button]], output)


def filter_browser(images: torch.Tensor, sources: Mapping[str, MapSource], arrays: PartArrays, count: int = 6
                   ) -> widgets.Widget:
    """Choose a filter of each layer in ``sources`` (e.g. the performer's top conv and the explainer's conv-interp-2)
    and see its feature maps on its ``count`` strongest positive images of ``arrays`` (Fig. 4);
    ``images``: ``arrays.positives().float_images()``."""
    names = list(sources)
    probe = images[:1].to(next(iter(sources.values())).device)
    sliders = {name: widgets.BoundedIntText(0, min=0, max=sources[name].maps(probe).shape[1] - 1, description=name,
                                            layout=widgets.Layout(width="220px")) for name in names}
    output = widgets.Output()

    def draw(*_) -> None:
        rows = {}
        for name in names:
            filter_index = int(sliders[name].value)
            index, maps = strongest_images(sources[name], arrays, [filter_index], count)
            rows[f"{name} #{filter_index}"] = (index[0], maps[0])
        with output:
            output.clear_output(wait=True)
            explainer_viz.feature_maps(images, rows)
            plt.show()

    return live_panel([list(sliders.values())], output, draw)
