"""Notebook 04's experiment (explanatory graph papers, Experiment 3, Tables 2-5 arXiv / Tables 2-5 AAAI): per
category, learn from m part annotations of training crops, localize the part on the test crops, compare methods.

:data:`PROFILES` is the AOG's section of the profiles (``config.resolve(..., sections=[PROFILES])``).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import pandas as pd
import torch
from torch import Tensor, nn

from ..config import get_device
from ..data.arrays import PartArrays
from ..explanatory_graph import ExplanatoryGraph, net_features
from ..explanatory_graph.pipeline import MinedGraph, mined_graph
from ..metrics import DistanceResult, normalized_distance
from ..results import paper_numbers
from .data import Examples, Views, choose_examples, crop_views, part_boxes
from .localizers import AndOrGraph, FilterPartDetectors, Localizer, MeanPrior, PatchSVM, Prediction
from .patterns import FilterPeaks, GraphNodes

# Ours: m = 3 templates and K = 0.1 x the graph's nodes as in the paper (Experiment 3); the spreads, the OR rule and
# the baselines' knobs were chosen on the validation split of the teach profile (each method its best setting).
PROFILES: dict[str, dict[str, Any]] = {
    profile: {"aog_part": "head", "aog_templates": 3, "aog_k_fraction": 0.1, "aog_vote_spread": 0.06,
              "aog_select_spread": 0.05, "aog_or_rule": "sum", "aog_flip": True, "aog_raw_k_fraction": 0.4,
              "aog_pdd_k": 10, "aog_svm_c": 0.001,
              "aog_draws": 1 if profile == "smoke" else 3}
    for profile in ("smoke", "teach", "paper")
}
# method key -> (label here, the paper's row it stands for in Tables 2-5)
METHODS: dict[str, tuple[str, str | None]] = {
    "aog": ("AOG on graph nodes (ours)", "AOG (ours)"),
    "aog_raw_units": ("AOG on raw units (supervised-AOG-like)", "supervised AOG"),
    "raw_filters": ("raw filters (CNN-PDD-like)", "CNN-PDD"),
    "patch_svm": ("patch features + linear SVM (fc7+linearSVM-like)", "fc7+linearSVM"),
    "mean_offset_prior": ("mean-offset prior", None),
}
PAPER_DATASETS = {"cub": "CUB-200-2011", "ilsvrc_animal_part": "ILSVRC Animal-Part", "voc_part": "Pascal-Part"}


@dataclass
class PartTask:
    """One category's few-shot problem: the performer and its graph, the training crops the annotations are
    drawn from, the annotated ``examples`` (crops ``example_index`` of ``train``), and the test crops that have the
    part, with their part centres ``truth`` (n, 2) and part ``boxes`` (n, 4); ``device`` holds the maps."""

    category: str
    part: str
    net: nn.Module
    graph: ExplanatoryGraph
    train: PartArrays
    example_index: Tensor
    examples: Examples
    test_arrays: PartArrays
    test: Views
    truth: Tensor
    boxes: Tensor
    device: torch.device


def make_examples(net: nn.Module, arrays: PartArrays, index: Tensor, part: str, pool: dict[str, Tensor],
                  layers: list[str], device: str | torch.device = "auto") -> Examples:
    """:class:`Examples` from crops ``index`` of ``arrays``: their views, part centres and part boxes."""
    chosen = arrays.subset(index)
    return Examples(crop_views(net, chosen.images, layers, device), chosen.landmark(part), part_boxes(chosen, part),
                    pool)


def part_task(settings: dict[str, Any], category: str, seed: int = 0, device: str = "auto") -> PartTask:
    """The category's task on its graph (:func:`~helpers.explanatory_graph.pipeline.mined_graph`: cached, shared
    with notebook 01); see :func:`task_from_graph`."""
    return task_from_graph(settings, mined_graph(settings, category, seed, device), seed, device)


def task_from_graph(settings: dict[str, Any], mined: MinedGraph, seed: int = 0, device: str = "auto") -> PartTask:
    """``aog_templates`` annotated training crops drawn with ``seed``, the test crops that have the part, and the
    maps of the graph's mining images (the unannotated pool)."""
    part = settings["aog_part"]
    net, graph = mined.performer.net, mined.graph
    train = mined.data.train.positives()
    index = choose_examples(train, part, settings["aog_templates"], seed)
    pool = net_features(net, mined.images.images, graph.layers, device=device)
    test = mined.data.test.positives()
    test = test.subset(test.landmark(part).isfinite().all(1))
    return PartTask(train.categories[0], part, net, graph, train, index,
                    make_examples(net, train, index, part, pool, graph.layers, device), test,
                    crop_views(net, test.images, graph.layers, device), test.landmark(part), part_boxes(test, part),
                    get_device(device))


def pattern_count(graph: ExplanatoryGraph) -> tuple[int, int]:
    """(graph nodes, raw filters) over the graph's layers."""
    return (sum(graph.mu[name][..., 0].numel() for name in graph.layers),
            sum(spec.channels for spec in graph.specs))


def nodes_per_template(settings: dict[str, Any], graph: ExplanatoryGraph) -> int:
    """K of ours: ``aog_k_fraction`` of the graph's nodes (paper: 0.1 for ILSVRC/CUB, 0.4 for Pascal-Part)."""
    return max(1, round(settings["aog_k_fraction"] * pattern_count(graph)[0]))


def localizers(settings: dict[str, Any], graph: ExplanatoryGraph) -> dict[str, Localizer]:
    """Ours and every baseline of :data:`METHODS`, unfitted, on the graph's layers. Ours retrieves K =
    ``aog_k_fraction`` of the graph's nodes per template (paper: 0.1, Experiment 3); the AOG on raw units
    ``aog_raw_k_fraction`` of the filters; the CNN-PDD-like baseline ``aog_pdd_k`` filters."""
    k_nodes = nodes_per_template(settings, graph)
    k_filters = max(1, round(settings["aog_raw_k_fraction"] * pattern_count(graph)[1]))
    spread, select, flip = settings["aog_vote_spread"], settings["aog_select_spread"], settings["aog_flip"]
    rule = settings["aog_or_rule"]
    peaks = lambda: FilterPeaks(graph.specs, graph.input_size)
    return {
        "aog": AndOrGraph(GraphNodes(graph), k_nodes, spread, select, rule, flip, "aog"),
        "aog_raw_units": AndOrGraph(peaks(), k_filters, spread, select, rule, flip, "aog_raw_units"),
        "raw_filters": FilterPartDetectors(peaks(), settings["aog_pdd_k"], spread, flip),
        "patch_svm": PatchSVM(graph.specs, graph.input_size, settings["aog_svm_c"], flip=flip),
        "mean_offset_prior": MeanPrior(),
    }


@dataclass
class Localization:
    prediction: Prediction
    distance: DistanceResult  # normalized distance (docs/metrics.md) and the rate of centres inside the part box


def evaluate(localizer: Localizer, views: Views, truth: Tensor, boxes: Tensor) -> Localization:
    """Normalized distance of ``localizer``'s part centres on ``views`` to the ``truth`` (n, 2) pixels, and the
    rate of centres inside the part ``boxes`` (n, 4)."""
    prediction = localizer.predict(views)
    size = (views.input_size, views.input_size)
    return Localization(prediction, normalized_distance(prediction.centres.cpu(), truth, size, boxes))


def run_methods(task: PartTask, methods: dict[str, Localizer]) -> dict[str, Localization]:
    """Fit every method on the task's annotations and evaluate it on its test crops."""
    return {name: evaluate(method.fit(task.examples), task.test, task.truth, task.boxes)
            for name, method in methods.items()}


def redraw(task: PartTask, index: Tensor) -> PartTask:
    """The same task annotated on other training crops ``index`` (of ``task.train``)."""
    examples = make_examples(task.net, task.train, index, task.part, task.examples.pool, task.graph.layers,
                             task.device)
    return replace(task, example_index=index, examples=examples)


def draws(task: PartTask, settings: dict[str, Any], seed: int = 0) -> list[PartTask]:
    """The task annotated on ``aog_draws`` random draws of crops (seeds ``seed``, ``seed + 1``, ...; the first is
    the task's own), so that comparisons do not hinge on which m crops were annotated."""
    return [task if draw == 0 else redraw(task, choose_examples(task.train, task.part, len(task.examples), seed + draw))
            for draw in range(settings["aog_draws"])]


def run_draws(task: PartTask, settings: dict[str, Any], seed: int = 0) -> list[dict[str, Localization]]:
    """:func:`run_methods` with every method of :func:`localizers` on each of :func:`draws`."""
    return [run_methods(drawn, localizers(settings, task.graph)) for drawn in draws(task, settings, seed)]


# label -> (the AOG of :func:`localizers` it varies, the settings it changes)
ABLATIONS: dict[str, tuple[str, dict[str, Any]]] = {
    "graph nodes, best template (max OR)": ("aog", {"aog_or_rule": "max"}),
    "raw units, best template (max OR)": ("aog_raw_units", {"aog_or_rule": "max"}),
    "graph nodes, no flip": ("aog", {"aog_flip": False}),
    "graph nodes, K = 0.4 of the nodes": ("aog", {"aog_k_fraction": 0.4}),
}


def ablation(task: PartTask, settings: dict[str, Any], seed: int = 0) -> dict[str, float]:
    """Mean normalized distance over :func:`draws` of every AOG variant of :data:`ABLATIONS`. Each pattern source
    parses the test crops once; the variants only learn and vote (:meth:`AndOrGraph.predict_parsed`)."""
    size = task.test.input_size
    models = {label: localizers({**settings, **changes}, task.graph)[method]
              for label, (method, changes) in ABLATIONS.items()}
    sources = {method: localizers(settings, task.graph)[method].patterns.fit(task.examples.pool)
               for method in {method for method, _ in ABLATIONS.values()}}
    test = {method: (source(task.test.maps), source(task.test.mirrored)) for method, source in sources.items()}
    found: dict[str, list[float]] = {label: [] for label in ABLATIONS}
    for drawn in draws(task, settings, seed):
        examples = drawn.examples
        parsed = {method: source(examples.views.maps) for method, source in sources.items()}
        for label, (method, _) in ABLATIONS.items():
            model = models[label].learn(*parsed[method], examples.centres / size)
            prediction = model.predict_parsed(*test[method], size)
            found[label].append(normalized_distance(prediction.centres.cpu(), task.truth, (size, size)).value)
    return {label: sum(values) / len(values) for label, values in found.items()}


def mean_over_draws(draws: list[dict[str, Localization]], field: str = "value") -> dict[str, float]:
    """Per method, the mean over draws of the normalized distance (``"value"``) or inside-box rate."""
    return {method: sum(getattr(d[method].distance, field) for d in draws) / len(draws) for method in draws[0]}


def summarize(found: dict[str, list[dict[str, Localization]]]) -> dict[str, Any]:
    """The results file's metrics from ``{category: run_draws(...)}``: normalized distance and inside-box rate
    per method (mean over categories of the mean over draws), per category, and per draw."""
    distance = {category: mean_over_draws(draws) for category, draws in found.items()}
    inside = {category: mean_over_draws(draws, "inside_rate") for category, draws in found.items()}
    average = lambda table: {m: sum(row[m] for row in table.values()) / len(table) for m in next(iter(table.values()))}
    per_draw = {category: {m: [d[m].distance.value for d in draws] for m in draws[0]}
                for category, draws in found.items()}
    return {"normalized_distance": average(distance), "inside_box_rate": average(inside),
            "normalized_distance_per_category": distance, "inside_box_rate_per_category": inside,
            "normalized_distance_per_draw": per_draw}


def paper_values(method: str) -> dict[str, float | None]:
    """The paper's normalized distance of the row ``method`` stands for, per dataset (None: no such row)."""
    row = METHODS[method][1]
    tables = paper_numbers()["aog_part_localization_normalized_distance"]
    return {label: tables[key].get(row) if row else None for key, label in PAPER_DATASETS.items()}


def distance_table(results: dict[str, dict[str, float]]) -> pd.DataFrame:
    """Tables 2-5 as one table from ``{category: {method: normalized distance}}``: rows = methods, columns = our
    categories, their mean, the paper's datasets."""
    rows = {}
    for method, (label, _) in METHODS.items():
        ours = {category: found[method] for category, found in results.items() if method in found}
        if ours:
            rows[label] = {**ours, "mean": sum(ours.values()) / len(ours),
                           **{f"paper {k}": v for k, v in paper_values(method).items()}}
    return pd.DataFrame.from_dict(rows, orient="index").astype(float).round(4)
