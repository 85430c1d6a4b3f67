"""The shared widget panel: layout, and redraw on every control change."""

import ipywidgets as widgets

from helpers.widgets.panel import live_panel


def test_live_panel_redraws_on_changes_and_lays_out_rows():
    calls = []
    slider, choice = widgets.IntSlider(0, 0, 5), widgets.Dropdown(options=["a", "b"])
    button, output = widgets.Button(description="go"), widgets.Output()
    panel = live_panel([[slider], [choice, button]], output, lambda *_: calls.append(slider.value))
    assert calls == [0], "drawn once at once"
    slider.value = 3
    choice.value = "b"
    assert calls == [0, 3, 3]
    assert [len(row.children) for row in panel.children[:-1]] == [1, 2] and panel.children[-1] is output


def test_live_panel_without_draw_only_lays_out():
    slider, output = widgets.IntSlider(0, 0, 5), widgets.Output()
    panel = live_panel([[slider]], output)
    slider.value = 2
    assert panel.children[0].children == (slider,)
