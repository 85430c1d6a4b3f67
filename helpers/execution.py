"""Executing one notebook with papermill so that it can neither hang silently nor stall for ever.

What hung. About one ``python -m helpers.batch run default --profile smoke`` in three used to stop for ever in a
widget cell (notebook 03's filter browser, notebook 01's node browser): papermill waited in its event loop, the
kernel sat idle. In such a run that we let reach a 600 s cell timeout, the cell's recorded message times show that
the kernel had sent its "busy", its outputs, its "idle" and its ``execute_reply`` within 0.5 s of the start; the
client took them in only when the timeout ended its wait. The cause, by reading nbclient 0.11 and pyzmq 27: nbclient
mirrors every ``ipywidgets.Output`` and, each time it routes an output into one, sends the widget's new state back
to the kernel on the *shell* socket (``OutputWidget.sync_state``) while its asyncio poll waits on that same socket
for the reply without a time limit. ZeroMQ tells the event loop about incoming messages through an edge-triggered
file descriptor, and a send can use up the edge of a reply that arrived meanwhile, so the poll is never woken
(ipykernel 7.4 fixed the same wedge on its own side of the shell socket; nbclient issue 312 reports the symptom).

What this module does about it, in :class:`BoundedPollClient`:

1. no wait on a kernel socket lasts longer than ``POLL_S``: each bounded wait ends by reading the socket's state
   afresh, so a message whose wake-up was used up is found within a second;
2. while a reply is missing the client nudges the kernel with a ``kernel_info_request`` (after 2, 4, 8, ... s, then
   every minute; the answers are ignored);
3. a cell of which not one message came within ``SILENCE_S`` (a running cell says "busy" at once) is given up as
   stalled, and every cell has an execution timeout (:func:`cell_timeout_s`): both end the run with
   :class:`NotebookStalled`, which names the notebook and the cell, and the batch runner retries the run once.

Unattended runs also build their widgets without a front end (``HELPERS_STATIC_WIDGETS``, see
:mod:`helpers.widgets.panel`), so there is no Output widget for nbclient to mirror in the first place.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from queue import Empty
from typing import Any

from jupyter_core.utils import run_sync
from nbclient.exceptions import CellTimeoutError, DeadKernelError
from papermill.clientwrap import PapermillNotebookClient
from papermill.engines import NBClientEngine, papermill_engines

ENGINE = "helpers-bounded-poll"
POLL_S = 1.0  # longest single wait on a kernel socket
FIRST_NUDGE_S = 2.0  # first nudge after this many seconds without a reply; then 4, 8, ... s
MAX_NUDGE_GAP_S = 60.0  # at most this long between two nudges
SILENCE_S = 60.0  # a cell of which not one message came in this long is stalled (a running cell says "busy" at once)
CELL_TIMEOUT_S = {"smoke": 600, "teach": 3600, "paper": 6 * 3600}  # per cell; generous, they catch stalls only


class NotebookStalled(RuntimeError):
    """A notebook run that stopped making progress: a cell passed its timeout, or the kernel died."""


def cell_timeout_s(profile: str) -> int:
    """The execution timeout of one cell at ``profile`` (seconds)."""
    return CELL_TIMEOUT_S[profile]


def bounded_get_msg(get_msg: Callable[..., Awaitable[dict[str, Any]]], poll_s: float = POLL_S,
                    on_quiet: Callable[[], None] = lambda: None) -> Callable[..., Awaitable[dict[str, Any]]]:
    """Wrap an async channel's ``get_msg(timeout=...)`` so that no single wait is longer than ``poll_s``.

    The wrapper keeps the caller's overall timeout (``None``: wait for ever) but splits it into bounded waits; after
    each one that found nothing it calls ``on_quiet`` (the client's nudge) and waits again.
    """

    async def get_msg_bounded(timeout: float | None = None) -> dict[str, Any]:
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            wait = poll_s if deadline is None else min(poll_s, max(0.0, deadline - time.monotonic()))
            try:
                return await get_msg(timeout=wait)
            except Empty:
                if deadline is not None and time.monotonic() >= deadline:
                    raise
                on_quiet()

    return get_msg_bounded


class BoundedPollClient(PapermillNotebookClient):
    """papermill's notebook client with bounded waits, nudges and the silence check of the module docstring; it
    remembers the cell it is executing so that a stall can name it."""

    cell_index = -1
    nudges = 0
    _cell_outputs: Any = None  # nbclient's task reading the cell's outputs; done once the kernel said "idle"
    _waiting_since = 0.0  # when the client began to wait for the cell's reply
    _next_nudge_s = FIRST_NUDGE_S  # seconds after that of the next nudge
    _heard = False  # whether any message of the cell came on iopub

    async def async_start_new_kernel_client(self) -> Any:
        client = await super().async_start_new_kernel_client()
        client.shell_channel.get_msg = bounded_get_msg(client.shell_channel.get_msg, on_quiet=self.on_quiet)
        client.iopub_channel.get_msg = bounded_get_msg(client.iopub_channel.get_msg)
        return client

    # nbclient binds its synchronous twin to its own coroutine (papermill calls the twin): rebind it to the override
    start_new_kernel_client = run_sync(async_start_new_kernel_client)

    def on_quiet(self) -> None:
        """Called after each bounded wait that brought no reply: nudge the kernel (after 2, 4, 8, ... s, then every
        minute), and give the cell up as stalled when not one of its messages came in ``SILENCE_S`` seconds."""
        if self._cell_outputs is None or self.kc is None:
            return
        waited = time.monotonic() - self._waiting_since
        if not self._heard and waited > SILENCE_S:
            raise NotebookStalled(f"no message of the cell came in {waited:.0f} s, not even the kernel's 'busy'")
        if waited >= self._next_nudge_s:
            self.nudges += 1
            self._next_nudge_s += min(self._next_nudge_s, MAX_NUDGE_GAP_S)
            self.log.warning(f"cell {self.cell_index}: no reply after {waited:.0f} s; nudging the kernel")
            self.kc.kernel_info()

    def process_message(self, msg: dict[str, Any], cell: Any, cell_index: int) -> Any:
        self._heard = True
        return super().process_message(msg, cell, cell_index)

    async def _async_poll_for_reply(self, msg_id: str, cell: Any, timeout: int | None, task_poll_output_msg: Any,
                                    task_poll_kernel_alive: Any) -> dict[str, Any]:
        self._cell_outputs, self._heard = task_poll_output_msg, False
        self._waiting_since, self._next_nudge_s = time.monotonic(), FIRST_NUDGE_S
        try:
            return await super()._async_poll_for_reply(msg_id, cell, timeout, task_poll_output_msg,
                                                       task_poll_kernel_alive)
        finally:
            self._cell_outputs = None

    def execute_cell(self, cell: Any, cell_index: int, *args: Any, **kwargs: Any) -> Any:
        self.cell_index = cell_index
        return super().execute_cell(cell, cell_index, *args, **kwargs)

    def execute(self, **kwargs: Any) -> Any:
        try:
            return super().execute(**kwargs)
        except (CellTimeoutError, DeadKernelError, NotebookStalled) as error:
            source = self.nb.cells[self.cell_index].source if self.cell_index >= 0 else ""
            first = next((line for line in source.splitlines() if line.strip()), "")[:100]
            if isinstance(error, CellTimeoutError) and "IOPub" in str(error):
                what = f"sent its reply but not all its outputs within {self.iopub_timeout} s"
            elif isinstance(error, CellTimeoutError):
                what = f"ran past its {self.timeout} s execution timeout"
            elif isinstance(error, DeadKernelError):
                what = f"lost its kernel ({error})"
            else:
                what = f"stalled: {error}"
            raise NotebookStalled(f"cell {self.cell_index} ({first!r}) {what}") from error


class BoundedPollEngine(NBClientEngine):
    """papermill engine running :class:`BoundedPollClient` on a kernel that talks over local IPC sockets."""

    @classmethod
    def execute_managed_notebook(cls, nb_man: Any, kernel_name: str, log_output: bool = False,
                                 stdout_file: Any = None, stderr_file: Any = None, start_timeout: int = 60,
                                 execution_timeout: int | None = None, **kwargs: Any) -> Any:
        from traitlets.config import Config

        for unused in ("input_path", "timeout", "startup_timeout"):
            kwargs.pop(unused, None)
        with tempfile.TemporaryDirectory(prefix="helpers-kernel-") as sockets:
            # local IPC sockets in a private folder: no TCP port, no "unencrypted TCP" warning
            ipc = Config({"KernelManager": {"transport": "ipc", "ip": str(Path(sockets) / "kernel")}})
            return BoundedPollClient(nb_man, timeout=execution_timeout, startup_timeout=start_timeout,
                                     kernel_name=kernel_name, log_output=log_output, stdout_file=stdout_file,
                                     stderr_file=stderr_file, config=ipc, **kwargs).execute()


papermill_engines.register(ENGINE, BoundedPollEngine)


def execute_notebook(source: Path, target: Path, parameters: dict[str, Any], profile: str, cwd: Path,
                     timeout_s: int | None = None) -> None:
    """Execute ``source`` into ``target`` with ``parameters``; a stalled cell raises :class:`NotebookStalled`.

    ``timeout_s`` is the per-cell execution timeout (default: :func:`cell_timeout_s` of ``profile``).
    """
    import papermill

    timeout_s = cell_timeout_s(profile) if timeout_s is None else timeout_s
    try:
        papermill.execute_notebook(str(source), str(target), parameters=parameters, kernel_name="python3",
                                   cwd=str(cwd), progress_bar=False, engine_name=ENGINE,
                                   execution_timeout=timeout_s)
    except NotebookStalled as error:
        raise NotebookStalled(f"notebook {source.name}: {error}; the partial notebook is {target}") from error


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m helpers.execution NOTEBOOK OUTPUT [-p NAME VALUE]...``: one notebook run with the protection above
    (VALUE is read as JSON when it parses, else taken as a string)."""
    parser = argparse.ArgumentParser(prog="python -m helpers.execution", description=main.__doc__.split("\n")[0])
    parser.add_argument("notebook", type=Path)
    parser.add_argument("output", type=Path)
    parser.add_argument("-p", "--parameter", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"))
    parser.add_argument("--profile", default=os.environ.get("HELPERS_PROFILE", "teach"), choices=list(CELL_TIMEOUT_S))
    parser.add_argument("--cell-timeout", type=int, help="seconds (default: the profile's)")
    parser.add_argument("--cwd", type=Path, help="working folder of the kernel (default: the notebook's)")
    args = parser.parse_args(argv)

    def value(text: str) -> Any:
        try:
            return json.loads(text)
        except json.JSONDecodeError:
            return text

    parameters = {"PROFILE": args.profile} | {name: value(text) for name, text in args.parameter}
    notebook = args.notebook.resolve()
    execute_notebook(notebook, args.output.resolve(), parameters, args.profile, (args.cwd or notebook.parent).resolve(),
                     args.cell_timeout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
