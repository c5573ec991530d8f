"""``mpifarmer log ID``: print a task's output, every run of it that can be read, newest last.

Both layouts are read, so a work directory whose farmers switched ``--logs`` shows them all:
packed runs from every ``logs/pack.*.index`` (see :mod:`mpifarmer.store.packs`), and the
``logs/log_ID`` file that the files layout leaves (the last run it made, timed by its mtime).
"""

from __future__ import annotations

import os
import time
from typing import BinaryIO

from mpifarmer.errors import FarmerError, UsageError, WorkDirError
from mpifarmer.store.packs import Attempt, attempts
from mpifarmer.store.workdir import WorkDir

__all__ = ["NoOutput", "show_log", "task_count"]


class NoOutput(FarmerError):
    """The task exists but no run of it has output to show (it has not run, or is running)."""

    exit_code = 1


def task_count(workdir: WorkDir) -> int:
    """How many tasks the work directory knows: from the journal's last intact ``add`` record (no
    other is parsed), or if it has none since the last compaction, from the snapshot's header."""
    import json

    from mpifarmer.store.journal import read_header
    from mpifarmer.store.snapshot import snapshot_task_count

    data = workdir.journal.read_bytes()
    try:
        generation, _ = read_header(data[:512])
    except ValueError:
        generation = 0
    needle = b'{"e":"add",'
    position = len(data)
    while True:
        found = data.rfind(b"\n" + needle, 0, position)
        start = found + 1 if found >= 0 else (0 if data.startswith(needle) else -1)
        if start < 0:
            return snapshot_task_count(workdir.snapshot(generation)) if generation else 0
        end = data.find(b"\n", start)
        try:
            record = json.loads(data[start : end if end >= 0 else len(data)])
            return int(record["first"]) + len(record["lines"])
        except (ValueError, KeyError, TypeError):  # torn: a farmer was killed writing it
            if start == 0:
                return snapshot_task_count(workdir.snapshot(generation)) if generation else 0
            position = start - 1


def show_log(workdir: WorkDir, text: str, out: BinaryIO) -> int:
    """Write task ``text``'s output to ``out``; with several runs, a header line before each."""
    try:
        task = int(text)
        if task < 0:
            raise ValueError
    except ValueError:
        raise UsageError(f"task ID {text!r} is not a task ID; give the number a task has in its list "
                         "(0 for the first task line)") from None
    if not workdir.exists():
        raise WorkDirError(workdir.root, "is not a work directory (it has no journal.jsonl); give the task list "
                           "of a farm that has run, or its -w/--workdir")
    count = task_count(workdir)
    if task >= count:
        raise UsageError(f"task {task} is not in {workdir.root}, which has {count} tasks (IDs 0 to "
                         f"{count - 1}); give one of those")
    runs = attempts(os.fspath(workdir.logs), task)
    if not runs:
        raise NoOutput(f"task {task} has no output yet: it has not run, or its run has not ended "
                          "(packed logs are written when a run ends)") from None
    for number, attempt in enumerate(runs, 1):
        if len(runs) > 1:
            out.write(f"==> task {task}, run {number} of {len(runs)}: {_describe(attempt)} <==\n".encode())
        if attempt.output is None:
            out.write(f"mpifarmer: this run's output in {attempt.where} is not complete (its writer was killed, "
                      "or the file is not yet visible here)\n".encode())
        else:
            out.write(attempt.output)
        out.flush()
    return 0


def _describe(attempt: Attempt) -> str:
    ended = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(attempt.t1))
    if attempt.farmer is None:
        return f"{os.path.basename(attempt.where)}, written {ended}"
    where = f"farmer {attempt.farmer}" + (f" rank {attempt.rank}" if attempt.rank else "")
    if attempt.host:
        where += f" on {attempt.host}"
    rc = attempt.rc
    how = "exit code ?" if rc is None else (f"killed by signal {-rc}" if rc < 0 else f"exit code {rc}")
    took = f" after {attempt.t1 - attempt.t0:.2f} s" if attempt.t0 is not None else ""
    return f"{where}, {how}, ended {ended}{took}"
