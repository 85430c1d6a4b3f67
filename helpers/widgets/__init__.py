"""ipywidgets panels for the notebooks, one module per notebook (they need a running kernel; each function
displays its panel and returns it)."""

from .data import sample_browser

__all__ = ["sample_browser"]
