"""The layout every widget panel shares: rows of controls above an output area, redrawn when a control changes."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import ipywidgets as widgets
from IPython.display import display


def live_panel(rows: Sequence[Sequence[widgets.Widget]], output: widgets.Output,
               draw: Callable[..., None] | None = None) -> widgets.VBox:
    """Show ``rows`` of controls above ``output`` and return the panel. With ``draw``: call it whenever the value of
    a control changes (buttons have no value: wire them with ``on_click``) and once now."""
    if draw is not None:
        for control in (control for row in rows for control in row):
            if isinstance(control, widgets.ValueWidget):
                control.observe(draw, names="value")
        draw()
    panel = widgets.VBox([*(widgets.HBox(list(row)) for row in rows), output])
    display(panel)
    return panel
