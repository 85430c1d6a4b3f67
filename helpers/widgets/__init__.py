"""ipywidgets panels for the notebooks, one module per notebook (they need a running kernel; each function
displays its panel and returns it). With ``HELPERS_STATIC_WIDGETS`` set they run without a front end (see
:mod:`.panel`)."""

from .data import sample_browser
from .panel import static_widgets, use_silent_comms

if static_widgets():
    use_silent_comms()

__all__ = ["sample_browser"]
