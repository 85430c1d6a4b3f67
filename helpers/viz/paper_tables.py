"""Plots and tables of notebook 05: our numbers next to the papers'."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import matplotlib.pyplot as plt
import numpy as np

from ..results import markdown_table
from .data import save

__all__ = ["claims_markdown", "ratio_bars", "save"]


def claims_markdown(claims: Sequence[dict[str, Any]]) -> str:
    """A Markdown table of claims: notebook, statement, our value, the paper's, whether it holds."""
    def fmt(value: Any) -> str:
        if value is None:
            return "–"
        return f"{value:.3f}" if isinstance(value, float) else str(value)

    if not claims:
        return "_no results yet: run the notebooks first_"
    rows = [[c["notebook"], c["name"], fmt(c["value"]), fmt(c["paper_value"]), "yes" if c["holds"] else "**no**"]
            for c in claims]
    return markdown_table(["notebook", "claim", "ours", "paper", "holds"], rows)


def ratio_bars(rows: Sequence[dict[str, Any]]) -> plt.Figure:
    """For each before -> after row, the ratio after / before: ours beside the paper's (1 = no effect)."""
    pairs = [row for row in rows if "ratio_paper" in row]
    fig, ax = plt.subplots(figsize=(9, 0.5 * len(pairs) + 1.5))
    y = np.arange(len(pairs))
    ours = [np.nan if row["ratio_ours"] is None else row["ratio_ours"] for row in pairs]
    ax.barh(y - 0.2, ours, height=0.4, label="ours")
    ax.barh(y + 0.2, [row["ratio_paper"] for row in pairs], height=0.4, label="paper", alpha=0.7)
    ax.axvline(1.0, color="k", lw=0.8, ls=":")
    ax.set_yticks(y, [f"{row['quantity']}\n({row['table'].split(',')[0]})" for row in pairs], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("after / before")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig
