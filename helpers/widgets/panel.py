"""The layout every widget panel shares: rows of controls above an output area, redrawn when a control changes.

Static mode (``HELPERS_STATIC_WIDGETS=1``, set by the batch runner and ``make test``): widgets are built and wired
as usual and each panel draws once, but no widget talks to the front end (their comms are the ``comm`` package's
silent ``DummyComm``), so an unattended run has no widget traffic to wait on; the first drawing lands in the cell
as an ordinary output and a line says how to get the live panel.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence

import comm
import ipywidgets as widgets
from IPython.display import display

STATIC_NOTE = ("(interactive panel: its controls need a live kernel; open this notebook in JupyterLab and run it "
               "there. Above: its first drawing.)")


def static_widgets() -> bool:
    """Whether widgets are built without a front end (``HELPERS_STATIC_WIDGETS`` set to a non-empty value)."""
    return bool(os.environ.get("HELPERS_STATIC_WIDGETS"))


def use_silent_comms() -> None:
    """Give every widget made from now on a comm that sends nothing (see the module docstring)."""
    comm.create_comm = comm.DummyComm


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
    if static_widgets():
        print(STATIC_NOTE)
    else:
        display(panel)
    return panel
