"""Widgets of notebook 01, the explanatory graph: browse a node's image patches; re-mine a layer with other
N per filter, M and tau and see its location instability against the raw filters."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace

import ipywidgets as widgets
import matplotlib.pyplot as plt
from IPython.display import Markdown, display
from torch import Tensor

from ..data.arrays import PartArrays
from ..explanatory_graph import ExplanatoryGraph, MinerParams
from ..explanatory_graph.analysis import (
    Observations,
    Views,
    filter_observations,
    instability_table,
    node_observations,
    patch_size,
    patches,
    remine,
    top_units,
)
from ..models.geometry import LayerGeometry
from ..results import markdown_table
from ..viz.explanatory_graph import node_patches
from .panel import live_panel


def node_browser(graph: ExplanatoryGraph, nodes: Observations, images: Tensor, count: int = 8) -> widgets.Widget:
    """Pick a layer and a node (by rank of its mean top-20 score on ``images``) and see its top image patches
    (Fig. 5) with the node's prior position mu_V and spread sigma_V."""
    layer = widgets.Dropdown(options=graph.layers, value=graph.layers[-1], description="layer")
    rank = widgets.IntSlider(0, 0, 49, description="node rank", continuous_update=False)
    output = widgets.Output()
    size = patch_size(graph.input_size)

    def draw(*_):
        name = layer.value
        ranked = top_units(nodes.scores[name], nodes.scores[name].shape[1])
        rank.max = len(ranked) - 1
        flat = int(ranked[min(rank.value, rank.max)])
        per_filter = graph.nodes_per_filter(name)
        mu = graph.mu[name][flat // per_filter, flat % per_filter] * graph.input_size
        sigma = float(graph.sigma[name][flat // per_filter, flat % per_filter]) * graph.input_size
        crops = patches(images, nodes.positions[name][:, flat], nodes.scores[name][:, flat], count, size)
        with output:
            output.clear_output(wait=True)
            node_patches({graph.node_key(name, flat): crops})
            plt.show()
            print(f"mu_V = ({mu[0]:.1f}, {mu[1]:.1f}) px, sigma_V = {sigma:.1f} px; patches {size} x {size} px")

    return live_panel([[layer, rank]], output, draw)


def remine_panel(graph: ExplanatoryGraph, train: Views, test: Views, arrays: PartArrays, landmarks: Sequence[str],
                 geometry: Mapping[str, LayerGeometry], images: int = 100, iterations: int = 5) -> widgets.Widget:
    """Re-mine one layer under the top layer with other N per filter, M and tau (``images`` training images,
    ``iterations`` EM steps: seconds) and compare its nodes' location instability with the raw filters (Table 1
    protocol on the test ``arrays``)."""
    params = MinerParams(**graph.meta["params"])
    lower = widgets.Dropdown(options=graph.layers[:-1], value=graph.layers[-2], description="layer")
    nodes = widgets.IntSlider(graph.nodes_per_filter(lower.value), 1, 12, description="N / filter")
    parents = widgets.IntSlider(params.n_parents, 1, 30, description="M")
    tau = widgets.FloatLogSlider(params.tau, base=10, min=-3, max=1, description="tau")
    button = widgets.Button(description="re-mine", button_style="primary")
    output = widgets.Output()

    def run(*_):
        chosen = replace(params, nodes_per_filter=nodes.value, n_parents=parents.value, tau=tau.value,
                         iterations=iterations)
        with output:
            output.clear_output(wait=True)
            print(f"mining {lower.value} under {graph.layers[-1]} on {images} images ...")
            small = remine(graph, train, [lower.value, graph.layers[-1]], chosen, images)
            observed, inference = node_observations(small, test)
            rows = instability_table(small, observed, filter_observations(small, test),
                                     filter_observations(small, test, inference.flips), arrays, landmarks, geometry)
            table = [[r.layer, r.count, r.nodes, r.filters, r.ratio, r.random] for r in rows]
            output.clear_output(wait=True)
            display(Markdown(markdown_table(["layer", "K", "nodes", "raw filters", "ratio", "random"], table)))

    button.on_click(run)
    return live_panel([[lower, nodes], [parents, tau, button]], output)
