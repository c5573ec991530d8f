"""What ``mpifarmer status`` and ``mpifarmer events`` print, once or as the farm goes on.

``status --watch`` redraws in place on a terminal with rich's ``Live`` (imported only then: it
is slow to import), and prints one status after another elsewhere; ``--json`` prints one object
per line. Ctrl-C ends watching and following with exit code 0.
"""

from __future__ import annotations

import json
import signal
import sys
import time
from typing import TextIO

from mpifarmer.observe.events import EventFollower
from mpifarmer.observe.state import FarmReader
from mpifarmer.observe.status import FarmStatus, as_json, exit_code, gather
from mpifarmer.observe.statustext import render
from mpifarmer.store.workdir import WorkDir

__all__ = ["show_events", "show_status"]


def show_status(workdir: WorkDir, *, as_object: bool, watch: float | None, lease: float,
                out: TextIO | None = None) -> int:
    """Print the status once (exit code: 0 all done, 1 some failed, 3 work left), or every
    ``watch`` seconds until interrupted (exit code 0)."""
    out = out or sys.stdout
    reader = FarmReader(workdir)
    try:
        reader.refresh()  # a missing work directory fails here, before anything is printed
        if watch is None:
            status = gather(reader, time.time(), lease=lease)
            out.write(_text(status, as_object))
            out.flush()
            return exit_code(status)
        _interruptible()
        try:
            if out.isatty() and not as_object:
                _watch_live(reader, watch, lease, out)
            else:
                while True:
                    status = gather(reader, time.time(), lease=lease)
                    out.write(_text(status, as_object) + ("" if as_object else "\n"))
                    out.flush()
                    time.sleep(watch)
                    reader.refresh()
        except KeyboardInterrupt:
            return 0
        return 0
    finally:
        reader.close()


def _text(status: FarmStatus, as_object: bool) -> str:
    if as_object:
        return json.dumps(as_json(status), separators=(",", ":")) + "\n"
    return render(status)


def _watch_live(reader: FarmReader, every: float, lease: float, out: TextIO) -> None:
    from rich.console import Console
    from rich.live import Live
    from rich.text import Text

    def frame() -> Text:
        return Text(render(gather(reader, time.time(), lease=lease)).rstrip("\n"))

    console = Console(file=out)
    with Live(frame(), console=console, auto_refresh=False, redirect_stdout=False, redirect_stderr=False) as live:
        while True:
            time.sleep(every)
            reader.refresh()
            live.update(frame(), refresh=True)


def _interruptible() -> None:
    """Make Ctrl-C end watching even where SIGINT came ignored (a job started in the background
    by a shell without job control ignores it, and its children inherit that)."""
    signal.signal(signal.SIGINT, signal.default_int_handler)


def show_events(workdir: WorkDir, *, follow: bool, new_only: bool, poll: float = 0.5,
                out: TextIO | None = None) -> int:
    """Print the work directory's events as JSON lines: every one so far (unless ``new_only``),
    then, with ``follow``, each new one as it is recorded, until interrupted."""
    out = out or sys.stdout
    follower = EventFollower(workdir, from_start=not new_only)
    if follow:
        _interruptible()
    try:
        while True:
            for event in follower.read():
                out.write(json.dumps(event, separators=(",", ":"), ensure_ascii=False) + "\n")
            out.flush()
            if not follow:
                return 0
            time.sleep(poll)
    except KeyboardInterrupt:
        return 0
    finally:
        follower.close()
