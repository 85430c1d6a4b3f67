"""Widgets of notebook 02 (interpretable CNN): explore the part templates and masks (tau, beta, mu), and look at one
filter on one image: its feature map, the mask the mask layer chose, the masked map and the receptive field."""

from __future__ import annotations

from collections.abc import Mapping

import ipywidgets as widgets
import matplotlib.pyplot as plt
import torch

from ..data.arrays import PartArrays
from ..interpretable import BETA, template_tau
from ..interpretable_training import top_layer_maps
from ..models.geometry import layer_geometry
from ..models.nets import Performer
from ..viz.interpretable import mask_steps, templates_figure
from .panel import live_panel


def template_explorer(h: int = 8, w: int = 8) -> widgets.Widget:
    """Sliders for tau, beta and the template centre mu: shows T_mu, T- and the mask max(T_mu / tau, 0) (Sec. 3)."""
    tau = widgets.FloatLogSlider(template_tau(h, w), base=10, min=-4, max=0, step=0.05, description="tau",
                                 continuous_update=False, readout_format=".2g")
    beta = widgets.FloatSlider(BETA, min=0.5, max=12.0, step=0.5, description="beta", continuous_update=False)
    row = widgets.IntSlider(h // 2, 0, h - 1, description="mu row", continuous_update=False)
    col = widgets.IntSlider(w // 3, 0, w - 1, description="mu col", continuous_update=False)
    output = widgets.Output()

    def draw(*_):
        with output:
            output.clear_output(wait=True)
            templates_figure(h, w, [(row.value, col.value)], tau=tau.value, beta=beta.value)
            plt.show()

    return live_panel([[tau, beta], [row, col]], output, draw)


def filter_explorer(nets: Mapping[str, Performer], arrays: PartArrays, device: str | torch.device = "auto"
                    ) -> widgets.Widget:
    """Pick a net, a filter of its top conv layer and an image: the image, the filter's map after ReLU, the chosen
    mask, the masked map and its receptive field (Fig. 4)."""
    if not len(arrays):  # nothing to browse: say so instead of showing controls
        print("filter explorer: no image to browse")
        return widgets.VBox([])
    names = list(nets)
    first = nets[names[0]]
    net_choice = widgets.Dropdown(options=names, description="net")
    channels = first.layer(first.top_conv).out_channels
    unit = widgets.IntSlider(0, 0, channels - 1, description="filter", continuous_update=False)
    index = widgets.IntSlider(0, 0, len(arrays) - 1, description="image", continuous_update=False)
    output = widgets.Output()

    def draw(*_):
        net = nets[net_choice.value]
        sample = arrays.subset([index.value])
        images = sample.float_images()
        maps = top_layer_maps(net, sample, device)
        geometry = layer_geometry(net.features, net.relu_of(net.top_conv))
        with output:
            output.clear_output(wait=True)
            title = f"{arrays.categories[index.value]}, filter {unit.value}"
            mask_steps(images, maps.x[:, unit.value], maps.mask[:, unit.value], geometry, [title])
            plt.show()

    return live_panel([[net_choice, unit, index]], output, draw)
