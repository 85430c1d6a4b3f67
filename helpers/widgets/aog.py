"""Widgets of notebook 04: choose the annotated crops and the AOG's knobs, see its part localizations change."""

from __future__ import annotations

from typing import Any

import ipywidgets as widgets
import matplotlib.pyplot as plt
import torch

from ..aog import AndOrGraph, GraphNodes, PartTask, nodes_per_template, part_boxes
from ..aog.data import annotated
from ..explanatory_graph import net_features
from ..metrics import normalized_distance
from ..viz.aog import and_or_graph, localizations
from .panel import live_panel


def aog_explorer(task: PartTask, settings: dict[str, Any], candidates: int = 60) -> widgets.Widget:
    """Pick the m annotated crops (among ``candidates`` annotatable training crops, the task's own first), K, the
    spreads and the OR rule; the AOG is re-learned on the spot and its test localizations redrawn. The graph is
    parsed once on the candidates and the test crops (plain and mirrored), so a change costs only the votes."""
    others = annotated(task.train, task.part)
    pool = torch.cat([task.example_index, others[~torch.isin(others, task.example_index)]])[:candidates]
    arrays = task.train.subset(pool)
    patterns = GraphNodes(task.graph).fit(task.examples.pool)
    parsed = patterns(net_features(task.net, arrays.images, task.graph.layers, device=task.device))
    test_plain, test_mirrored = patterns(task.test.maps), patterns(task.test.mirrored)
    centres, boxes = arrays.landmark(task.part), part_boxes(arrays, task.part)
    size = task.test.input_size
    picks = [widgets.IntSlider(t, 0, len(pool) - 1, description=f"crop {t + 1}", continuous_update=False)
             for t in range(len(task.examples))]
    k = widgets.IntSlider(nodes_per_template(settings, task.graph), 1, parsed[1].shape[1], description="K",
                          continuous_update=False)
    vote = widgets.FloatSlider(settings["aog_vote_spread"], min=0.01, max=0.2, step=0.01, description="vote spread",
                               continuous_update=False)
    select = widgets.FloatSlider(settings["aog_select_spread"], min=0.01, max=0.5, step=0.01,
                                 description="select spread", continuous_update=False)
    rule = widgets.Dropdown(options=["sum", "max"], value=settings["aog_or_rule"], description="OR rule")
    output = widgets.Output()

    def draw(*_):
        index = torch.tensor([p.value for p in picks])
        model = AndOrGraph(patterns, k.value, vote.value, select.value, rule.value, flip=True)
        model.learn(parsed[0][index], parsed[1][index], centres[index].to(task.device) / size)
        prediction = model.predict_parsed(test_plain, test_mirrored, size)
        result = normalized_distance(prediction.centres.cpu(), task.truth, (size, size), task.boxes)
        with output:
            output.clear_output(wait=True)
            print(f"{task.category}: normalized distance {result.value:.4f}, inside the part box "
                  f"{result.inside_rate:.1%} over {result.count} test crops")
            and_or_graph(model, arrays.images[index], centres[index], boxes[index], task.part)
            plt.show()
            localizations(task.test_arrays.images, task.truth, task.boxes, {"aog": prediction.centres.cpu()},
                          result.per_object, count=5, labels={"aog": "AOG (ours)"})
            plt.show()

    return live_panel([picks, [k, vote, select, rule]], output, draw)
