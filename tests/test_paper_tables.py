import json

import pytest

from helpers import paper_tables
from helpers.results import paper_numbers


def _write(folder, stem, metrics, claims=()):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{stem}.json").write_text(json.dumps({"metrics": metrics, "claims": list(claims)}))


def test_rows_line_up_ours_with_the_papers(tmp_path):
    folder = tmp_path / "teach"
    _write(folder, "02_interpretable_cnn", {"instability_ordinary": 0.10, "instability_interpretable": 0.07},
           [{"name": "ratio", "value": 0.7, "paper_value": 0.69, "holds": True}])
    _write(folder, "04_aog_part_localization", {"normalized_distance": {"aog": 0.12, "patch_svm": 0.2}})
    results = paper_tables.load_results("teach", tmp_path)
    assert set(results) == {"02_interpretable_cnn", "04_aog_part_localization"}
    rows = {(r["notebook"], r["quantity"]): r for r in paper_tables.comparison_rows(results)}
    icnn = rows[("02_interpretable_cnn", "location instability: ordinary -> interpretable")]
    assert icnn["ours"] == [0.10, 0.07] and icnn["ratio_ours"] == pytest.approx(0.7)
    # Table 4, VGG-16: 0.139 -> 0.096
    assert icnn["paper"] == [0.139, 0.096] and icnn["ratio_paper"] == pytest.approx(0.096 / 0.139)
    aog = rows[("04_aog_part_localization", "normalized distance: aog")]
    assert aog["ours"] == [0.12] and aog["paper"] == [0.177]
    assert rows[("04_aog_part_localization", "normalized distance: raw_filters")]["ours"] == [None]
    assert len(rows) == len(paper_tables.COMPARISONS), "every row has its own (notebook, quantity)"
    accuracy = rows[("02_interpretable_cnn", "single-category accuracy: ordinary -> interpretable")]
    assert accuracy["paper"] == pytest.approx([0.9866, 0.9539])
    graph = rows[("01_explanatory_graph", "location instability: raw filters -> graph nodes")]
    assert graph["ours"] == [None, None] and graph["ratio_ours"] is None
    assert paper_tables.missing_notebooks(results) == ["00_data_and_performers", "01_explanatory_graph",
                                                       "03_explainer"]
    claims = paper_tables.all_claims(results)
    assert claims == [{"notebook": "02_interpretable_cnn", "name": "ratio", "value": 0.7, "paper_value": 0.69,
                       "holds": True}]


def test_every_comparison_reads_a_paper_number():
    numbers = paper_numbers()
    for row in paper_tables.COMPARISONS:
        values = row.paper(numbers)
        assert len(values) == len(row.keys) and all(isinstance(v, float) for v in values)


def test_markdown_table_and_lookup():
    rows = paper_tables.comparison_rows({})
    text = paper_tables.markdown_table(rows)
    assert text.count("\n") == len(rows) + 1 and "0.139 → 0.096" in text
    assert paper_tables.lookup({"a": {"b": 2}}, "a.b") == 2 and paper_tables.lookup({"a": 1}, "a.b") is None
