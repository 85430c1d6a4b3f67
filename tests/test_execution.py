"""Notebook execution that cannot hang: bounded waits, nudges, the silence check, cell timeouts."""

import asyncio
import time
from queue import Empty
from types import SimpleNamespace

import pytest
from jupyter_client.asynchronous.client import AsyncKernelClient
from nbformat.v4 import new_code_cell, new_notebook

from helpers.execution import SILENCE_S, BoundedPollClient, NotebookStalled, bounded_get_msg, cell_timeout_s


class HeldReply:
    """A channel with the hang of ipykernel 7: the reply is there, but an unbounded wait is never woken, and a
    bounded wait finds it only after the kernel has been sent another request (``release``)."""

    def __init__(self) -> None:
        self.released = False
        self.waits: list[float | None] = []

    def release(self) -> None:
        self.released = True

    async def get_msg(self, timeout: float | None = None) -> dict:
        self.waits.append(timeout)
        if timeout is None:
            await asyncio.Event().wait()  # never woken
        await asyncio.sleep(timeout)
        if not self.released:
            raise Empty
        return {"msg_type": "execute_reply"}


def test_the_held_reply_hangs_an_unbounded_wait():
    channel = HeldReply()
    channel.release()

    async def wait() -> None:
        await asyncio.wait_for(channel.get_msg(timeout=None), 0.3)

    with pytest.raises(asyncio.TimeoutError):  # what nbclient's own wait does: the run would hang for ever
        asyncio.run(wait())


def test_bounded_waits_and_the_nudge_release_the_reply():
    channel = HeldReply()
    quiet = []

    def nudge() -> None:
        quiet.append(time.monotonic())
        if len(quiet) == 2:  # the second nudge is the one the kernel answers
            channel.release()

    get_msg = bounded_get_msg(channel.get_msg, poll_s=0.05, on_quiet=nudge)
    begin = time.monotonic()
    assert asyncio.run(get_msg(timeout=None)) == {"msg_type": "execute_reply"}
    assert time.monotonic() - begin < 1.0
    assert channel.waits == [0.05, 0.05, 0.05], "no wait is longer than the bound, one after each nudge"
    assert len(quiet) == 2


def test_bounded_waits_keep_the_callers_timeout():
    channel = HeldReply()
    get_msg = bounded_get_msg(channel.get_msg, poll_s=0.05)
    begin = time.monotonic()
    with pytest.raises(Empty):
        asyncio.run(get_msg(timeout=0.12))
    assert 0.1 <= time.monotonic() - begin < 0.5
    assert all(wait <= 0.05 + 1e-9 for wait in channel.waits) and len(channel.waits) >= 3


def test_quiet_waits_nudge_with_backoff_and_a_silent_cell_is_stalled():
    client = BoundedPollClient(SimpleNamespace(nb=new_notebook(cells=[new_code_cell("1")])), kernel_name="python3")
    client.kc = AsyncKernelClient()
    sent = []
    client.kc.kernel_info = lambda: sent.append("kernel_info")
    client.on_quiet()
    assert sent == [], "no cell is executing"
    client._cell_outputs, client._heard = object(), True
    for waited, expected in ((1.0, 0), (2.5, 1), (3.0, 1), (4.5, 2), (7.0, 2), (8.5, 3)):
        client._waiting_since = time.monotonic() - waited
        client.on_quiet()
        assert len(sent) == expected, (waited, sent)
    client._next_nudge_s = 64.0
    client._waiting_since = time.monotonic() - 65
    client.on_quiet()
    assert client._next_nudge_s == 124.0, "at most a minute between nudges"
    client._heard = False  # not one message of the cell came: not even "busy"
    client._waiting_since = time.monotonic() - SILENCE_S - 1
    with pytest.raises(NotebookStalled, match="no message of the cell came in 61 s"):
        client.on_quiet()


def test_cell_timeouts_grow_with_the_profile():
    assert cell_timeout_s("smoke") < cell_timeout_s("teach") < cell_timeout_s("paper")


def test_a_real_run_waits_through_the_bounded_channels(tmp_path, monkeypatch):
    """papermill calls nbclient's synchronous twins: the bounded waits must be installed on that path too."""
    import nbformat
    import zmq

    from helpers import execution

    installed = []

    def recording(get_msg, poll_s=execution.POLL_S, on_quiet=lambda: None):
        installed.append(get_msg.__self__.socket.type)
        return bounded_get_msg(get_msg, poll_s, on_quiet)

    monkeypatch.setattr(execution, "bounded_get_msg", recording)
    source = tmp_path / "00_tiny.ipynb"
    notebook = new_notebook(cells=[new_code_cell("import time\ntime.sleep(1.5)\nprint('slept')")])
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(notebook, source)
    execution.execute_notebook(source, tmp_path / "out.ipynb", {}, "smoke", tmp_path, timeout_s=60)
    assert installed == [zmq.DEALER, zmq.SUB], "shell and iopub waits are bounded"
    assert "slept" in (tmp_path / "out.ipynb").read_text()


def test_the_command_line_writes_where_it_was_asked_to(tmp_path, monkeypatch):
    import nbformat

    from helpers.execution import main

    folder = tmp_path / "notebooks"
    folder.mkdir()
    notebook = new_notebook(cells=[new_code_cell("import os\nprint(os.getcwd())")])
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(notebook, folder / "00_tiny.ipynb")
    monkeypatch.chdir(tmp_path)
    assert main(["notebooks/00_tiny.ipynb", "out.ipynb", "--profile", "smoke", "-p", "X", '["a", 1]']) == 0
    written = (tmp_path / "out.ipynb").read_text()
    assert str(folder) in written, "the kernel ran in the notebook's folder"
    assert 'X = [\\"a\\", 1]' in written or "X = ['a', 1]" in written, "the value was read as JSON"
    assert not (folder / "out.ipynb").exists(), "no stray copy beside the notebook"
