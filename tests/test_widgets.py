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


def test_static_mode_builds_and_draws_without_talking_to_a_front_end(monkeypatch, capsys):
    import comm

    from helpers.widgets import panel as panel_module

    monkeypatch.setenv("HELPERS_STATIC_WIDGETS", "1")
    monkeypatch.setattr(comm, "create_comm", comm.create_comm)  # restored after the test
    shown = []
    monkeypatch.setattr(panel_module, "display", shown.append)
    panel_module.use_silent_comms()
    calls = []
    slider, output = widgets.IntSlider(1, 0, 5), widgets.Output()
    assert type(slider.comm) is comm.DummyComm and type(output.comm) is comm.DummyComm, "comms that send nothing"
    live_panel([[slider]], output, lambda *_: calls.append(slider.value))
    slider.value = 4
    assert calls == [1, 4], "wired and drawn as in a live kernel"
    assert shown == [] and panel_module.STATIC_NOTE in capsys.readouterr().out, "no widget view is displayed"
