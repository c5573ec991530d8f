"""Human-readable views of the ledger: PyTaskFarmer's files and the Perfetto timeline.

``toprocess``, ``running``, ``finished`` and ``failed`` hold one ``ID LINE`` line per task;
``timeline.json`` is Chrome trace-event JSON with one complete event (``"ph": "X"``) per task
run, host and rank as the process, worker slot as the thread. Every file is rewritten whole
and atomically, so each is valid at every moment. A rewrite costs O(tasks); the store spaces
rewrites out in proportion to how long they take, which bounds their share of the run time.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mpifarmer.scheduling.ledger import Ledger, Status
from mpifarmer.store.workdir import WorkDir, atomic_write

__all__ = ["Snapshot", "timeline_events", "write_views"]


@dataclass(frozen=True)
class Snapshot:
    """What the views show, copied from the ledger so that they can be written while it changes.

    ``lines`` is the ledger's own list: it only grows, and only the first ``len(status)`` entries
    are read.
    """

    lines: list[str]
    status: bytes
    runs: list[dict[str, Any]]

    @classmethod
    def of(cls, ledger: Ledger) -> Snapshot:
        return cls(ledger.lines, bytes(ledger.status), list(ledger.runs))


def write_views(source: Ledger | Snapshot, workdir: WorkDir) -> None:
    """Rewrite every view from a ledger or a snapshot of one."""
    snapshot = Snapshot.of(source) if isinstance(source, Ledger) else source
    buckets: dict[int, list[str]] = {Status.PENDING: [], Status.CLAIMED: [], Status.FINISHED: [], Status.FAILED: []}
    lines = snapshot.lines
    for task, status in enumerate(snapshot.status):
        buckets[status].append(f"{task} {lines[task]}\n")
    for status, path in ((Status.PENDING, workdir.toprocess), (Status.CLAIMED, workdir.running),
                         (Status.FINISHED, workdir.finished), (Status.FAILED, workdir.failed)):
        _write_lines(path, buckets[status])
    # json.dumps, not json.dump: only the one-shot encoder is the fast C one.
    text = json.dumps({"traceEvents": timeline_events(snapshot.runs), "displayTimeUnit": "ms"},
                      separators=(",", ":"))
    with atomic_write(workdir.timeline) as stream:
        stream.write(text)


def _write_lines(path: Path, lines: list[str]) -> None:
    with atomic_write(path) as stream:
        stream.writelines(lines)


def timeline_events(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Trace events for ``runs`` (end records): metadata naming each host/rank, then one
    complete event per run, with times in microseconds."""
    processes: dict[tuple[str, int], int] = {}
    slots: set[tuple[int, int]] = set()
    events: list[dict[str, Any]] = []
    for run in runs:
        t0 = run.get("t0")
        if t0 is None:
            continue
        key = (run.get("host", "?"), int(run.get("rank", 0)))
        pid = processes.setdefault(key, len(processes))
        tid = int(run.get("slot", 0))
        slots.add((pid, tid))
        args = {"id": run["id"], "status": run["st"], "rc": run.get("rc")}
        if "sig" in run:
            args["signal"] = run["sig"]
        events.append({"name": f"task {run['id']}", "cat": run["st"], "ph": "X", "pid": pid, "tid": tid,
                       "ts": round(t0 * 1e6), "dur": max(0, round((run["t1"] - t0) * 1e6)), "args": args})
    meta: list[dict[str, Any]] = []
    for (host, rank), pid in processes.items():
        meta.append({"name": "process_name", "ph": "M", "pid": pid, "args": {"name": f"{host} rank {rank}"}})
        meta.append({"name": "process_sort_index", "ph": "M", "pid": pid, "args": {"sort_index": pid}})
    for pid, tid in sorted(slots):
        meta.append({"name": "thread_name", "ph": "M", "pid": pid, "tid": tid, "args": {"name": f"slot {tid}"}})
    return meta + events
