"""And-Or graph (AOG) few-shot semantic part localization on explanatory-graph nodes, and its baselines
(explanatory graph papers, Experiment 3: Fig. 8 / Tables 2-3 arXiv; Fig. 10 / Tables 2-5 AAAI)."""

from .data import Examples, Views, choose_examples, crop_views, mirror_points, part_boxes
from .localizers import (
    AndOrGraph,
    FilterPartDetectors,
    Localizer,
    MeanPrior,
    PatchSVM,
    Prediction,
    keep_better,
    vote,
)
from .patterns import FilterPeaks, GraphNodes, Patterns
from .pipeline import (
    ABLATIONS,
    METHODS,
    PROFILES,
    Localization,
    PartTask,
    ablation,
    distance_table,
    draws,
    evaluate,
    localizers,
    make_examples,
    mean_over_draws,
    nodes_per_template,
    paper_values,
    part_task,
    pattern_count,
    redraw,
    run_draws,
    run_methods,
    summarize,
    task_from_graph,
)

__all__ = [
    "ABLATIONS", "METHODS", "PROFILES", "ablation", "AndOrGraph", "choose_examples", "crop_views", "distance_table",
    "draws", "evaluate", "Examples", "FilterPartDetectors", "FilterPeaks", "GraphNodes",
    "keep_better", "Localization", "Localizer", "localizers", "make_examples", "mean_over_draws", "MeanPrior",
    "mirror_points", "nodes_per_template", "paper_values", "part_boxes", "part_task", "PartTask", "PatchSVM",
    "pattern_count", "Patterns", "Prediction", "redraw", "run_draws", "run_methods", "summarize", "task_from_graph",
    "Views", "vote",
]
