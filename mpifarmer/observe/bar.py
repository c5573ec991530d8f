"""The progress bar on a terminal, drawn by rich.

rich takes about 75 ms to import, so this module is imported only when the farmer's stderr is a
terminal; batch runs never load it. While the bar is shown, rich puts a proxy in ``sys.stderr``
that prints whatever is written to it above the bar, so log lines (the command line's handler
writes to whatever ``sys.stderr`` is at the time) never break it. The bar is transient: when the
farm ends, or is stopped, it is erased and the terminal is left as if it had never been there.
"""

from __future__ import annotations

from typing import TextIO

from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TextColumn

from mpifarmer.observe.progress import ProgressFigures, rate_phrase
from mpifarmer.observe.words import duration

__all__ = ["TerminalBar", "bar_text"]


def bar_text(figures: ProgressFigures) -> str:
    """The figures beside the bar: the same as the log line's, shorter."""
    return (f"{figures.done:,}/{figures.total:,} done, {figures.failed:,} failed, {figures.running:,} running, "
            f"{rate_phrase(figures.rate_per_min)}, ETA {duration(figures.eta_s)}")


class TerminalBar:
    """A bar that redraws in place on ``stream`` (a terminal) until :meth:`close`."""

    def __init__(self, stream: TextIO) -> None:
        console = Console(file=stream, stderr=True)
        # auto_refresh off: no drawing thread in the farmer; its loop redraws when it shows figures.
        self._progress = Progress(TextColumn("mpifarmer"), BarColumn(), TextColumn("{task.fields[text]}", markup=False),
                                  console=console, auto_refresh=False, transient=True, redirect_stdout=False,
                                  redirect_stderr=True)
        self._task: TaskID | None = None

    def show(self, figures: ProgressFigures) -> None:
        if self._task is None:
            self._progress.start()
            self._task = self._progress.add_task("", total=figures.total or None, text="")
        self._progress.update(self._task, completed=figures.done, total=figures.total or None,
                              text=bar_text(figures))
        self._progress.refresh()

    def close(self) -> None:
        """Erase the bar and give the terminal back."""
        if self._task is not None:
            self._progress.stop()
            self._task = None
