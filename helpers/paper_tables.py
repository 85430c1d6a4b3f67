"""Our numbers next to the papers': read every notebook's results JSON and line it up with ``paper_numbers.json``.

Each :class:`Comparison` is one row of a paper's table: a quantity measured by a notebook (a pair such as
ordinary -> interpretable, or a single value) beside the paper's value for the same quantity and the network the
paper reports (VGG-16 unless the paper has no VGG-16 row).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .config import published_results_dir
from .results import markdown_table as layout_table
from .results import paper_numbers

NOTEBOOKS = ("00_data_and_performers", "01_explanatory_graph", "02_interpretable_cnn", "03_explainer",
             "04_aog_part_localization")


@dataclass(frozen=True)
class Comparison:
    notebook: str
    table: str  # where the paper reports it
    quantity: str
    keys: tuple[str, ...]  # dotted paths into the notebook's results (one value, or a before -> after pair)
    paper: Callable[[dict[str, Any]], tuple[float, ...]]  # the paper's value(s) from paper_numbers.json
    lower_is_better: bool


def _icnn(table: str, net: str = "VGG-16", scale: float = 1.0) -> Callable[[dict], tuple[float, ...]]:
    return lambda p: tuple(v * scale for v in p["interpretable_cnn"][table][net])


COMPARISONS: tuple[Comparison, ...] = (
    Comparison("01_explanatory_graph", "explanatory graph, Table 1 (CUB, VGG-16)",
               "location instability: raw filters -> graph nodes",
               ("metrics.instability_raw_filters", "metrics.instability_nodes"),
               lambda p: tuple(p["explanatory_graph"]["location_instability_cub"]["VGG-16"]), True),
    Comparison("02_interpretable_cnn", "interpretable CNN, Table 4 (VOC Part, single-category, VGG-16)",
               "location instability: ordinary -> interpretable",
               ("metrics.instability_ordinary", "metrics.instability_interpretable"),
               _icnn("location_instability_voc_single"), True),
    Comparison("02_interpretable_cnn", "interpretable CNN, Table 1 (VOC Part, single-category, VGG-16)",
               "part interpretability: ordinary -> interpretable",
               ("metrics.interpretability_ordinary", "metrics.interpretability_interpretable"),
               _icnn("part_interpretability_voc_single"), False),
    Comparison("02_interpretable_cnn", "interpretable CNN, Table 7 (VOC Part, single-category, VGG-16)",
               "single-category accuracy: ordinary -> interpretable",
               ("metrics.accuracy_single_ordinary", "metrics.accuracy_single_interpretable"),
               _icnn("accuracy_single_voc_percent", scale=0.01), False),
    Comparison("02_interpretable_cnn", "interpretable CNN, Table 7 (VOC Part, multi-category softmax, VGG-16)",
               "multi-category accuracy: ordinary -> interpretable",
               ("metrics.accuracy_multi_ordinary", "metrics.accuracy_multi_interpretable"),
               _icnn("accuracy_multi_voc_softmax_percent", scale=0.01), False),
    Comparison("03_explainer", "explainer, Table 2 (CUB, VGG-16; 0.58-0.96 over all nets)",
               "p (share of the interpretable track)", ("metrics.p",),
               lambda p: (p["explainer"]["p_value_cub"]["VGG-16"],), False),
    Comparison("03_explainer", "explainer, Table 1 (VOC Part, multi-category, VGG-16)",
               "location instability: performer -> explainer",
               ("metrics.instability_performer", "metrics.instability_explainer"),
               lambda p: tuple(p["explainer"]["location_instability_voc_multi"]["VGG-16"]), True),
    Comparison("03_explainer", "explainer, Table 3 (VOC Part, multi-category, VGG-16)",
               "classification error: performer -> explainer",
               ("metrics.error_performer", "metrics.error_explainer"),
               lambda p: tuple(p["explainer"]["classification_error_voc_multi_percent"]["VGG-16"][k] / 100
                               for k in ("performer", "explainer")), True),
    *(Comparison("04_aog_part_localization", "explanatory graph, Tables 2-5 (VOC Part, head, 3-shot)",
                 f"normalized distance: {ours}", (f"metrics.normalized_distance.{ours}",),
                 (lambda name: lambda p: (p["aog_part_localization_normalized_distance"]["voc_part"][name],))(theirs),
                 True)
      for ours, theirs in (("aog", "AOG (ours)"), ("aog_raw_units", "supervised AOG"), ("raw_filters", "CNN-PDD"),
                           ("patch_svm", "fc7+linearSVM"))),
)


def load_results(profile: str, root: Path | None = None) -> dict[str, dict[str, Any]]:
    """Every notebook's results JSON for ``profile`` that exists (notebook stem -> record)."""
    folder = root / profile if root is not None else published_results_dir(profile)
    found = {}
    for stem in NOTEBOOKS:
        path = folder / f"{stem}.json"
        if path.is_file():
            found[stem] = json.loads(path.read_text())
    return found


def lookup(record: Mapping[str, Any], dotted: str) -> Any:
    """``record["a"]["b"]`` for ``"a.b"``; None when any level is missing."""
    value: Any = record
    for part in dotted.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return None
        value = value[part]
    return value


def comparison_rows(results: Mapping[str, Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One dict per :data:`COMPARISONS` row: ours (None where the notebook has not run), the paper's, and for
    pairs the relative change after/before of both."""
    numbers = paper_numbers()
    rows = []
    for row in COMPARISONS:
        record = results.get(row.notebook)
        ours = tuple(lookup(record, key) for key in row.keys) if record else (None,) * len(row.keys)
        paper = row.paper(numbers)
        entry = {"notebook": row.notebook, "table": row.table, "quantity": row.quantity, "ours": list(ours),
                 "paper": list(paper), "lower_is_better": row.lower_is_better}
        if len(row.keys) == 2:
            entry["ratio_ours"] = ours[1] / ours[0] if None not in ours and ours[0] else None
            entry["ratio_paper"] = paper[1] / paper[0]
        rows.append(entry)
    return rows


def all_claims(results: Mapping[str, Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Every claim of every notebook, tagged with its notebook."""
    return [{"notebook": stem, **claim} for stem, record in results.items() for claim in record.get("claims", [])]


def missing_notebooks(results: Mapping[str, Any]) -> list[str]:
    return [stem for stem in NOTEBOOKS if stem not in results]


def markdown_table(rows: list[dict[str, Any]]) -> str:
    """The comparison rows as a Markdown table (ours beside the paper's)."""
    def fmt(values: list[Any]) -> str:
        return " → ".join("–" if v is None else f"{v:.3f}" for v in values)

    def ratio(row: dict[str, Any], key: str) -> str:
        return "" if "ratio_paper" not in row else ("–" if row.get(key) is None else f"{row[key]:.2f}")

    return layout_table(["paper table", "quantity", "ours", "paper", "ratio ours", "ratio paper"],
                          [[row["table"], row["quantity"], fmt(row["ours"]), fmt(row["paper"]),
                            ratio(row, "ratio_ours"), ratio(row, "ratio_paper")] for row in rows])
